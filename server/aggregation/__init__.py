"""Aggregation, pure NumPy: weighted means and robust kernels
(:mod:`.kernels`), server strategies (:mod:`.strategies`), central DP
(:mod:`.central_dp`, :mod:`.privacy`), the per-update pipeline of stages and
the sources robust strategies read updates from. No Flask, no HTTP errors.
"""
