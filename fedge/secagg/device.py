"""The device's side of a secure round, one object per device and round.

It holds three secrets: the private key that decrypts shares sent to it,
the private key its pairwise masks derive from, and its own mask seed. The
last two are secret-shared among its neighbours; an honest device then
answers one unmask request, and gives for each neighbour either the seed
share (the neighbour survived) or the key share (it dropped), never both:
with both, the server could strip every mask off that neighbour's input.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.secagg import crypto, shamir
from fedge.secagg.errors import ProtocolRefused, SecAggError
from fedge.secagg.graph import neighbours_of_one, share_indices
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
from fedge.secagg.quantise import quantise

SHARE_PAIR_BYTES = 2 * shamir.SHARE_BYTES


def round_context(round_id: int) -> bytes:
    """Binds every derived key to one round: nothing carries over."""
    return f"fedge-secagg/v1/round/{round_id}".encode()


def share_associated_data(context: bytes, sender: str, receiver: str) -> bytes:
    return context + json.dumps([sender, receiver]).encode()


def pair_sign(device: str, other: str) -> int:
    """+1 for the lower id of a pair, -1 for the higher: the masks cancel."""
    return 1 if device < other else -1


class SecAggDevice:
    def __init__(self, device_id: str, round_id: int) -> None:
        self.device_id = device_id
        self.round_id = round_id
        self._context = round_context(round_id)
        self._encryption_secret = crypto.new_private_key()
        self._mask_secret = crypto.new_private_key()
        self._seed = os.urandom(shamir.SECRET_BYTES)
        self._directory: KeyDirectory | None = None
        self._neighbours: list[str] = []
        self._held: dict[str, tuple[bytes, bytes]] = {}  # sender -> (key share, seed share)
        self._answered = False

    @property
    def params(self) -> SecAggParams:
        if self._directory is None:
            raise SecAggError("no key directory yet")
        return self._directory.params

    def advertise(self) -> KeyAdvert:
        return KeyAdvert(
            crypto.public_key(self._encryption_secret), crypto.public_key(self._mask_secret)
        )

    def share_keys(self, directory: KeyDirectory) -> ShareBundle:
        if directory.round_id != self.round_id:
            raise ProtocolRefused("the directory is for another round")
        if self.device_id not in directory.devices:
            raise ProtocolRefused("the directory does not list this device")
        if directory.params.devices != len(directory.devices):
            raise ProtocolRefused("the params do not count the devices listed")
        neighbours = neighbours_of_one(
            directory.devices, directory.graph_seed, directory.params.neighbours, self.device_id
        )
        if set(directory.keys) != set(neighbours):
            raise ProtocolRefused("the directory's keys are not exactly this device's neighbours")
        self._directory = directory
        self._neighbours = neighbours
        indices = share_indices(directory.devices)
        points = {v: indices[v] for v in neighbours}
        t = directory.params.threshold
        key_shares = shamir.split(self._mask_secret, t, list(points.values()))
        seed_shares = shamir.split(self._seed, t, list(points.values()))
        shares = []
        for v, x in points.items():
            key = crypto.agree(
                self._encryption_secret,
                directory.keys[v].encryption_key,
                self._context,
                crypto.ENCRYPTION_INFO,
            )
            plaintext = key_shares[x] + seed_shares[x]
            associated = share_associated_data(self._context, self.device_id, v)
            shares.append(
                EncryptedShare(self.device_id, v, crypto.encrypt(key, plaintext, associated))
            )
        return ShareBundle(self.device_id, shares)

    def masked_input(self, inbox: ShareInbox, values: npt.NDArray[Any]) -> MaskedInput:
        """Clip, quantise and mask ``values`` (flat, ``params.length`` long)."""
        directory = self._require_directory()
        params = directory.params
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        if flat.size != params.length:
            raise SecAggError(f"the input has {flat.size} values, the round {params.length}")
        if self._held:
            raise ProtocolRefused("this device has already uploaded its masked input")
        for share in inbox.shares:
            if share.sender not in self._neighbours or share.receiver != self.device_id:
                raise ProtocolRefused(f"a share from {share.sender}, who is not a neighbour")
            key = crypto.agree(
                self._encryption_secret,
                directory.keys[share.sender].encryption_key,
                self._context,
                crypto.ENCRYPTION_INFO,
            )
            associated = share_associated_data(self._context, share.sender, self.device_id)
            plaintext = crypto.decrypt(key, share.ciphertext, associated)
            if len(plaintext) != SHARE_PAIR_BYTES:
                raise ProtocolRefused("a share has the wrong size")
            self._held[share.sender] = (
                plaintext[: shamir.SHARE_BYTES],
                plaintext[shamir.SHARE_BYTES :],
            )
        if len(self._held) < params.threshold:
            self._held = {}
            raise ProtocolRefused(
                f"{len(inbox.shares)} neighbours shared, the threshold is {params.threshold}"
            )
        masked = quantise(flat, params)
        masked += crypto.mask(self._seed, params.length)
        for v in self._held:
            seed = crypto.agree(
                self._mask_secret, directory.keys[v].mask_key, self._context, crypto.MASK_INFO
            )
            pairwise = crypto.mask(seed, params.length)
            if pair_sign(self.device_id, v) > 0:
                masked += pairwise
            else:
                masked -= pairwise
        return MaskedInput(masked)

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        params = self._require_directory().params
        if self._answered:
            raise ProtocolRefused("this device has already answered an unmask request")
        both = set(request.survivors) & set(request.dropped)
        if both:
            raise ProtocolRefused(f"the server asks for both shares of {sorted(both)[0]}: refused")
        if self.device_id not in request.survivors:
            raise ProtocolRefused("the request says this device dropped")
        if len(request.survivors) < params.threshold:
            raise ProtocolRefused("fewer survivors than the threshold")
        self._answered = True
        survivors, dropped = set(request.survivors), set(request.dropped)
        seeds = {v: pair[1] for v, pair in self._held.items() if v in survivors}
        keys = {v: pair[0] for v, pair in self._held.items() if v in dropped}
        return UnmaskResponse(seeds, keys)

    def _require_directory(self) -> KeyDirectory:
        if self._directory is None:
            raise SecAggError("share keys first")
        return self._directory
