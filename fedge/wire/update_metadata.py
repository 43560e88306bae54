"""The metadata of an update or checkpoint: strings in, checked values out.

safetensors metadata is a string-to-string map, so every number and id is
text a device wrote; each is matched against a strict pattern (plain ASCII
digits, a lowercase sha256) before it is converted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from fedge.wire.update_header import CodecError, strict_json

_MAX_METRICS = 64
_ROUND_ID = re.compile(r"[0-9]{1,18}")
_COUNT = re.compile(r"0|[1-9][0-9]{0,9}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class UpdateMeta:
    round_id: int
    base_checkpoint: str
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


def update_meta(metadata: Mapping[str, str]) -> UpdateMeta:
    _require_keys(metadata, {"format", "kind", "round_id", "base_checkpoint", "num_examples"})
    _allow_keys(
        metadata, {"format", "kind", "round_id", "base_checkpoint", "num_examples", "metrics"}
    )
    return UpdateMeta(
        round_id=_ascii_int(metadata, "round_id", _ROUND_ID),
        base_checkpoint=_match(metadata, "base_checkpoint", _SHA256),
        num_examples=_ascii_int(metadata, "num_examples", _COUNT),
        metrics=_metrics(metadata.get("metrics", "{}")),
    )


def checkpoint_round_id(metadata: Mapping[str, str]) -> int:
    """A checkpoint's round id, its one metadata field of its own."""
    _require_keys(metadata, {"format", "kind", "round_id"})
    return _ascii_int(metadata, "round_id", _ROUND_ID)


def _require_keys(metadata: Mapping[str, str], keys: set[str]) -> None:
    missing = sorted(keys - set(metadata))
    if missing:
        raise CodecError(f"metadata lacks {', '.join(missing)}")


def _allow_keys(metadata: Mapping[str, str], keys: set[str]) -> None:
    extra = sorted(set(metadata) - keys)
    if extra:
        raise CodecError(f"unknown metadata keys {extra[:5]}")


def _match(metadata: Mapping[str, str], key: str, pattern: re.Pattern[str]) -> str:
    value = metadata[key]
    if not pattern.fullmatch(value):
        raise CodecError(f"metadata {key} {value[:40]!r} is not {pattern.pattern}")
    return value


def _ascii_int(metadata: Mapping[str, str], key: str, pattern: re.Pattern[str]) -> int:
    """Plain ASCII digits only: ``int()`` would also take " 5 " or other scripts' digits."""
    return int(_match(metadata, key, pattern))


def _metrics(raw: str) -> dict[str, float]:
    parsed = strict_json(raw, "metrics")
    if not isinstance(parsed, dict) or len(parsed) > _MAX_METRICS:
        raise CodecError(f"metrics must be a JSON object of at most {_MAX_METRICS} numbers")
    metrics: dict[str, float] = {}
    for key, value in parsed.items():
        if len(key) > 64 or type(value) not in (int, float):
            raise CodecError(f"metric {key[:64]!r} must be a number under a short name")
        try:
            number = float(value)
        except OverflowError as exc:
            raise CodecError(f"metric {key!r} is out of range") from exc
        if not math.isfinite(number):
            raise CodecError(f"metric {key!r} is not finite")
        metrics[key] = number
    return metrics
