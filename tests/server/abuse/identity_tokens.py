"""Identity tokens as an app's backend would sign them, with throw-away keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

AUDIENCE = "fedge-test"
ISSUER = "https://app.example.com"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of ``key``."""
    if isinstance(key, rsa.RSAPrivateKey):
        text = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        text = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())
    else:
        text = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key())
    entry: dict[str, Any] = json.loads(text)
    return {**entry, "kid": kid}


def claims(subject: str | None = "user-1", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iat": now, "exp": now + 300, "aud": AUDIENCE, "iss": ISSUER}
    if subject is not None:
        base["sub"] = subject
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: PrivateKey, payload: dict[str, Any], algorithm: str, kid: str | None = None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def unsigned(payload: dict[str, Any]) -> str:
    """``alg: none``: no signature at all."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


def hmac_with(secret: bytes, payload: dict[str, Any]) -> str:
    """HS256 keyed with ``secret`` (the public key's PEM: key confusion)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
