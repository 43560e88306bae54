"""Shamir's t-of-k secret sharing over the prime field GF(2^521 - 1).

The secrets are 32-byte keys and seeds, below 2^256, so one field element
holds one secret. Coefficients come from ``secrets`` (the OS generator).
"""

from __future__ import annotations

import secrets

from fedge.secagg.errors import SecAggError

PRIME = (1 << 521) - 1
SHARE_BYTES = 66  # 521 bits, big-endian
SECRET_BYTES = 32


def split(secret: bytes, threshold: int, xs: list[int]) -> dict[int, bytes]:
    """Shares of ``secret`` at the points ``xs`` (distinct, non-zero); any
    ``threshold`` of them rebuild it, fewer say nothing about it."""
    if len(secret) != SECRET_BYTES:
        raise SecAggError(f"a shared secret has {SECRET_BYTES} bytes")
    if not 1 <= threshold <= len(xs) or len(set(xs)) != len(xs) or 0 in xs:
        raise SecAggError("shares need distinct non-zero points, at least the threshold")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y.to_bytes(SHARE_BYTES, "big")
    return shares


def combine(shares: dict[int, bytes], threshold: int) -> bytes:
    """The secret from ``threshold`` of its shares (the first, by point)."""
    if len(shares) < threshold:
        raise SecAggError(f"{len(shares)} shares, {threshold} needed")
    points = sorted(shares.items())[:threshold]
    values = []
    for x, raw in points:
        if len(raw) != SHARE_BYTES:
            raise SecAggError(f"a share has {SHARE_BYTES} bytes")
        y = int.from_bytes(raw, "big")
        if y >= PRIME:
            raise SecAggError("a share is not a field element")
        values.append((x, y))
    secret = 0
    for i, (xi, yi) in enumerate(values):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(values):
            if i != j:
                numerator = numerator * xj % PRIME
                denominator = denominator * (xj - xi) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * SECRET_BYTES):
        raise SecAggError("the shares do not rebuild a secret: one of them is wrong")
    return secret.to_bytes(SECRET_BYTES, "big")
