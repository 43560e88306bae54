"""Conversion targets: TFLite (and its training artifact), TF.js (layers and
graph), Core ML (with a NumPy MIL evaluator), the Keras source kept as a
runtime; :mod:`.registry` is the table of them.
"""
