"""Every message of a secure round, as frozen dataclasses with one codec.

On the wire each is a strict JSON object with exactly its fields; bytes are
standard base64 (with padding), a masked input is its uint32 values
little-endian bytes (not JSON). ``from_json`` raises :class:`SecAggError` on
anything else (docs/http-api.md lists the fields).

Stage by stage (device -> server, then server -> device):

1. :class:`KeyAdvert` -> :class:`KeyDirectory` (params, devices, graph
   seed, the neighbours' public keys)
2. :class:`ShareBundle` (one :class:`EncryptedShare` per neighbour) ->
   :class:`ShareInbox` (the shares addressed to this device)
3. :class:`MaskedInput` -> :class:`UnmaskRequest` (who survived, who dropped)
4. :class:`UnmaskResponse` (seed shares of survivors, key shares of the dropped)
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.secagg.errors import SecAggError
from fedge.secagg.params import SecAggParams
from fedge.secagg.shamir import SHARE_BYTES
from fedge.wire.strict_json import StrictJSONError, loads_strict

MAX_ID_CHARS = 200


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise SecAggError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SecAggError(f"{what} is not base64") from exc
    if size is not None and len(raw) != size:
        raise SecAggError(f"{what} must be {size} bytes, not {len(raw)}")
    return raw


def _object(raw: bytes | str | dict[str, Any], fields: set[str], what: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        data: Any = raw
    else:
        try:
            data = loads_strict(raw)
        except StrictJSONError as exc:
            raise SecAggError(f"{what}: {exc}") from exc
    if not isinstance(data, dict) or set(data) != fields:
        raise SecAggError(f"{what} must be an object with exactly the fields {sorted(fields)}")
    return data


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise SecAggError(f"{what} must be a device id")
    return value


def _ids(value: Any, what: str) -> list[str]:
    if not isinstance(value, list):
        raise SecAggError(f"{what} must be a list of device ids")
    ids = [_id(item, what) for item in value]
    if len(set(ids)) != len(ids):
        raise SecAggError(f"{what} names a device twice")
    return ids


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True)
class KeyAdvert:
    """A device's two public keys: one to receive shares, one to mask with."""

    encryption_key: bytes
    mask_key: bytes

    def to_json(self) -> bytes:
        return _dumps(
            {"encryption_key": _b64(self.encryption_key), "mask_key": _b64(self.mask_key)}
        )

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any]) -> KeyAdvert:
        data = _object(raw, {"encryption_key", "mask_key"}, "a key advert")
        return cls(
            _unb64(data["encryption_key"], "encryption_key", 32),
            _unb64(data["mask_key"], "mask_key", 32),
        )


@dataclass(frozen=True)
class KeyDirectory:
    """What stage 2 needs: the params, every device that advertised (for the
    graph and the share points), the graph seed, and the neighbours' keys."""

    round_id: int
    params: SecAggParams
    devices: list[str]
    graph_seed: bytes
    keys: dict[str, KeyAdvert]

    def to_json(self) -> bytes:
        return _dumps(
            {
                "round_id": self.round_id,
                "params": self.params.to_dict(),
                "devices": self.devices,
                "graph_seed": _b64(self.graph_seed),
                "keys": {d: json.loads(k.to_json()) for d, k in self.keys.items()},
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any]) -> KeyDirectory:
        data = _object(raw, {"round_id", "params", "devices", "graph_seed", "keys"}, "a directory")
        if type(data["round_id"]) is not int:
            raise SecAggError("round_id must be an integer")
        if not isinstance(data["keys"], dict):
            raise SecAggError("keys must be an object")
        return cls(
            data["round_id"],
            SecAggParams.from_dict(data["params"]),
            _ids(data["devices"], "devices"),
            _unb64(data["graph_seed"], "graph_seed", 32),
            {_id(d, "keys"): KeyAdvert.from_json(k) for d, k in data["keys"].items()},
        )


@dataclass(frozen=True)
class EncryptedShare:
    """One device's shares (of its key and of its seed) for one neighbour,
    AES-GCM encrypted: the server routes it and cannot read it."""

    sender: str
    receiver: str
    ciphertext: bytes


