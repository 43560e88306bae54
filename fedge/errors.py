"""The base exception of fedge's shared core.

Each package (converters, server, client_sim) derives its own errors from
:class:`FedgeError`, so a caller can catch everything fedge raises in one
place and the CLI can turn it into a clear message and a non-zero exit.
"""

from __future__ import annotations


class FedgeError(Exception):
    """Something the user can fix: bad input, a missing file, a bad option."""


class ConfigError(FedgeError):
    """An option or a combination of options that cannot work."""


class DataError(FedgeError):
    """The user's data cannot be used: a missing array, a bad shape, a label out of range."""
