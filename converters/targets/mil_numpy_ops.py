"""NumPy kernels for the MIL ops that Keras models become in Core ML.

coremltools gives many MIL ops a NumPy ``value_inference``, but not the
ones that carry a network's weight: ``conv``, ``conv_transpose``, the
pools and ``batch_norm`` have none, nor has ``silu`` (Keras's swish).
These kernels fill that gap,
and also take over the cheap ops that run inside recurrent loops (``add``,
``mul``, ``sigmoid``, ``split``...), where rebuilding an op for
``value_inference`` at every step would be slow.

Each kernel takes the op's inputs by MIL name, already resolved to NumPy
values (strings for ``pad_type``, tuples for variadic inputs), and returns
one array or a tuple of arrays. Floating point work is done in float32;
the evaluator then stores each result in the dtype that the op's output
declares, so an fp16 program is rounded to fp16 after every op, as it is
on a device. Layouts follow MIL: channels first (``N, C, *spatial``),
convolution weights ``(C_out, C_in / groups, *kernel)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

Array = npt.NDArray[Any]
Kernel = Callable[[Mapping[str, Any]], Any]

# MIL's dtype strings (``cast``, ``make_list``) and the NumPy types they name.
MIL_DTYPES: dict[str, type[np.generic]] = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


def _f32(value: Any) -> Array:
    return np.asarray(value, dtype=np.float32)


def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


# --- padding and sliding windows, shared by conv and the pools -------------


def _pads(
    sizes: Sequence[int],
    spans: Sequence[int],
    strides: Sequence[int],
    pad_type: str,
    pad: Any,
) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim for MIL's ``pad_type``.

    ``spans`` are effective kernel sizes (dilation included). ``same`` puts
    the odd pixel after, ``same_lower`` before, as Core ML does.
    """
    if pad_type == "valid":
        return [(0, 0)] * len(sizes)
    if pad_type == "custom":
        flat = _ints(pad)
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(sizes))]
    if pad_type in ("same", "same_lower"):
        pairs = []
        for size, span, stride in zip(sizes, spans, strides, strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if pad_type == "same" else (big, small))
        return pairs
    raise ValueError(f"unknown pad_type {pad_type!r}")


