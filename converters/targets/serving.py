"""A Keras model as one stateless serving function, for the graph converters.

TFLite and the TF.js graph model convert a ``tf.function``; this module
traces the model into one with named inputs (the model's input names) and a
dict of named outputs (:func:`~fedge.converters.source.model_io.output_specs`), so
each converter's signature carries the manifest's names.

Recurrent layers are traced so that the result holds no state between
calls. Keras 2's LSTM and GRU otherwise trace into a function that TFLite
fuses into ``UNIDIRECTIONAL_SEQUENCE_LSTM``, whose state lives in variable
tensors that carry over from one invocation to the next (and which takes
only a fixed batch). Here, while the model is traced:

- every RNN layer runs Keras's generic recurrence, not the fused-kernel
  function (``_could_use_gpu_kernel`` off);
- with a fixed number of time steps (at most :data:`MAX_UNROLL`) the loop is
  unrolled: plain ops, any batch size;
- with a variable number of steps it stays a while loop, which TFLite can
  lower to builtin ops only at a static batch (the TFLite target then
  traces again at batch 1).

The layers' attributes are put back when the trace is done.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fedge.converters.source.model_io import input_specs, output_specs

MAX_UNROLL = 512
_SUB_LAYERS = ("layer", "forward_layer", "backward_layer")


def recurrent_layers(model: Any) -> list[Any]:
    """Every ``RNN`` layer in the model, at any depth (Bidirectional's copies too)."""
    import tensorflow as tf

    return [layer for layer in _all_layers(model) if isinstance(layer, tf.keras.layers.RNN)]


def _all_layers(model: Any) -> list[Any]:
    """The model and every layer in it, at any depth, each once."""
    import tensorflow as tf

    found: list[Any] = []
    seen: set[int] = set()

    def walk(layer: Any) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found.append(layer)
        children = list(getattr(layer, "layers", None) or [])
        children += [getattr(layer, name, None) for name in _SUB_LAYERS]
        for child in children:
            if isinstance(child, tf.keras.layers.Layer):
                walk(child)

    walk(model)
    return found


def max_time_steps(model: Any) -> int | None:
    """The most time steps a recurrent layer of the model reads, from the
    layers' input shapes; None when one varies or is not known."""
    import tensorflow as tf

    steps: list[int | None] = []
    for layer in _all_layers(model):
        if not isinstance(layer, tf.keras.layers.RNN | tf.keras.layers.Bidirectional):
            continue
        try:
            shape = layer.input_shape
        except (AttributeError, RuntimeError):  # a Bidirectional's inner copies
            continue
        shape = shape[0] if isinstance(shape, list) else shape
        steps.append(shape[1] if len(shape) > 2 else None)
    known = [s for s in steps if s is not None]
    return max(known) if known and len(known) == len(steps) else None


@contextmanager
def stateless_recurrence(model: Any, unroll: bool) -> Iterator[None]:
    """Inside the block, the model's RNN layers run Keras's generic
    recurrence, unrolled if ``unroll`` (see the module docstring)."""
    saved = []
    for layer in recurrent_layers(model):
        saved.append((layer, layer.unroll, layer.__dict__.get("_could_use_gpu_kernel")))
        if unroll:
            layer.unroll = True
        if "_could_use_gpu_kernel" in layer.__dict__:
            layer._could_use_gpu_kernel = False
    try:
        yield
    finally:
        for layer, was_unrolled, gpu_kernel in saved:
            layer.unroll = was_unrolled
            if gpu_kernel is not None:
                layer._could_use_gpu_kernel = gpu_kernel


def serving_function(model: Any, batch: int | None = None) -> Any:
    """The model's inference as a concrete function: positional inputs named
    as the model's, a dict of outputs by name, recurrent layers stateless
    (unrolled when their number of time steps is fixed, at most
    :data:`MAX_UNROLL`; else a loop)."""
    if recurrent_layers(model):
        steps = max_time_steps(model)
        if steps is None or steps <= MAX_UNROLL:
            try:
                return _trace(model, batch, unroll=True)
            except ValueError:  # "Unrolling requires a fixed number of timesteps."
                pass
    return _trace(model, batch, unroll=False)


def _trace(model: Any, batch: int | None, unroll: bool) -> Any:
    import tensorflow as tf

    inputs = input_specs(model)
    names = [name for name, _, _ in output_specs(model)]
    specs = [tf.TensorSpec((batch, *shape[1:]), dtype, name=name) for name, shape, dtype in inputs]

    def serve(*xs: Any) -> dict[str, Any]:
        result = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        return dict(zip(names, tf.nest.flatten(result), strict=True))

    with stateless_recurrence(model, unroll):
        return tf.function(serve).get_concrete_function(*specs)


def layer_with_ops(model: Any, op_types: Sequence[str]) -> Any:
    """The first layer whose traced graph contains one of ``op_types``, or None."""
    if not op_types or not hasattr(model, "layers"):
        return None
    graph = serving_function(model).graph
    by_name = {layer.name: layer for layer in model.layers}
    for operation in graph.get_operations():
        if operation.type in op_types:
            for part in operation.name.split("/"):
                if part in by_name:
                    return by_name[part]
    return None
