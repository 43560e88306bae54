"""The source model: loading Keras models and SavedModels with clear errors,
and class labels.
"""