def _windows(
    x: Array, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> Array:
    """A view of shape ``(N, C, *out, *kernel)`` over an already padded input."""
    spatial = len(kernel)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    axes: Any = tuple(range(2, 2 + spatial))  # numpy's stubs accept only one axis
    view = sliding_window_view(x, spans, axis=axes)
    steps = (
        [slice(None)] * 2
        + [slice(None, None, s) for s in strides]
        + [slice(None, None, d) for d in dilations]
    )
    return np.asarray(view[tuple(steps)])


def conv(args: Mapping[str, Any]) -> Array:
    """Grouped, strided, dilated convolution (depthwise when groups == C_in)."""
    x, weight = _f32(args["x"]), _f32(args["weight"])
    spatial = x.ndim - 2
    kernel = list(weight.shape[2:])
    strides = _ints(args.get("strides", [1] * spatial))
    dilations = _ints(args.get("dilations", [1] * spatial))
    groups = int(args.get("groups", 1))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    pads = _pads(x.shape[2:], spans, strides, str(args.get("pad_type", "valid")), args.get("pad"))
    padded = np.pad(x, [(0, 0), (0, 0), *pads])
    windows = _windows(padded, kernel, strides, dilations)
    batch, channels = x.shape[:2]
    out_sizes = windows.shape[2 : 2 + spatial]
    patches = windows.reshape(
        batch, groups, channels // groups, math.prod(out_sizes), math.prod(kernel)
    )
    filters = weight.reshape(groups, weight.shape[0] // groups, channels // groups, -1)
    y = np.einsum("ngcpk,gock->ngop", patches, filters, optimize=True)
    y = y.reshape(batch, weight.shape[0], *out_sizes)
    if args.get("bias") is not None:
        y = y + _f32(args["bias"]).reshape(1, -1, *[1] * spatial)
    return np.asarray(y)


def conv_transpose(args: Mapping[str, Any]) -> Array:
    """Transposed convolution (Keras's ``Conv1DTranspose``/``Conv2DTranspose``).

    Each input pixel scatters its kernel-weighted channels into the output
    at ``stride`` steps; the full result is then cropped as the forward
    convolution of the same padding would have padded it (``same``: the
    odd pixel after, as TensorFlow does). MIL's weight is
    ``(C_in, C_out / groups, *kernel)``.
    """
    x, weight = _f32(args["x"]), _f32(args["weight"])
    batch, channels, *sizes = x.shape
    kernel = list(weight.shape[2:])
    strides = _ints(args.get("strides", [1] * len(sizes)))
    dilations = _ints(args.get("dilations", [1] * len(sizes)))
    groups = int(args.get("groups", 1))
    per_group = weight.shape[1]
    full_sizes = [
        (n - 1) * s + (k - 1) * d + 1
        for n, s, k, d in zip(sizes, strides, kernel, dilations, strict=True)
    ]
    full = np.zeros((batch, groups, per_group, *full_sizes), np.float32)
    grouped_x = x.reshape(batch, groups, channels // groups, *sizes)
    grouped_w = weight.reshape(groups, channels // groups, per_group, *kernel)
    for offset in np.ndindex(*kernel):
        tap: tuple[Any, ...] = (slice(None), slice(None), slice(None), *offset)
        taps = grouped_w[tap]
        spread = np.einsum("ngc...,gco->ngo...", grouped_x, taps)
        where: list[Any] = [
            slice(o * d, o * d + (n - 1) * s + 1, s)
            for o, d, n, s in zip(offset, dilations, sizes, strides, strict=True)
        ]
        full[(slice(None), slice(None), slice(None), *where)] += spread
    full = full.reshape(batch, groups * per_group, *full_sizes)
    y = _crop_transposed(full, sizes, strides, args)
    if args.get("bias") is not None:
        y = y + _f32(args["bias"]).reshape(1, -1, *[1] * len(sizes))
    return np.asarray(y)


def _crop_transposed(
    full: Array, sizes: Sequence[int], strides: Sequence[int], args: Mapping[str, Any]
) -> Array:
    """The part of a transposed convolution's full output that MIL keeps."""
    pad_type = str(args.get("pad_type", "valid"))
    flat_pad = _ints(args["pad"]) if args.get("pad") is not None else [0] * 2 * len(sizes)
    full_sizes = full.shape[2:]
    if args.get("output_shape") is not None:
        outs = _ints(args["output_shape"])[2:]
    elif pad_type == "same":
        outs = [n * s for n, s in zip(sizes, strides, strict=True)]
    elif pad_type == "custom":
        outs = [f - flat_pad[2 * i] - flat_pad[2 * i + 1] for i, f in enumerate(full_sizes)]
    elif pad_type == "valid":
        outs = list(full_sizes)
    else:
        raise ValueError(f"unknown pad_type {pad_type!r}")
    index: list[slice] = [slice(None), slice(None)]
    tail = []
    for i, (f, out) in enumerate(zip(full_sizes, outs, strict=True)):
        before = flat_pad[2 * i] if pad_type == "custom" else max(f - out, 0) // 2
        index.append(slice(before, before + out))
        tail.append((0, max(before + out - f, 0)))  # stride > kernel: zeros after
    return np.pad(full, [(0, 0), (0, 0), *tail])[tuple(index)]


def _pool_input(args: Mapping[str, Any], fill: float) -> tuple[Array, Array, list[int], list[int]]:
    """The padded input, a mask of what counts for averaging, kernel and strides.

    ``ceil_mode`` adds padding at the end so that a last, partial window
    exists; it never counts towards an average.
    """
    x = _f32(args["x"])
    kernel = _ints(args["kernel_sizes"])
    strides = _ints(args["strides"])
    pads = _pads(x.shape[2:], kernel, strides, str(args.get("pad_type", "valid")), args.get("pad"))
    extra = [0] * len(kernel)
    if bool(args.get("ceil_mode", False)):
        for i, (size, k, s, (before, after)) in enumerate(
            zip(x.shape[2:], kernel, strides, pads, strict=True)
        ):
            length = size + before + after
            out = math.ceil((length - k) / s) + 1
            if (out - 1) * s >= size + before:  # a window must start inside the input
                out -= 1
            extra[i] = max((out - 1) * s + k - length, 0)
    include_pad = not bool(args.get("exclude_padding_from_average", False))
    declared = [(0, 0), (0, 0), *pads]
    full = [(0, 0), (0, 0), *[(b, a + e) for (b, a), e in zip(pads, extra, strict=True)]]
    padded = np.pad(x, full, constant_values=fill)
    mask = np.ones(x.shape[2:], dtype=np.float32)[None, None]
    mask = np.pad(mask, declared, constant_values=1.0 if include_pad else 0.0)
    mask = np.pad(mask, [(0, 0), (0, 0), *[(0, e) for e in extra]])
    return padded, mask, kernel, strides


def max_pool(args: Mapping[str, Any]) -> Array:
    padded, _, kernel, strides = _pool_input(args, fill=-np.inf)
    windows = _windows(padded, kernel, strides, [1] * len(kernel))
    return np.asarray(np.max(windows, axis=tuple(range(-len(kernel), 0))))


def avg_pool(args: Mapping[str, Any]) -> Array:
    padded, mask, kernel, strides = _pool_input(args, fill=0.0)
    axes = tuple(range(-len(kernel), 0))
    ones = [1] * len(kernel)
    total = np.sum(_windows(padded, kernel, strides, ones), axis=axes)
    count = np.sum(_windows(mask, kernel, strides, ones), axis=axes)
    return np.asarray(total / np.maximum(count, 1.0))


def batch_norm(args: Mapping[str, Any]) -> Array:
    x = _f32(args["x"])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = 1.0 / np.sqrt(_f32(args["variance"]) + np.float32(args.get("epsilon", 1e-5)))
    y = (x - _f32(args["mean"]).reshape(shape)) * scale.reshape(shape)
    if args.get("gamma") is not None:
        y = y * _f32(args["gamma"]).reshape(shape)
    if args.get("beta") is not None:
        y = y + _f32(args["beta"]).reshape(shape)
    return np.asarray(y)


def linear(args: Mapping[str, Any]) -> Array:
    """``x @ weight.T + bias``, with weight ``(out, in)`` as in MIL."""
    y = _f32(args["x"]) @ _f32(args["weight"]).T
    return y + _f32(args["bias"]) if args.get("bias") is not None else y


def matmul(args: Mapping[str, Any]) -> Array:
    x, y = _f32(args["x"]), _f32(args["y"])
    if bool(args.get("transpose_x", False)) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if bool(args.get("transpose_y", False)) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.asarray(np.matmul(x, y))


def softmax(args: Mapping[str, Any]) -> Array:
    x = _f32(args["x"])
    axis = int(args.get("axis", -1))
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True))


def sigmoid(args: Mapping[str, Any]) -> Array:
    # The tanh form never overflows, unlike 1 / (1 + exp(-x)).
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * _f32(args["x"]))))


