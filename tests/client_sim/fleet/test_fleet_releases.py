"""A fleet that cuts releases: canary devices evaluate them on their own
data and report, the server decides, the report shows it.

The embedded server over real HTTP; its release builds run in their worker
process. Every cut release reaches all devices (rollout 100 %), so which
devices are canaries does not depend on the random device ids; the server
decides on the third report, and the devices that report after it are
told the release is no longer the candidate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedge.bundle.manifest import MANIFEST_FILE, verify_bundle
from fedge.cli.main import main
from fedge.client_sim.device.client import ProtocolError
from fedge.client_sim.device.release_cache import check_given
from fedge.client_sim.fleet.config import FleetConfig
from fedge.client_sim.fleet.run import run_fleet


@pytest.mark.long(40)
def test_a_fleet_cuts_releases_and_its_canary_devices_decide_them(tmp_path: Path) -> None:
    config = FleetConfig(
        devices=6,
        per_round=3,
        rounds=2,
        seed=3,
        workers=4,
        release_every=1,
        release_rollout=100.0,
        canary_min_reports=3,
        work_dir=tmp_path,
    )

    report = run_fleet(config)

    releases = report.releases
    assert releases is not None
    made = releases.releases
    assert [r.cut_after_round for r in made] == [1, 2]
    assert all(r.source.startswith("round:") for r in made)
    first = made[0]
    canary = first.canary
    assert canary is not None
    assert (first.metric, first.percent) == ("accuracy", 100.0)
    # Counted: devices enrolled before the cut with an accepted update (a
    # round takes 3), one weight each; every device of the slice reported.
    assert 1 <= canary["devices"] <= 3 <= first.reports
    assert sum(first.using.values()) == first.reports
    assert canary["interval"][0] <= canary["estimate"] <= canary["interval"][1]
    if first.decision is None:  # 3 devices rarely settle the sequential test
        assert canary["outcome"] == "keep collecting"
        assert canary["reason"].startswith("not enough evidence yet")
        assert first.state in ("canary", "rolled_back")  # the next cut replaces it
    else:
        side = first.decision
        assert canary["statistic"][side] >= canary["threshold"][side]
        assert first.state in (("live", "retired") if side == "promote" else ("rolled_back",))
    assert any(k.startswith("reported") for k in releases.outcomes), releases.outcomes
    # The canary devices ran the bundle's golden samples on their TFLite
    # runtime: it computes what the source model computed (issue 23).
    tflite = first.parity["tflite"]
    assert 1 <= tflite["devices"] <= canary["devices"]
    assert tflite["ok"] and tflite["failing"] == 0
    assert 0 <= tflite["max_error"] < 1e-4
    assert tflite["agreement"] == 1.0
    # Every device serves something, and every bundle it took is the one it was given.
    assert sum(releases.adoption.values()) == 6
    for device in releases.devices:
        assert device["bundle_id"] in device["adopted"]
        for bundle_id in device["adopted"]:
            path = tmp_path / "releases" / bundle_id
            assert verify_bundle(path, expected_id=bundle_id).name == report.model["name"]
    assert "admin_token" not in report.config
    shown = report.to_json()["releases"]
    assert shown["releases"][0]["decision"] == first.decision
    assert shown["releases"][0]["canary"]["devices"] == canary["devices"]


@pytest.mark.long(31)
def test_simulate_shows_the_releases_in_its_tables_json_and_plot(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "run.json", tmp_path / "run.png"
    args = ["simulate", "--devices", "5", "--per-round", "3", "--rounds", "1"]
    args += ["--release-every", "1", "--release-rollout", "100", "--canary-min-reports", "2"]

    result = CliRunner().invoke(main, [*args, "--report", str(out_json), "--plot", str(out_png)])

    assert result.exit_code == 0, result.output
    assert "releases (canary on the devices' own data)" in result.output
    assert "releases: 1 made" in result.output
    report = json.loads(out_json.read_text())
    (release,) = report["releases"]["releases"]
    canary = release["canary"]
    assert release["reports"] >= canary["devices"] >= 1
    said = f"release {release['version']}: "
    assert said in result.output
    # Parity per runtime: the canary devices ran the golden samples on TFLite.
    assert release["parity"]["tflite"]["ok"]
    (closing,) = [line for line in result.output.splitlines() if line.startswith(said)]
    assert closing.endswith("; parity tflite ok 1.00"), closing
    assert "parity" in result.output.split("releases (canary on the devices' own data)")[1]
    if release["decision"] is None:
        assert f"{said}not enough evidence yet" in result.output
    else:
        assert canary["statistic"][release["decision"]] >= 20
    assert set(report["releases"]["adoption"]) == {"candidate", "live", "personal", "older"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_device_refuses_a_bundle_that_is_not_the_one_it_was_given(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_bytes(b'{"name": "not it"}')

    with pytest.raises(ProtocolError) as refused:
        check_given(tmp_path, "ab" * 32)

    assert refused.value.code == "bundle_mismatch"
