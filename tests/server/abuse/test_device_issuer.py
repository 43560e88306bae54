"""Mint identities: with ``--device-issuer`` a client can enrol only with an
identity token the app's backend signed, and only one device per subject;
forged, expired, misaddressed and key-confused tokens are refused. Over
real HTTP against ``fedge serve``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fedge.server.devices.issuer import DeviceIssuer
from fedge.server.errors import ConfigurationError, Forbidden
from tests.helpers.live_server import LiveServer, running
from tests.server.abuse.floods import enrol
from tests.server.abuse.identity_tokens import (
    AUDIENCE,
    ISSUER,
    claims,
    hmac_with,
    jwk,
    private_pem,
    public_pem,
    rsa_key,
    sign,
    unsigned,
)
from tests.server.helpers import auth

APP_KEY = rsa_key()
OTHER_KEY = rsa_key()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("issuer")
    (work / "app.pem").write_bytes(public_pem(APP_KEY))
    args = ["--device-issuer", str(work / "app.pem"), "--device-audience", AUDIENCE]
    args += ["--device-issuer-name", ISSUER]
    with running(work / "data", args, work / "server.log") as live:
        yield live


def enrol_with(server: LiveServer, token: str | None) -> requests.Response:
    return enrol(server.url, identity_token=token) if token is not None else enrol(server.url)


def test_one_device_per_subject(server: LiveServer) -> None:
    first = enrol_with(server, sign(APP_KEY, claims("alice"), "RS256"))
    assert first.status_code == 201, first.text
    again = enrol_with(server, sign(APP_KEY, claims("alice"), "RS256"))
    assert again.status_code == 200
    assert again.json()["device_id"] == first.json()["device_id"]
    # The device's new token works, the old one no longer does.
    device, old, new = first.json()["device_id"], first.json()["token"], again.json()["token"]
    assert requests.get(f"{server.url}/v1/devices/{device}", headers=auth(new)).status_code == 200
    assert requests.get(f"{server.url}/v1/devices/{device}", headers=auth(old)).status_code == 401
    other = enrol_with(server, sign(APP_KEY, claims("bob"), "RS256"))
    assert other.status_code == 201 and other.json()["device_id"] != device


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "other_key",
        "alg_none",
        "hs256_with_public_key",
        "expired",
        "issued_in_future",
        "not_yet_valid",
        "wrong_audience",
        "no_audience",
        "wrong_issuer",
        "no_subject",
        "no_expiry",
        "garbage",
    ],
)
def test_refused_tokens(server: LiveServer, case: str) -> None:
    now = int(time.time())
    tokens = {
        "missing": None,
        "other_key": sign(OTHER_KEY, claims("mallory"), "RS256"),
        "alg_none": unsigned(claims("mallory")),
        "hs256_with_public_key": hmac_with(public_pem(APP_KEY), claims("mallory")),
        "expired": sign(APP_KEY, claims("mallory", iat=now - 900, exp=now - 600), "RS256"),
        "issued_in_future": sign(APP_KEY, claims("mallory", iat=now + 600), "RS256"),
        "not_yet_valid": sign(APP_KEY, claims("mallory", nbf=now + 600), "RS256"),
        "wrong_audience": sign(APP_KEY, claims("mallory", aud="other-app"), "RS256"),
        "no_audience": sign(APP_KEY, claims("mallory", aud=None), "RS256"),
        "wrong_issuer": sign(APP_KEY, claims("mallory", iss="https://evil"), "RS256"),
        "no_subject": sign(APP_KEY, claims(None), "RS256"),
        "no_expiry": sign(APP_KEY, claims("mallory", exp=None), "RS256"),
        "garbage": "not.a.jwt",
    }
    before = _devices(server)
    response = enrol_with(server, tokens[case])
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "bad_identity_token"
    assert _devices(server) == before  # nothing enrolled


def test_small_clock_skew_is_tolerated(server: LiveServer) -> None:
    now = int(time.time())
    token = sign(APP_KEY, claims("carol", iat=now + 10, exp=now + 300), "RS256")
    assert enrol_with(server, token).status_code == 201


def test_jwks_with_ec_and_ed25519_keys(tmp_path: Path) -> None:
    ec_key, ed_key = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
    jwks = {"keys": [jwk(ec_key, "ec-1"), jwk(ed_key, "ed-1")]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    args = ["--device-issuer", str(tmp_path / "jwks.json"), "--device-audience", AUDIENCE]
    with running(tmp_path / "data", args, tmp_path / "server.log") as live:
        by_ec = enrol(live.url, identity_token=sign(ec_key, claims("dan"), "ES256", "ec-1"))
        by_ed = enrol(live.url, identity_token=sign(ed_key, claims("erin"), "EdDSA", "ed-1"))
        assert (by_ec.status_code, by_ed.status_code) == (201, 201)
        # A key used under another key's id does not verify.
        swapped = enrol(live.url, identity_token=sign(ec_key, claims("eve"), "ES256", "ed-1"))
        assert swapped.status_code == 403
        unknown = enrol(live.url, identity_token=sign(ec_key, claims("eve"), "ES256", "nope"))
        assert unknown.status_code == 403


def test_a_private_key_or_secret_is_not_a_device_issuer(tmp_path: Path) -> None:
    (tmp_path / "private.pem").write_bytes(private_pem(APP_KEY))
    with pytest.raises(ConfigurationError, match="PEM public key"):
        DeviceIssuer.load(tmp_path / "private.pem", None, None)
    (tmp_path / "oct.json").write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    with pytest.raises(ConfigurationError, match="only RSA, EC and OKP"):
        DeviceIssuer.load(tmp_path / "oct.json", None, None)
    private_jwk = {**jwk(APP_KEY, "k"), "d": "AAAA"}
    (tmp_path / "private.json").write_text(json.dumps({"keys": [private_jwk]}))
    with pytest.raises(ConfigurationError, match="private"):
        DeviceIssuer.load(tmp_path / "private.json", None, None)


def test_an_audience_is_refused_when_none_is_configured(tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_bytes(public_pem(APP_KEY))
    issuer = DeviceIssuer.load(tmp_path / "app.pem", None, None)
    assert issuer.subject(sign(APP_KEY, claims("frank", aud=None, iss=None), "RS256")) == "frank"
    with pytest.raises(Forbidden):
        issuer.subject(sign(APP_KEY, claims("frank"), "RS256"))  # meant for AUDIENCE


def _devices(server: LiveServer) -> int:
    stats = requests.get(f"{server.url}/v1/stats", timeout=30).json()
    return int(stats["devices"]["enrolled"])
