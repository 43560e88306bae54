"""Devices: credentials (:mod:`.auth`), how many are known and active
(:mod:`.counts`), and what they report of their training (:mod:`.metrics`).
"""
