"""The ``fedge`` command line (:func:`fedge.cli.main.main`): one subcommand per
job. Nothing imports from this package but the entry point.
"""
