"""Secure aggregation (SecAgg+, Bell et al. 2020, after Bonawitz et al. 2017):
the server learns the sum of a round's updates and nothing about any one.

Pure Python, NumPy and ``cryptography``; imports nothing from ``server`` or
``client_sim``, so Python devices and the server run the same code.

==============  ==========================================================
params          the round's parameters from its size, dropout and clip
graph           the seeded sparse neighbour graph (a ring over a shuffle)
shamir          t-of-k secret sharing over the prime field 2^521 - 1
crypto          X25519 + HKDF, AES-GCM for shares, AES-CTR as mask PRG
quantise        clipping and fixed-point integers modulo 2^32
messages        every message on the wire, as frozen dataclasses
device          the device's side: keys, shares, masked input, unmasking
aggregator      the server's side: routes shares, sums, unmasks
==============  ==========================================================

Public API: :class:`SecAggParams`, :class:`SecAggDevice`,
:class:`SecAggAggregator`, the messages and :class:`SecAggError`.
"""

from fedge.secagg.aggregator import SecAggAggregator, SecAggResult, Stage
from fedge.secagg.device import SecAggDevice
from fedge.secagg.errors import ProtocolRefused, SecAggError, TooFewSurvivors
from fedge.secagg.messages import (
    EncryptedShare,
    KeyAdvert,
    KeyDirectory,
    MaskedInput,
    ShareBundle,
    ShareInbox,
    UnmaskRequest,
    UnmaskResponse,
)
from fedge.secagg.params import SecAggParams

__all__ = [
    "EncryptedShare",
    "KeyAdvert",
    "KeyDirectory",
    "MaskedInput",
    "ProtocolRefused",
    "SecAggAggregator",
    "SecAggDevice",
    "SecAggError",
    "SecAggParams",
    "SecAggResult",
    "ShareBundle",
    "ShareInbox",
    "Stage",
    "TooFewSurvivors",
    "UnmaskRequest",
    "UnmaskResponse",
]
