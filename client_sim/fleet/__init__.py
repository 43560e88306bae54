"""Fleets of simulated devices: preparation (model, data, server), the round
loop and pacing, the thread backend (:mod:`.threads`), the Ray backend
(:mod:`.ray`), and releases during a run.
"""
