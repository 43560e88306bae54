"""Feature names (``--feature-names``, or a samples CSV's header): checked
once against the model, recorded in the manifest's ``features``.

A page or an app that builds a form for a vector input (shape ``(batch,
n)``) names each of its ``n`` fields from here; without names it can only
say ``input[0]``, ``input[1]``... The CSV header is the user's own data
file's naming, so it is used when ``--feature-names`` is not given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fedge.errors import ConfigError
from fedge.task.csv_layout import is_feature, is_header, read_rows

Spec = tuple[str, tuple[int | None, ...], str]


def check_features(
    inputs: Sequence[Spec], features: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """``features`` as the manifest records them; :class:`ConfigError` unless
    each names a vector input and gives one distinct, non-empty name per value."""
    shapes = {name: shape for name, shape, _ in inputs}
    checked: dict[str, list[str]] = {}
    for input_name, names in features.items():
        if input_name not in shapes:
            raise ConfigError(
                f"--feature-names: the model has no input {input_name!r} "
                f"(it has {', '.join(repr(n) for n in shapes)})"
            )
        shape = shapes[input_name]
        if len(shape) != 2 or shape[1] is None:
            raise ConfigError(
                f"--feature-names: input {input_name!r} has shape {shape}; names fit a "
                "vector input of shape (batch, n)"
            )
        if len(names) != shape[1]:
            raise ConfigError(
                f"--feature-names: {len(names)} names for input {input_name!r}, "
                f"which takes {shape[1]} values"
            )
        for index, name in enumerate(names, start=1):
            if not name.strip():
                raise ConfigError(f"--feature-names: name {index} of {input_name!r} is empty")
        repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if repeated is not None:
            raise ConfigError(f"--feature-names: {repeated!r} is given twice")
        checked[input_name] = [n.strip() for n in names]
    return checked


def feature_names_for(
    inputs: Sequence[Spec], given: Mapping[str, Sequence[str]], samples: Path | None
) -> dict[str, list[str]]:
    """``given`` when set, else the header of a ``.csv`` samples file for a
    one-input model, else none; checked either way."""
    if given:
        return check_features(inputs, given)
    if samples is None or samples.suffix != ".csv" or len(inputs) != 1:
        return {}
    rows = read_rows(samples)
    if not rows or not is_header(rows[0][1]):
        return {}
    header = [c.strip() for c in rows[0][1] if is_feature(c)]
    return check_features(inputs, {inputs[0][0]: header})


def parse_feature_names(values: Sequence[str], inputs: Sequence[str] = ()) -> dict[str, list[str]]:
    """``--feature-names`` as given: ``a,b,c`` (the model's only vector input,
    resolved by :func:`resolve_unnamed`) or ``INPUT=a,b,c``, repeatable."""
    parsed: dict[str, list[str]] = {}
    for text in values:
        head, sep, tail = text.partition("=")
        input_name, names = (head.strip(), tail) if sep else ("", text)
        if input_name in parsed:
            raise ConfigError(f"--feature-names: input {input_name or '(unnamed)'!r} given twice")
        parsed[input_name] = [n.strip() for n in names.split(",")]
    return parsed


def resolve_unnamed(
    inputs: Sequence[Spec], given: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """Give ``a,b,c`` without ``INPUT=`` to the model's one input."""
    if "" not in given:
        return {k: list(v) for k, v in given.items()}
    if len(inputs) != 1:
        raise ConfigError(
            "--feature-names: this model has several inputs; write INPUT=a,b,c for each"
        )
    out = {k: list(v) for k, v in given.items() if k}
    out[inputs[0][0]] = list(given[""])
    return out
