"""The Ray backend: devices in Ray actors (:mod:`.device_host`), their
handles (:mod:`.hosts`), the cluster (:mod:`.cluster`), the run (:mod:`.backend`).
"""
