"""Identity tokens: an app's backend vouches for its users (``device_issuer``).

With ``device_issuer`` set, a device enrols with an ``identity_token``: a
JWT the app's backend signed for one of its users. The server holds only
the public half (a PEM public key, or a JWKS file of them), so it can check
tokens but never make one. The token's subject (``sub``) is the user: one
device per subject, so a client cannot mint identities faster than the
backend hands out accounts.

What a token must be, else the enrolment is refused (403
``bad_identity_token``):

- signed with one of the configured keys, by the algorithm that key is
  for: RS256 (RSA), ES256 (EC P-256), EdDSA (Ed25519). The algorithm comes
  from the key, never from the token's header, so ``alg: none`` and HS256
  signed with the public key as its secret (key confusion) are refused;
- ``exp`` and ``iat`` present, and with ``nbf`` when present, valid now
  give or take ``LEEWAY_S`` of clock skew;
- ``aud`` equal to ``device_audience`` and ``iss`` to
  ``device_issuer_name`` when those are set (a token with an ``aud`` is
  refused when no audience is set: it was meant for someone else);
- a ``sub`` of 1..256 characters.

Plain Python over PyJWT and ``cryptography``; no Flask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from fedge.server.errors import ConfigurationError, Forbidden

LEEWAY_S = 30.0
MAX_TOKEN_CHARS = 8192
MAX_SUBJECT_CHARS = 256
REFUSED = "bad_identity_token"


@dataclass(frozen=True)
class IssuerKey:
    key: Any  # a cryptography public key
    algorithm: str  # the one algorithm this key verifies
    kid: str | None


@dataclass(frozen=True)
class DeviceIssuer:
    keys: tuple[IssuerKey, ...]
    audience: str | None = None
    issuer: str | None = None

    @classmethod
    def load(cls, path: Path, audience: str | None, issuer: str | None) -> DeviceIssuer:
        """The keys in ``path``: a JWKS (JSON with ``keys``) or a PEM public key."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"device_issuer: cannot read {path}: {exc}") from exc
        keys = _jwks(raw, path) if raw.lstrip().startswith(b"{") else (_pem(raw, path),)
        if not keys:
            raise ConfigurationError(f"device_issuer: {path} holds no public key")
        return cls(keys, audience, issuer)

    def subject(self, token: str | None) -> str:
        """The subject of a valid ``token``; 403 ``bad_identity_token`` otherwise."""
        if not token:
            raise Forbidden("enrolment needs an identity_token from the app", code=REFUSED)
        if len(token) > MAX_TOKEN_CHARS:
            raise Forbidden(f"identity_token is over {MAX_TOKEN_CHARS} characters", code=REFUSED)
        try:
            key = self._key_for(jwt.get_unverified_header(token))
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Forbidden(f"identity_token refused: {exc}", code=REFUSED) from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT_CHARS:
            raise Forbidden(
                f"identity_token: sub must be 1..{MAX_SUBJECT_CHARS} characters", code=REFUSED
            )
        return subject

    def _key_for(self, header: dict[str, Any]) -> IssuerKey:
        kid = header.get("kid")
        if kid is None and len(self.keys) == 1:
            return self.keys[0]
        for key in self.keys:
            if key.kid is not None and key.kid == kid:
                return key
        raise jwt.InvalidKeyError(f"no key for kid {kid!r}")


def _algorithm(key: Any, where: str) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigurationError(f"device_issuer: {where}: RSA keys of < 2048 bits are weak")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ConfigurationError(
        f"device_issuer: {where}: use an RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) "
        f"public key, not {type(key).__name__}"
    )


def _pem(raw: bytes, path: Path) -> IssuerKey:
    try:
        key = load_pem_public_key(raw)
    except ValueError as exc:
        raise ConfigurationError(
            f"device_issuer: {path} is not a PEM public key (give the public half only): {exc}"
        ) from exc
    return IssuerKey(key, _algorithm(key, str(path)), None)


def _jwks(raw: bytes, path: Path) -> tuple[IssuerKey, ...]:
    try:
        document = json.loads(raw)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError("keys is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"device_issuer: {path} is not a JWKS: {exc}") from exc
    keys = []
    for index, entry in enumerate(entries):
        where = f"{path} key {index}"
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            raise ConfigurationError(f"device_issuer: {where}: only RSA, EC and OKP public keys")
        if "d" in entry:
            raise ConfigurationError(
                f"device_issuer: {where} is a private key; give the public one"
            )
        try:
            key = jwt.PyJWK(entry).key
        except jwt.PyJWTError as exc:
            raise ConfigurationError(f"device_issuer: {where}: {exc}") from exc
        algorithm = _algorithm(key, where)
        if entry.get("alg") not in (None, algorithm):
            raise ConfigurationError(
                f"device_issuer: {where}: alg {entry['alg']} is not {algorithm}"
            )
        keys.append(IssuerKey(key, algorithm, entry.get("kid")))
    return tuple(keys)
