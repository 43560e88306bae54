"""Parity: each target's outputs against Keras on the same inputs
(:mod:`.compare`), the training step against Keras (:mod:`.training`), the
inputs used (:mod:`.samples`) and the runtime interface (:mod:`.predictor`).
"""
