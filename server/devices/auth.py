"""Device and admin credentials.

Device tokens are random (256 bits), shown once at enrolment and stored
only as their sha256. The admin token comes from the configuration; with
none configured the server makes one at first start and keeps it in
``<data_dir>/admin_token`` (mode 0600), never in code.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from fedge.server.errors import Forbidden, Unauthorized
from fedge.server.storage.devices import Device, hash_token

if TYPE_CHECKING:
    from fedge.server.storage.store import DeviceRows

ADMIN_TOKEN_FILE = "admin_token"


def bearer_token(header: str | None) -> str:
    if not header or not header.startswith("Bearer ") or not header[7:].strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return header[7:].strip()


def device_for_token(devices: DeviceRows, token: str) -> Device:
    device = devices.by_token_hash(hash_token(token))
    if device is None:
        raise Unauthorized("unknown device token")
    return device


def require_same_device(device: Device, device_id: str) -> None:
    if device.id != device_id:
        raise Forbidden("a device may only act for itself", code="wrong_device")


def check_admin(token: str, admin_token: str) -> None:
    if not hmac.compare_digest(hash_token(token), hash_token(admin_token)):
        raise Forbidden("admin token required", code="not_admin")


def check_enrolment_key(given: str | None, expected: str | None) -> None:
    if expected is None:
        return
    if given is None or not hmac.compare_digest(hash_token(given), hash_token(expected)):
        raise Forbidden("wrong or missing enrolment key", code="bad_enrolment_key")


def load_or_create_admin_token(data_dir: Path, configured: str | None) -> str:
    if configured:
        return configured
    path = data_dir / ADMIN_TOKEN_FILE
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token
