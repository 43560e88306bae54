"""What any device does: the round protocol client, its transport, the
events it follows, bundle downloads, on-device trainers, following releases,
and one simulated device (:mod:`.simulated`).
"""
