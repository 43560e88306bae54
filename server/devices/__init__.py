"""Devices: credentials (:mod:`.auth`), how many are known and active
(:mod:`.counts`), what they report of their training (:mod:`.metrics`), and
how many long requests one client may hold at once (:mod:`.slots`).
"""
