"""The live model watched in production: devices' health reports, the
per-release, per-runtime series and the drift rule that raises alerts.

Public API: :mod:`.drift` (:class:`~.drift.Policy`, :func:`~.drift.judge`:
pure numbers), :mod:`.reports` (:func:`~.reports.report`,
:func:`~.reports.judge_closed`, :func:`~.reports.series` inside the
caller's transaction), :mod:`.shape` (what a release predicts).
"""
