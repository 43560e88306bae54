"""The manifest protects itself: ``manifest.sha256`` beside it, and the
bundle id (the sha256 of ``manifest.json``'s bytes), which a device that
knows the published id checks against a channel it trusts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fedge.bundle.manifest import (
    MANIFEST_FILE,
    MANIFEST_HASH_FILE,
    Manifest,
    ManifestError,
    TensorSpec,
    open_bundle,
    seal_manifest,
    verify_bundle,
    write_manifest,
)
from fedge.wire.weight_spec import ModelSpec

MODEL = b"the model, version 1"
EVIL = b"a model that says yes"


def file_record(path: str, data: bytes) -> dict[str, object]:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle of one artifact file, written as ``fedge convert`` writes one."""
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "model.bin").write_bytes(MODEL)
    manifest = Manifest(
        name="tiny",
        version="1",
        created="2024-01-01T00:00:00+00:00",
        inputs=(TensorSpec("x", (None, 2), "float32"),),
        outputs=(TensorSpec("y", (None, 1), "float32"),),
        weights=ModelSpec.from_json([{"name": "w", "shape": [2, 1], "dtype": "float32"}]),
        labels=None,
        artifacts={"keras": {"entry": "model.bin", "files": [file_record("model.bin", MODEL)]}},
        parity={},
    )
    write_manifest(root, manifest)
    return root


def edit_manifest(root: Path, edit: dict[str, object]) -> None:
    raw = json.loads((root / MANIFEST_FILE).read_text())
    raw.update(edit)
    (root / MANIFEST_FILE).write_text(json.dumps(raw, indent=2))


def test_the_manifest_is_sealed_by_its_sha256(bundle: Path) -> None:
    manifest_bytes = (bundle / MANIFEST_FILE).read_bytes()
    expected = hashlib.sha256(manifest_bytes).hexdigest()

    opened = open_bundle(bundle)

    # sha256sum's format: `sha256sum -c manifest.sha256` checks it too.
    assert (bundle / MANIFEST_HASH_FILE).read_text() == f"{expected}  manifest.json\n"
    assert opened.bundle_id == expected
    assert opened.sealed is True
    assert opened.manifest.name == "tiny"


def test_an_edited_manifest_fails_verification(bundle: Path) -> None:
    edit_manifest(bundle, {"labels": ["cat"]})

    with pytest.raises(ManifestError) as caught:
        verify_bundle(bundle)

    assert str(caught.value).startswith(
        "manifest.json does not match manifest.sha256 (edited after it was written?)"
    )


def test_a_swapped_file_and_its_hash_fail_verification(bundle: Path) -> None:
    # The attack the file hashes alone let through: new bytes, and the
    # manifest's record of them updated to match.
    (bundle / "model.bin").write_bytes(EVIL)
    records = {"keras": {"entry": "model.bin", "files": [file_record("model.bin", EVIL)]}}
    edit_manifest(bundle, {"artifacts": records})

    with pytest.raises(ManifestError, match=r"does not match manifest\.sha256"):
        verify_bundle(bundle)


def test_rewriting_both_passes_locally_but_not_against_the_published_id(bundle: Path) -> None:
    published = open_bundle(bundle).bundle_id
    (bundle / "model.bin").write_bytes(EVIL)
    records = {"keras": {"entry": "model.bin", "files": [file_record("model.bin", EVIL)]}}
    edit_manifest(bundle, {"artifacts": records})
    forged = seal_manifest(bundle)

    # The documented limit: a hash beside the manifest cannot stop whoever
    # rewrites both; the published id, known from a trusted channel, does.
    assert open_bundle(bundle).bundle_id == forged != published
    with pytest.raises(ManifestError) as caught:
        verify_bundle(bundle, expected_id=published)

    assert str(caught.value) == (
        f"bundle id {forged} is not the expected {published}: "
        "this bundle's manifest is not the published one"
    )


def test_the_published_id_accepts_the_published_bundle(bundle: Path) -> None:
    published = open_bundle(bundle).bundle_id

    assert verify_bundle(bundle, expected_id=published.upper()).name == "tiny"


def test_a_bundle_from_before_manifest_hashes_is_read_but_not_sealed(bundle: Path) -> None:
    (bundle / MANIFEST_HASH_FILE).unlink()
    expected = hashlib.sha256((bundle / MANIFEST_FILE).read_bytes()).hexdigest()

    opened = open_bundle(bundle, expected_id=expected)

    assert opened.sealed is False
    assert opened.bundle_id == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not a hash\n", "manifest.sha256 must hold the sha256 of manifest.json"),
        (f"{'0' * 64}  other.json\n", "manifest.sha256 must hold the sha256 of manifest.json"),
    ],
)
def test_a_malformed_hash_file_is_refused(bundle: Path, content: str, message: str) -> None:
    (bundle / MANIFEST_HASH_FILE).write_text(content)

    with pytest.raises(ManifestError, match=message):
        verify_bundle(bundle)


def test_an_expected_id_must_be_a_sha256(bundle: Path) -> None:
    with pytest.raises(ManifestError, match="a bundle id is 64 hex digits"):
        verify_bundle(bundle, expected_id="1234")
