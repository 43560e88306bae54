"""Vocabularies (``fedge convert --vocabulary [INPUT=]FILE``): a token
sequence input's words, recorded in the manifest's ``vocabularies`` (so
sealed with it) for a page or an app that takes text rather than ids.

The file has one token per line, in id order from 2: id 0 is padding and
id 1 is out-of-vocabulary, as Keras' ``TextVectorization`` numbers them.
The manifest records the whole list with the id as index (``["", "[UNK]",
tok2, tok3, ...]``, what ``TextVectorization.get_vocabulary()`` returns).
The page tokenises text by lowercasing it and splitting it on everything
but letters and digits, so a token with anything else (a capital, a space,
punctuation) could never be looked up: it is refused here, not ignored
there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedge.converters.source.model_io import input_specs
from fedge.errors import ConfigError

Spec = tuple[str, tuple[int | None, ...], str]
PADDING = ""
OOV = "[UNK]"
MAX_TOKENS = 100_000  # the manifest carries it: a bound keeps it a readable size
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits, any script


def read_vocabulary(path: Path) -> tuple[str, ...]:
    """The tokens of a vocabulary file (one per line; blank lines at the end ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--vocabulary: cannot read {path}: {exc}") from exc
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(line.strip() for line in lines)


def parse_vocabulary_options(values: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``--vocabulary FILE`` (the model's only sequence input) or
    ``INPUT=FILE``, repeatable: the tokens by input name ("" unnamed)."""
    parsed: dict[str, tuple[str, ...]] = {}
    for text in values:
        head, sep, tail = text.partition("=")
        input_name, file = (head.strip(), tail) if sep and not Path(text).exists() else ("", text)
        if input_name in parsed:
            raise ConfigError(f"--vocabulary: input {input_name or '(unnamed)'!r} given twice")
        parsed[input_name] = read_vocabulary(Path(file))
    return parsed


def _sequence_inputs(inputs: Sequence[Spec]) -> dict[str, int]:
    """Inputs the page treats as token sequences: ``(batch, n)`` of integers."""
    return {
        name: int(shape[1])
        for name, shape, dtype in inputs
        if len(shape) == 2 and shape[1] is not None and dtype.startswith("int")
    }


def check_vocabularies(
    inputs: Sequence[Spec], given: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """``given`` as the manifest records them (id = index, padding and OOV
    first); :class:`ConfigError` unless each is for an integer sequence
    input and its tokens are distinct, lowercase letters and digits."""
    sequences = _sequence_inputs(inputs)
    resolved = dict(given)
    if "" in resolved:
        if len(sequences) != 1:
            raise ConfigError(
                f"--vocabulary: the model has {len(sequences)} integer sequence inputs "
                f"({', '.join(sequences) or 'none'}); write INPUT=FILE"
            )
        (only,) = sequences
        if only in resolved:
            raise ConfigError(f"--vocabulary: input {only!r} given twice")
        resolved[only] = resolved.pop("")
    checked: dict[str, list[str]] = {}
    for name, tokens in resolved.items():
        if name not in sequences:
            raise ConfigError(
                f"--vocabulary: {name!r} is not an integer sequence input of the model "
                f"(those are: {', '.join(sequences) or 'none'})"
            )
        checked[name] = [PADDING, OOV, *_checked_tokens(name, tokens)]
    return checked


def vocabularies_for(model: Any, given: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """:func:`check_vocabularies` against ``model``'s inputs, and no more
    ids than an ``Embedding`` fed straight from the input takes (a larger id
    is an error in Keras and TF.js alike, found only when a user types it)."""
    checked = check_vocabularies(input_specs(model), given)
    if not checked:
        return checked
    # A SavedModel's signature (converters.source.signature_model) has no layers.
    for layer in getattr(model, "layers", ()):
        if type(layer).__name__ != "Embedding":
            continue
        fed_by = str(getattr(layer.input, "name", "")).split(":")[0]
        tokens = checked.get(fed_by)
        if tokens is not None and len(tokens) > int(layer.input_dim):
            raise ConfigError(
                f"--vocabulary: {len(tokens)} ids for {fed_by!r} (with padding and "
                f"out-of-vocabulary), but its Embedding {layer.name!r} takes "
                f"{layer.input_dim}: give at most {int(layer.input_dim) - 2} tokens"
            )
    return checked


def _checked_tokens(name: str, tokens: Sequence[str]) -> list[str]:
    if not tokens:
        raise ConfigError(f"--vocabulary: the vocabulary of {name!r} is empty")
    if len(tokens) > MAX_TOKENS:
        raise ConfigError(f"--vocabulary: {len(tokens)} tokens for {name!r}; at most {MAX_TOKENS}")
    seen: set[str] = set()
    for line, token in enumerate(tokens, start=1):
        if not _TOKEN.fullmatch(token) or token != token.lower():
            raise ConfigError(
                f"--vocabulary: line {line} ({token!r}) of {name!r} is not a lowercase word "
                "of letters and digits; text is lowercased and split on everything else, "
                "so it could never be found"
            )
        if token in seen:
            raise ConfigError(f"--vocabulary: {token!r} of {name!r} is given twice")
        seen.add(token)
    return list(tokens)
