"""Federated rounds: the coordinator (the one object the views call), task
selection and admission, accepting and validating uploads, the running sum,
closing rounds into checkpoints, the round driver and recovery at start.
"""
