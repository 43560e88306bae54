"""A bundle rebuilt with other weights: the bundle's own Keras model, with
a checkpoint's weights, converted the way that bundle was.

Public API: :func:`.convert.rebuild_bundle` (the model, the weights, the
conversion) and :func:`.options.options_like` (the conversion options a
bundle's manifest records). A server's release build and ``fedge pull
--checkpoint`` both make their bundles here, so a pulled checkpoint is the
bundle a release cut from it would be.
"""
