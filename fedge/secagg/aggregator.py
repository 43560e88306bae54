"""The server's side of a secure round: a state machine over four stages.

The server keeps only what the protocol needs: the public keys, the
encrypted shares until their receivers have them, the running sum of the
masked inputs modulo 2^32 (never one device's input), and the unmask
responses until the sum is unmasked. Each ``close_*`` ends a stage (the
caller decides when: everyone answered, or a deadline); who answered in
each stage is counted for the round's metrics.

Unmasking: sum(masked) = sum(inputs) + sum(self masks of the uploaders)
+ the pairwise masks between an uploader and a neighbour that shared keys
but never uploaded. The server rebuilds each uploader's seed and each such
neighbour's mask key from the survivors' shares, and removes both.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.secagg import crypto, shamir
from fedge.secagg.device import pair_sign, round_context
from fedge.secagg.errors import SecAggError, TooFewSurvivors
from fedge.secagg.graph import neighbours_of, share_indices
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
from fedge.secagg.quantise import dequantise_sum


class Stage(enum.Enum):
    ADVERTISE = "advertise"
    SHARE = "share"
    UPLOAD = "upload"
    UNMASK = "unmask"
    DONE = "done"


@dataclass(frozen=True)
class SecAggResult:
    total: npt.NDArray[Any]  # uint32: the sum of the survivors' quantised inputs
    count: int  # inputs in the sum
    values: npt.NDArray[Any]  # float64: the decoded sum of their clipped inputs
    params: SecAggParams


class SecAggAggregator:
    def __init__(self, round_id: int, dropout: float, clip: float, length: int) -> None:
        self.round_id = round_id
        self._context = round_context(round_id)
        self._dropout, self._clip, self._length = dropout, clip, length
        self.stage = Stage.ADVERTISE
        self.params: SecAggParams | None = None
        self._adverts: dict[str, KeyAdvert] = {}
        self._devices: list[str] = []
        self._indices: dict[str, int] = {}
        self._seed = b""
        self._graph: dict[str, list[str]] = {}
        self._outbox: dict[str, ShareBundle] = {}
        self._inboxes: dict[str, ShareInbox] = {}
        self._shared = 0
        self._masked_sum = np.zeros(length, dtype=np.uint32)
        self._uploaded: dict[str, bytes] = {}  # device -> sha256 of its masked input
        self._request: UnmaskRequest | None = None
        self._responses: dict[str, UnmaskResponse] = {}
        self._answers = 0

    # -- stage 1 ---------------------------------------------------------------

    def advertise(self, device_id: str, advert: KeyAdvert) -> None:
        self._require(Stage.ADVERTISE)
        if not (
            crypto.is_public_key(advert.encryption_key) and crypto.is_public_key(advert.mask_key)
        ):
            raise SecAggError("the advertised keys are not X25519 public keys")
        known = self._adverts.get(device_id)
        if known is not None and known != advert:
            raise SecAggError("this device has already advertised other keys")
        self._adverts[device_id] = advert

    def close_advertising(self, graph_seed: bytes | None = None) -> SecAggParams:
        """Fix the devices, the params and the graph. Raises when too few advertised."""
        self._require(Stage.ADVERTISE)
        self._devices = sorted(self._adverts)
        self._indices = share_indices(self._devices)
        params = SecAggParams.choose(len(self._devices), self._dropout, self._length, self._clip)
        self.params = params
        self._seed = graph_seed if graph_seed is not None else os.urandom(32)
        self._graph = neighbours_of(self._devices, self._seed, params.neighbours)
        self.stage = Stage.SHARE
        return params

    def directory_for(self, device_id: str) -> KeyDirectory:
        params = self._require_params()
        if device_id not in self._graph:
            raise SecAggError("this device did not advertise keys in time")
        keys = {v: self._adverts[v] for v in self._graph[device_id]}
        return KeyDirectory(self.round_id, params, self._devices, self._seed, keys)

    # -- stage 2 ---------------------------------------------------------------

    def submit_shares(self, bundle: ShareBundle) -> None:
        self._require(Stage.SHARE)
        if bundle.sender not in self._graph:
            raise SecAggError("this device did not advertise keys in time")
        if {s.receiver for s in bundle.shares} != set(self._graph[bundle.sender]):
            raise SecAggError("a share bundle must hold one share for each neighbour")
        known = self._outbox.get(bundle.sender)
        if known is not None and known != bundle:
            raise SecAggError("this device has already sent other shares")
        self._outbox[bundle.sender] = bundle

    def close_sharing(self) -> None:
        self._require(Stage.SHARE)
        inbox: dict[str, list[EncryptedShare]] = {d: [] for d in self._outbox}
        for bundle in self._outbox.values():
            for share in bundle.shares:
                if share.receiver in inbox:
                    inbox[share.receiver].append(share)
        self._inboxes = {d: ShareInbox(d, shares) for d, shares in inbox.items()}
        self._shared = len(self._inboxes)
        self._outbox = {}
        self.stage = Stage.UPLOAD

    def inbox_for(self, device_id: str) -> ShareInbox:
        if self.stage is not Stage.UPLOAD:
            raise SecAggError(f"the round is in stage {self.stage.value}, not upload")
        if device_id not in self._inboxes:
            raise SecAggError("this device did not share its keys in time")
        return self._inboxes[device_id]

    # -- stage 3 ---------------------------------------------------------------

    def submit_masked(self, device_id: str, masked: MaskedInput) -> bool:
        """Add to the running sum; False for a retry of the same bytes."""
        self._require(Stage.UPLOAD)
        if device_id not in self._inboxes:
            raise SecAggError("this device did not share its keys in time")
        if masked.vector.shape != (self._length,):
            raise SecAggError(f"a masked input holds {self._length} values")
        digest = hashlib.sha256(masked.to_bytes()).digest()
        if device_id in self._uploaded:
            if self._uploaded[device_id] != digest:
                raise SecAggError("this device has already uploaded another masked input")
            return False  # a retry of the same bytes
        self._masked_sum += masked.vector
        self._uploaded[device_id] = digest
        return True

    def close_upload(self) -> UnmaskRequest:
        self._require(Stage.UPLOAD)
        survivors = sorted(self._uploaded)
        dropped = sorted(set(self._inboxes) - set(survivors))
        self._request = UnmaskRequest(survivors, dropped)
        self._inboxes = {d: self._inboxes[d] for d in survivors}  # for the shares held, below
        self.stage = Stage.UNMASK
        return self._request

    def unmask_request(self) -> UnmaskRequest:
        """Who uploaded and who did not, once the upload stage has closed."""
        return self._require_request()

    def unmask_request_for(self, device_id: str) -> UnmaskRequest:
        request = self._require_request()
        if device_id not in request.survivors:
            raise SecAggError("this device did not upload a masked input in time")
        return request

    # -- stage 4 ---------------------------------------------------------------

    def submit_unmask(self, device_id: str, response: UnmaskResponse) -> None:
        request = self._require_request()
        if self.stage is not Stage.UNMASK:
            raise SecAggError(f"the round is in stage {self.stage.value}, not unmask")
        if device_id not in request.survivors:
            raise SecAggError("this device did not upload a masked input in time")
        held = {s.sender for s in self._inboxes[device_id].shares}
        if set(response.seed_shares) != held & set(request.survivors) or set(
            response.key_shares
        ) != held & set(request.dropped):
            raise SecAggError("the response must hold exactly the shares this device was asked")
        known = self._responses.get(device_id)
        if known is not None and known != response:
            raise SecAggError("this device has already answered otherwise")
        self._responses[device_id] = response

    def finish(self) -> SecAggResult:
        """Unmask the sum. Raises :class:`TooFewSurvivors` when some secret
        has fewer than the threshold of shares; the round then fails."""
        params, request = self._require_params(), self._require_request()
        self._require(Stage.UNMASK)
        if not request.survivors:
            raise TooFewSurvivors("no device uploaded a masked input")
        total = self._masked_sum.copy()
        for u in request.survivors:
            seed = self._rebuild(u, "seed", params)
            total -= crypto.mask(seed, params.length)
        uploaded = set(request.survivors)
        for d in request.dropped:
            masked_with = [v for v in self._graph[d] if v in uploaded]
            if not masked_with:
                continue
            secret = self._rebuild(d, "key", params)
            if crypto.public_key(secret) != self._adverts[d].mask_key:
                raise SecAggError(f"the key shares of {d} do not rebuild its key: one is wrong")
            for v in masked_with:
                seed = crypto.agree(
                    secret, self._adverts[v].mask_key, self._context, crypto.MASK_INFO
                )
                pairwise = crypto.mask(seed, params.length)
                if pair_sign(v, d) > 0:
                    total -= pairwise
                else:
                    total += pairwise
        self.stage = Stage.DONE
        self._answers = len(self._responses)
        self._responses = {}  # shares of secrets: not kept once used
        count = len(request.survivors)
        return SecAggResult(total, count, dequantise_sum(total, count, params), params)

    def counts(self) -> dict[str, int]:
        """Devices that completed each stage, for the round's metrics."""
        return {
            "advertised": len(self._adverts),
            "shared": self._shared if self.stage is not Stage.SHARE else len(self._outbox),
            "uploaded": len(self._uploaded),
            "unmask_answers": self._answers if self.stage is Stage.DONE else len(self._responses),
        }

    def _rebuild(self, owner: str, kind: str, params: SecAggParams) -> bytes:
        shares = {}
        for v, response in self._responses.items():
            part = response.seed_shares if kind == "seed" else response.key_shares
            if owner in part:
                shares[self._indices[v]] = part[owner]
        if len(shares) < params.threshold:
            raise TooFewSurvivors(
                f"{len(shares)} neighbours of {owner} answered, {params.threshold} needed"
            )
        return shamir.combine(shares, params.threshold)

    def _require(self, stage: Stage) -> None:
        if self.stage is not stage:
            raise SecAggError(f"the round is in stage {self.stage.value}, not {stage.value}")

    def _require_params(self) -> SecAggParams:
        if self.params is None:
            raise SecAggError("key advertising has not closed")
        return self.params

    def _require_request(self) -> UnmaskRequest:
        if self._request is None:
            raise SecAggError("the upload stage has not closed")
        return self._request
