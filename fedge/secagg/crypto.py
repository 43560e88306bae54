"""The primitives, all from ``cryptography`` (and all in WebCrypto, so a
browser can speak the same protocol):

* X25519 key agreement, then HKDF-SHA256 with the round's context as salt
  and a purpose label as info: one key to encrypt shares (AES-256-GCM),
  one seed for the pairwise mask.
* AES-256-CTR over zeros, key = seed, counter block = zeros: the mask
  generator, read as little-endian uint32 values.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedge.secagg.errors import SecAggError

KEY_BYTES = 32
NONCE_BYTES = 12
ENCRYPTION_INFO = b"fedge-secagg share encryption"
MASK_INFO = b"fedge-secagg pairwise mask"


def new_private_key() -> bytes:
    return X25519PrivateKey.generate().private_bytes_raw()


def public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def agree(private: bytes, peer_public: bytes, context: bytes, info: bytes) -> bytes:
    """A 32-byte key both ends of a pair derive, bound to the round."""
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
        shared = X25519PrivateKey.from_private_bytes(private).exchange(peer)
    except ValueError as exc:  # a wrong length, or a low-order point (all-zero secret)
        raise SecAggError(f"bad public key: {exc}") from exc
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=context, info=info).derive(shared)


def encrypt(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def decrypt(key: bytes, ciphertext: bytes, associated: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], associated)
    except (InvalidTag, ValueError) as exc:
        raise SecAggError("a share does not decrypt: altered, or not for this device") from exc


def mask(seed: bytes, length: int) -> npt.NDArray[Any]:
    """``length`` uint32 values of AES-CTR stream from ``seed``."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    stream = encryptor.update(bytes(4 * length)) + encryptor.finalize()
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32)


def is_public_key(raw: bytes) -> bool:
    """32 bytes that are not a low-order point (whose agreement with any
    key is all zeros: a device advertising one would make its pairwise
    masks public)."""
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        return False
    return True
