"""Canary releases: device evaluations (:mod:`.reports`), the decision rule
(:mod:`.decision`, pure functions), parity on the devices' own runtimes
(:mod:`.parity`, pure) and the release meant for a device on its runtime
(:mod:`.delivery`).
"""
