"""Attack (or accident): a body or headers far over the bound (issue 22).

Before: past the bound waitress sent its 413 and closed the connection while
the client was still sending, so ``requests`` and ``urllib`` clients, which
send the whole body before they read, saw ECONNRESET/EPIPE instead of the
JSON error (predict at 3, 16 and 64 MiB; 13 MiB of headers on an update).
Now the server reads and discards the rest of the request up to a bound,
then answers and closes: the client reads the JSON error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import requests

from tests.helpers.live_server import LiveServer
from tests.server.abuse.live import assert_json_error, auth, enrol, serve

MiB = 2**20
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("oversized")) as server:
        yield server


def predict_url(live: LiveServer) -> str:
    name = requests.get(f"{live.url}/v1/models", timeout=10).json()["models"][0]["name"]
    return f"{live.url}/v1/models/{name}/predict"


@pytest.mark.parametrize("mib", [3, 16, 64])
def test_an_oversized_predict_gets_its_413_json_with_requests(live: LiveServer, mib: int) -> None:
    token = enrol(live.url)
    body = b"[" + b" " * (mib * MiB - 2) + b"]"
    headers = {**auth(token), "Content-Type": "application/json"}

    response = requests.post(predict_url(live), data=body, headers=headers, timeout=120)

    assert_json_error(response, 413, "payload_too_large")
    assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(("route", "mib"), [("predict", 3), ("predict", 16), ("update", 16)])
def test_an_oversized_body_gets_its_413_json_with_urllib(
    live: LiveServer, route: str, mib: int
) -> None:
    token = enrol(live.url)
    url = predict_url(live) if route == "predict" else f"{live.url}/v1/rounds/1/updates"
    request = urllib.request.Request(
        url, data=b"\0" * (mib * MiB), headers={**auth(token), **OCTET}, method="POST"
    )

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=120)

    assert refused.value.code == 413
    assert json.loads(refused.value.read())["code"] == "payload_too_large"
    assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 200


def test_13_mib_of_headers_on_an_update_get_a_431_json(live: LiveServer) -> None:
    token = enrol(live.url)
    headers = {**auth(token), **OCTET, "X-Padding": "a" * (13 * MiB)}

    response = requests.post(
        f"{live.url}/v1/rounds/1/updates", data=b"\0" * 1024, headers=headers, timeout=120
    )

    assert_json_error(response, 431, "request_header_fields_too_large")
    assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 200
