"""Aggregation, pure NumPy: weighted means and robust kernels
(:mod:`.kernels`; a batch of updates summed block by block in
:mod:`.blocked`), server strategies (:mod:`.strategies`), central DP
(:mod:`.central_dp`, :mod:`.privacy`), the per-update pipeline of stages and
the sources robust strategies read updates from. No Flask, no HTTP errors.
"""
