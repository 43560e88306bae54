"""Schemathesis against a live ``fedge serve``: no 5xx, every response as documented.

Schemathesis generates requests from server/openapi.yaml (valid and invalid
ones: wrong types, missing fields, odd strings, boundary integers) and checks
every response against the same document. It lives in its own environment,
``.schemathesis-venv/`` (made by scripts/setup_schemathesis.sh, which
scripts/test.sh runs), because its dependencies conflict with the pinned
TensorFlow Federated stack, so its CLI runs here as a subprocess against the
real server process.

The document's two security schemes get real tokens: ``device`` the token of
a device enrolled before the run, ``admin`` the server's admin token. The
enrolled device's id, the open round and its base checkpoint are offered as
path parameters half of the time, so the 200 responses of the routes behind
them are checked too, not only their 403s and 404s.

Generation is deterministic (Hypothesis derandomized): the same server code
gets the same requests. To reproduce a failure by hand, start a server and run
the command this test prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.live_server import running

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "server" / "openapi.yaml"
VENV = ROOT / ".schemathesis-venv"
CLI = VENV / "bin" / "schemathesis"
ADMIN_TOKEN = "admin-secret"  # tests.helpers.live_server.start's default

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
PHASES = "examples,coverage,fuzzing"  # stateful needs links the document does not have
MAX_EXAMPLES = 100  # per operation and phase: about 20 s of requests on 2 cores
CLI_TIMEOUT_S = 360

# Failure types in schemathesis's JSON report (schemathesis.failure_codes).
SERVER_ERRORS = {"ServerError", "ContentTypeServerError"}
SCHEMA_VIOLATIONS = {
    "JsonSchemaError",
    "MalformedJson",
    "ContentDeserializationError",
    "UndefinedStatusCode",
    "MissingContentType",
    "UndefinedContentType",
    "MalformedMediaType",
}


def _toml(value: str | int) -> str:
    return json.dumps(value)  # a JSON string or integer is a TOML basic string or integer


def _config(device_token: str, device_id: str, round_id: int, checkpoint: str) -> str:
    """schemathesis.toml: tokens per security scheme, known ids as path values."""
    dictionaries: dict[str, str | int] = {
        "device_id": device_id,
        "round_id": round_id,
        "checkpoint_id": checkpoint,
    }
    lines = [
        "[auth]",
        "auto-signup = false",
        "[auth.openapi.device]",
        f"bearer = {_toml(device_token)}",
        "[auth.openapi.admin]",
        f"bearer = {_toml(ADMIN_TOKEN)}",
    ]
    for name, value in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = [{_toml(value)}]"]
    lines.append("[parameters]")
    lines += [
        f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in dictionaries
    ]
    # GET /v1/events and /v1/events/poll wait up to `timeout` seconds for events
    # (300 and 30): fuzzed, that is minutes of sleeping per operation. 0 answers
    # with what there is at once; the waits are tested in tests/server/events/test_events.py.
    lines.append('"query.timeout" = 0')
    return "\n".join(lines) + "\n"


def _command(config: Path, url: str, json_report: Path, junit_report: Path) -> list[str]:
    return [
        str(CLI),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        str(SPEC),
        "--url",
        url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        PHASES,
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--continue-on-failure",
        "--request-timeout",
        "10",
        "--report",
        "json,junit",
        "--report-json-path",
        str(json_report),
        "--report-junit-path",
        str(junit_report),
    ]


def _junit_failures(path: Path) -> list[str]:
    """Each failing operation with schemathesis's own account of its failures."""
    if not path.exists():
        return []
    failures = []
    for case in ET.parse(path).getroot().iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            failures.append(f"--- {case.get('name')}\n{problem.text or problem.get('message')}")
    return failures


def _counts(report: dict[str, Any]) -> dict[str, int]:
    by_type: dict[str, int] = {}
    for failure in report.get("failures", []):
        by_type[failure["type"]] = by_type.get(failure["type"], 0) + int(failure["count"])
    return {
        "server_errors": sum(n for t, n in by_type.items() if t in SERVER_ERRORS),
        "schema_violations": sum(n for t, n in by_type.items() if t in SCHEMA_VIOLATIONS),
        "other_failures": sum(
            n for t, n in by_type.items() if t not in SERVER_ERRORS | SCHEMA_VIOLATIONS
        ),
        "errors": len(report.get("errors", [])),
    }


@pytest.mark.long(60)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    tiny_keras: Path, tmp_path: Path
) -> None:
    if not CLI.exists():
        pytest.fail(
            f"{CLI} not found: run `bash scripts/setup_schemathesis.sh` "
            "(scripts/test.sh does) to install Schemathesis in its own environment"
        )
    config = tmp_path / "schemathesis.toml"
    json_report, junit_report = tmp_path / "report.json", tmp_path / "junit.xml"
    log = tmp_path / "server.log"
    # Not the test's .venv: the CLI's own interpreter and nothing of ours on its path.
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.update({"NO_COLOR": "1", "COLUMNS": "120"})

    with running(tmp_path / "data", ["--model", str(tiny_keras)], log) as server:
        enrolment = requests.post(
            f"{server.url}/v1/devices", json={"platform": "schemathesis"}, timeout=10
        )
        assert enrolment.status_code == 201, enrolment.text
        device = enrolment.json()
        current = requests.get(f"{server.url}/v1/rounds/current", timeout=10).json()
        config.write_text(
            _config(
                device["token"],
                device["device_id"],
                current["round_id"],
                current["base_checkpoint"],
            )
        )
        command = _command(config, server.url, json_report, junit_report)
        started = time.monotonic()
        try:
            # cwd: Hypothesis and schemathesis write their caches there, not in the repo.
            result = subprocess.run(
                command,
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:  # run() has killed it
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
            pytest.fail(f"schemathesis ran past {CLI_TIMEOUT_S} s:\n{out[-6000:]}")
        elapsed = time.monotonic() - started

    print(f"schemathesis: {' '.join(command)}\n({elapsed:.0f} s, exit {result.returncode})")
    print(result.stdout[-4000:])
    if not json_report.exists():
        pytest.fail(
            f"schemathesis wrote no report (exit {result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    report = json.loads(json_report.read_text())
    counts = _counts(report)
    failures = "\n\n".join(_junit_failures(junit_report)) or result.stdout[-6000:]
    summary = (
        f"{counts} over {report['test_cases']['generated']} generated test cases "
        f"(server log: {log})\n\n{failures}\n{result.stderr[-2000:]}"
    )
    assert report["operations"]["tested"] == report["operations"]["total"], summary
    assert counts == {
        "server_errors": 0,
        "schema_violations": 0,
        "other_failures": 0,
        "errors": 0,
    }, summary
    assert result.returncode == 0, summary
