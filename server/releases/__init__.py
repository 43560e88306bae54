"""Releases: the registry of stored bundles (:mod:`.registry`), changes to
releases (:mod:`.actions`), rollout slices, the release policy, push checks;
builds from checkpoints (:mod:`.build`) and canary decisions (:mod:`.canary`).
"""
