"""Canary releases: device evaluations (:mod:`.reports`) and the decision rule
(:mod:`.decision`, pure functions).
"""
