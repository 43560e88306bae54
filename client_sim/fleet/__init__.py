"""Fleets of simulated devices against a server.

:func:`.run.run_fleet` runs one as its :class:`.config.FleetConfig` says:
preparation (:mod:`.preparation`, :mod:`.model_source`, :mod:`.device_data`),
the rounds written once (:mod:`.rounds`, paced by :mod:`.pacing`) against
the :class:`.backend.DeviceBackend` interface, whose implementations are the
thread backend (:mod:`.threads`) and the Ray backend (:mod:`.ray`); and
releases during a run (:mod:`.releases`).
"""
