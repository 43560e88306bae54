"""A release build's work: the live bundle rebuilt with a checkpoint's weights.

Runs in the release worker (:mod:`fedge.server.releases.build.worker`), never in
the server process: it imports TensorFlow and takes seconds to minutes. The
rebuild itself (model, weights, conversion with the live bundle's options)
is :func:`fedge.converters.rebuild.convert.rebuild_bundle`, which ``fedge
pull --checkpoint`` runs too: a pulled checkpoint and a release cut from it
are converted alike.
"""

from __future__ import annotations

from pathlib import Path

from fedge.bundle.manifest import open_bundle
from fedge.converters.rebuild.convert import Say, rebuild_bundle
from fedge.server.releases.build.wire import BuildJob
from fedge.wire.update_codec import decode_checkpoint


def build_release(job: BuildJob, say: Say) -> Path:
    """Write the new bundle at ``job.out``; returns it."""
    live_dir = Path(job.live_bundle)
    manifest = open_bundle(live_dir).manifest
    say("checkpoint", f"reading checkpoint {Path(job.checkpoint).stem[:12]}")
    weights = decode_checkpoint(Path(job.checkpoint).read_bytes(), manifest.weights).weights
    return rebuild_bundle(live_dir, weights, Path(job.out), job.version, say)
