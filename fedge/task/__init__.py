"""What a federated task is: examples with named inputs and labels
(:mod:`.examples`), the CSV layout examples are read from (:mod:`.csv_layout`)
and the objective a model is scored on (:mod:`.objective`).
"""