def silu(args: Mapping[str, Any]) -> Array:
    """``x * sigmoid(x)``: Keras's swish (``tf.nn.silu``)."""
    x = _f32(args["x"])
    return np.asarray(x * sigmoid(args))


def split(args: Mapping[str, Any]) -> tuple[Array, ...]:
    """Even pieces (``num_splits``) or the given ``split_sizes`` along ``axis``.

    A kernel rather than ``value_inference`` because recurrent layers split
    their gates at every step of the loop.
    """
    x = np.asarray(args["x"])
    axis = int(args["axis"]) % x.ndim
    sizes = args.get("split_sizes")
    if sizes is None:
        return tuple(np.split(x, int(args["num_splits"]), axis=axis))
    bounds = np.cumsum(_ints(sizes))[:-1]
    return tuple(np.split(x, bounds, axis=axis))


def reshape(args: Mapping[str, Any]) -> Array:
    """MIL's reshape: -1 is inferred, 0 copies the input's dimension (iOS17)."""
    x = np.asarray(args["x"])
    shape = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(_ints(args["shape"]))]
    return x.reshape(shape)


def concat(args: Mapping[str, Any]) -> Array:
    values = [np.asarray(v) for v in args["values"]]
    axis = int(args["axis"])
    if any(v.ndim == 0 for v in values):  # scalars packed into a shape vector
        return np.concatenate([np.atleast_1d(v) for v in values])
    if bool(args.get("interleave", False)):
        axis = axis % values[0].ndim
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return np.asarray(stacked.reshape(shape))
    return np.concatenate(values, axis=axis)


def _reduce(reduction: Callable[..., Any]) -> Callable[[Mapping[str, Any]], Array]:
    """A MIL reduction: over ``axes`` (all when absent), keeping them if ``keep_dims``."""

    def kernel(args: Mapping[str, Any]) -> Array:
        axes = args.get("axes")
        return np.asarray(
            reduction(
                _f32(args["x"]),
                axis=None if axes is None else tuple(_ints(axes)),
                keepdims=bool(args.get("keep_dims", False)),
            )
        )

    return kernel


reduce_mean = _reduce(np.mean)
reduce_sum = _reduce(np.sum)
reduce_max = _reduce(np.max)


def cast(args: Mapping[str, Any]) -> Array:
    return np.asarray(args["x"]).astype(MIL_DTYPES[str(args["dtype"])])


def _unary(fn: Callable[[Array], Array]) -> Kernel:
    return lambda args: fn(_f32(args["x"]))


def _binary(fn: Callable[[Array, Array], Array]) -> Kernel:
    """Elementwise in the inputs' own dtype: NumPy rounds fp16 results the
    way an fp16 device does, and keeps int32 shape arithmetic exact."""
    return lambda args: fn(np.asarray(args["x"]), np.asarray(args["y"]))


KERNELS: dict[str, Kernel] = {
    "conv": conv,
    "conv_transpose": conv_transpose,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "batch_norm": batch_norm,
    "linear": linear,
    "matmul": matmul,
    "relu": _unary(lambda x: np.maximum(x, 0.0)),
    "relu6": _unary(lambda x: np.clip(x, 0.0, 6.0)),
    "clip": lambda a: np.clip(_f32(a["x"]), np.float32(a["alpha"]), np.float32(a["beta"])),
    "softmax": softmax,
    "tanh": _unary(np.tanh),
    "sigmoid": sigmoid,
    "silu": silu,
    "split": split,
    "reshape": reshape,
    "transpose": lambda a: np.transpose(np.asarray(a["x"]), _ints(a["perm"])),
    "concat": concat,
    "reduce_mean": reduce_mean,
    "reduce_sum": reduce_sum,
    "reduce_max": reduce_max,
    "cast": cast,
    "shape": lambda a: np.asarray(np.shape(a["x"]), dtype=np.int32),
    "identity": lambda a: np.asarray(a["x"]),
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _binary(np.true_divide),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "less": _binary(np.less),
    "less_equal": _binary(np.less_equal),
    "greater": _binary(np.greater),
    "greater_equal": _binary(np.greater_equal),
    "equal": _binary(np.equal),
    "not_equal": _binary(np.not_equal),
}
