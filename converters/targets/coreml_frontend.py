"""Fixes to coremltools' TensorFlow frontend, applied only while fedge converts.

coremltools 9 maps some TensorFlow ops in ways that break Keras layers
users have. Each fix here replaces one op's conversion function in the
frontend's registry (coremltools' own ``register_tf_op(override=True)``,
the documented way to supply a conversion) for the duration of one
``ct.convert`` call, then puts the original back, so nothing outside
fedge's conversion sees a changed coremltools.

``SplitV``
    ``tf.split(x, [8, 8, -1], axis=-1)`` (a GRU cell outside the fused
    kernel: ``reset_after=False``, ``unroll=True``, a non-tanh activation,
    often inside ``Bidirectional``) reaches MIL with the ``-1`` unresolved:
    the last piece gets a dimension of -1 and saving fails with "Value out
    of range: -1". The fix resolves ``-1`` from the input's static size.

``OnesLike``
    ``tf.ones_like`` (Transformers build attention masks with it) has no
    conversion at all in coremltools 9, though ``ZerosLike`` has. The fix
    adds one, the same fill with 1 instead of 0, unless coremltools brings
    its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def fixed_tensorflow_frontend() -> Iterator[None]:
    """coremltools' TensorFlow frontend with fedge's fixes, inside the block."""
    from coremltools.converters.mil.frontend.tensorflow import ops as tf_ops
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import (
        _TF_OPS_REGISTRY,
        register_tf_op,
    )

    original = tf_ops.SplitV
    register_tf_op(_split_v(original), override=True)
    adds_ones_like = "OnesLike" not in _TF_OPS_REGISTRY
    if adds_ones_like:
        register_tf_op(_ones_like())
    try:
        yield
    finally:
        register_tf_op(original, override=True)
        if adds_ones_like:
            # The registry has no unregister; the added entry goes as it came.
            _TF_OPS_REGISTRY.pop("OnesLike", None)


def _split_v(original: Any) -> Any:
    """``SplitV`` with a ``-1`` size resolved when the split axis is static."""
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil.types.symbolic import is_symbolic

    def SplitV(context: Any, node: Any) -> None:  # the registry keys on this name
        x, sizes, axis = (context[name] for name in node.inputs[:3])
        requested = None if sizes.val is None else [int(s) for s in sizes.val]
        if requested is None or len(requested) < 2 or -1 not in requested or axis.val is None:
            original(context, node)
            return
        total = x.shape[int(axis.val)]
        if is_symbolic(total) or requested.count(-1) != 1:
            original(context, node)
            return
        rest = int(total) - sum(s for s in requested if s != -1)
        resolved = [rest if s == -1 else s for s in requested]
        pieces = mb.split(
            x=x,
            num_splits=len(resolved),
            split_sizes=resolved,
            axis=int(axis.val),
            name=node.name,
        )
        context.add(node.name, pieces)

    return SplitV


def _ones_like() -> Any:
    """``OnesLike``: ones of the input's shape and dtype, as ``ZerosLike`` makes zeros."""
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    def OnesLike(context: Any, node: Any) -> None:  # the registry keys on this name
        x = context[node.inputs[0]]
        if x.rank == 0:
            one = types.nptype_from_builtin(x.sym_type)(1)
            context.add(node.name, mb.const(val=one, name=node.name))
            return
        one = types.nptype_from_builtin(x.sym_type.get_primitive())(1)
        context.add(node.name, mb.fill(shape=mb.shape(x=x), value=one, name=node.name))

    return OnesLike