MAX_CIPHERTEXT = 1024


def _shares(value: Any, peer: str, own: str, device: str) -> list[EncryptedShare]:
    if not isinstance(value, list):
        raise SecAggError("shares must be a list")
    shares = []
    for item in value:
        data = _object(item, {peer, "ciphertext"}, "a share")
        ciphertext = _unb64(data["ciphertext"], "ciphertext")
        if len(ciphertext) > MAX_CIPHERTEXT:
            raise SecAggError("a share's ciphertext is too long")
        other = _id(data[peer], peer)
        sender, receiver = (other, device) if peer == "sender" else (device, other)
        shares.append(EncryptedShare(sender, receiver, ciphertext))
    if len({s.sender if peer == "sender" else s.receiver for s in shares}) != len(shares):
        raise SecAggError(f"two shares name the same {peer}")
    return shares


@dataclass(frozen=True)
class ShareBundle:
    """Stage 2, device -> server: one share per neighbour."""

    sender: str
    shares: list[EncryptedShare]

    def to_json(self) -> bytes:
        items = [{"receiver": s.receiver, "ciphertext": _b64(s.ciphertext)} for s in self.shares]
        return _dumps({"shares": items})

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any], sender: str) -> ShareBundle:
        data = _object(raw, {"shares"}, "a share bundle")
        return cls(sender, _shares(data["shares"], "receiver", "sender", sender))


@dataclass(frozen=True)
class ShareInbox:
    """Stage 2, server -> device: the shares its neighbours sent it."""

    receiver: str
    shares: list[EncryptedShare]

    def to_json(self) -> bytes:
        items = [{"sender": s.sender, "ciphertext": _b64(s.ciphertext)} for s in self.shares]
        return _dumps({"shares": items})

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any], receiver: str) -> ShareInbox:
        data = _object(raw, {"shares"}, "a share inbox")
        return cls(receiver, _shares(data["shares"], "sender", "receiver", receiver))


@dataclass(frozen=True, eq=False)  # an array has no truth value
class MaskedInput:
    """Stage 3, device -> server: the quantised update plus masks, mod 2^32.
    On the wire: not JSON but the raw values, uint32 little-endian
    (``application/octet-stream``), as large as a float32 update."""

    vector: npt.NDArray[Any]  # uint32

    def to_bytes(self) -> bytes:
        return self.vector.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes, length: int) -> MaskedInput:
        if len(raw) != 4 * length:
            raise SecAggError(f"a masked input is {4 * length} bytes, not {len(raw)}")
        return cls(np.frombuffer(raw, dtype="<u4").astype(np.uint32))


@dataclass(frozen=True)
class UnmaskRequest:
    """Stage 4, server -> device: who uploaded a masked input and who did not."""

    survivors: list[str]
    dropped: list[str]

    def to_json(self) -> bytes:
        return _dumps({"survivors": self.survivors, "dropped": self.dropped})

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any]) -> UnmaskRequest:
        data = _object(raw, {"survivors", "dropped"}, "an unmask request")
        return cls(_ids(data["survivors"], "survivors"), _ids(data["dropped"], "dropped"))


@dataclass(frozen=True)
class UnmaskResponse:
    """Stage 4, device -> server: its share of each surviving neighbour's
    seed and of each dropped neighbour's mask key (never both for one)."""

    seed_shares: dict[str, bytes]
    key_shares: dict[str, bytes]

    def to_json(self) -> bytes:
        return _dumps(
            {
                "seed_shares": {d: _b64(s) for d, s in self.seed_shares.items()},
                "key_shares": {d: _b64(s) for d, s in self.key_shares.items()},
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any]) -> UnmaskResponse:
        data = _object(raw, {"seed_shares", "key_shares"}, "an unmask response")
        parts = []
        for name in ("seed_shares", "key_shares"):
            if not isinstance(data[name], dict):
                raise SecAggError(f"{name} must be an object")
            parts.append(
                {_id(d, name): _unb64(s, name, SHARE_BYTES) for d, s in data[name].items()}
            )
        if set(parts[0]) & set(parts[1]):
            raise SecAggError("an unmask response holds both shares of one device")
        return cls(parts[0], parts[1])
