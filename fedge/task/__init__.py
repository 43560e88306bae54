"""What a federated task is: examples with named inputs and labels
(:mod:`.examples`) and the objective a model is scored on (:mod:`.objective`).
"""
