"""Evaluate a Core ML ML program in NumPy, so Core ML parity can be checked on Linux.

Core ML predicts only on macOS, but coremltools loads a saved
``.mlpackage`` back into its MIL program anywhere. :class:`MilEvaluator`
walks that program's ops in order and computes every value:

==========================  ==================================================
op                          computed by
==========================  ==================================================
``const``                   the value stored in the package
``conv``, pools, ...        our kernels in :mod:`mil_numpy_ops` (tested
                            against TensorFlow)
``while_loop``, ``list_*``  interpreted here: what a Keras GRU or LSTM becomes
anything else               the op's own ``value_inference`` (coremltools'
                            NumPy reference), by rebuilding the op on
                            constant inputs
none of these               :class:`UnsupportedOpError`, raised when the
                            program is loaded: parity is then ``unverified``
==========================  ==================================================

Every result is stored in the dtype its output var declares, so an fp16
program is rounded to fp16 after each op, and ``cast`` ops change
precision exactly where the program does: errors are those of a device
computing in fp16 (with wider accumulation inside an op). Floating point
exceptions are not raised: as on a device, they become inf or NaN in the
outputs, which parity reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.converters.errors import UnsupportedOpError
from fedge.converters.targets.mil_numpy_ops import KERNELS

Array = npt.NDArray[Any]
# A while_loop that runs this often is taken to be stuck.
MAX_LOOP_ITERATIONS = 1_000_000


@dataclass(frozen=True)
class MilList:
    """The value of a MIL list var: elements by index, ``None`` if unwritten.

    Lists are values in MIL (SSA): a write makes a new list.
    """

    items: tuple[Array | None, ...]
    dynamic: bool

    def with_items(self, indices: Sequence[int], values: Sequence[Array]) -> MilList:
        items = list(self.items)
        for index, value in zip(indices, values, strict=True):
            if index >= len(items) and self.dynamic:
                items.extend([None] * (index + 1 - len(items)))
            items[index] = value
        return MilList(tuple(items), self.dynamic)

    def item(self, index: int, op: Any) -> Array:
        value = self.items[index] if -len(self.items) <= index < len(self.items) else None
        if value is None:
            raise UnsupportedOpError(op.op_type, f"{op.name} (element {index} was never written)")
        return value


def load_program(mlpackage: Path) -> Any:
    """The MIL program saved in an ``.mlpackage``, weights included."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(mlpackage), skip_model_load=True)
    spec = model.get_spec()
    _reserve_symbol_names(spec.SerializeToString())
    return load(spec, spec.specificationVersion, model.weights_dir)


def _reserve_symbol_names(serialized_spec: bytes) -> None:
    """Work around coremltools 9 reusing shape-symbol names across loads.

    ``make_list`` ops keep their symbolic element shapes by name (``is192``)
    and loading registers those names process-wide without advancing the
    counter that numbers new symbols, so a later load or op in the same
    process can fail with "Symbol `is192` is used already". Moving the
    counter past every such name, saved or registered, avoids that.
    """
    from coremltools.converters.mil.mil import program as mil_program

    taken = [int(n) for n in re.findall(rb"is(\d+)", serialized_spec)]
    taken += [
        int(name[2:])
        for name in list(mil_program.k_used_symbols)
        if name.startswith("is") and name[2:].isdigit()
    ]
    counter = max([mil_program.k_num_internal_syms, *(n + 1 for n in taken)])
    mil_program.k_num_internal_syms = counter


def unsupported_ops(block: Any) -> list[Any]:
    """Ops in ``block`` (and nested blocks) that this evaluator cannot compute."""
    from coremltools.converters.mil.mil.operation import Operation

    found = []
    for op in block.operations:
        op_type = op.op_type
        known = op_type == "const" or op_type in KERNELS or op_type in _LIST_OPS
        if op_type == "while_loop":
            known = True
        elif not known and not op.blocks:
            known = type(op).value_inference is not Operation.value_inference
        if not known:
            found.append(op)
        for inner in op.blocks:
            found.extend(unsupported_ops(inner))
    return found


class MilEvaluator:
    """Runs one function of a MIL program (``main`` by default) on NumPy inputs.

    Raises :class:`UnsupportedOpError` on construction when any op cannot
    be computed, so a caller learns it before running samples.
    """

    def __init__(self, program: Any, function: str = "main") -> None:
        self._function = program.functions[function]
        missing = unsupported_ops(self._function)
        if missing:
            raise UnsupportedOpError(missing[0].op_type, missing[0].name)

    @property
    def input_names(self) -> list[str]:
        return list(self._function.inputs)

    @property
    def output_names(self) -> list[str]:
        return [var.name for var in self._function.outputs]

    def run(self, feeds: Mapping[str, Array]) -> dict[str, Array]:
        """Outputs by name for one batch; inputs are cast to the declared dtypes."""
        absent = [name for name in self.input_names if name not in feeds]
        if absent:
            raise ValueError(f"missing inputs {absent}; the program takes {self.input_names}")
        env: dict[Any, Any] = {
            var: np.asarray(feeds[name]).astype(_np_dtype(var))
            for name, var in self._function.inputs.items()
        }
        with np.errstate(all="ignore"):
            values = self._run_block(self._function, env, ())
        return dict(zip(self.output_names, values, strict=True))

    def _run_block(self, block: Any, env: dict[Any, Any], inputs: Sequence[Any]) -> list[Any]:
        for var, value in zip(block.inputs if inputs else (), inputs, strict=True):
            env[var] = value
        for op in block.operations:
            for var, value in zip(op.outputs, self._run_op(op, env), strict=True):
                env[var] = _store(var, value)
        return [_resolve(var, env) for var in block.outputs]

    def _run_op(self, op: Any, env: dict[Any, Any]) -> tuple[Any, ...]:
        if op.op_type == "const":
            return (op.outputs[0].val,)
        args = {name: _resolve(var, env) for name, var in op.inputs.items()}
        if op.op_type == "while_loop":
            return self._while_loop(op, args["loop_vars"], env)
        if op.op_type in _LIST_OPS:
            result = _LIST_OPS[op.op_type](op, args)
        elif op.op_type in KERNELS:
            result = KERNELS[op.op_type](args)
        else:
            result = self._value_inference(op, args)
        return result if isinstance(result, tuple) else (result,)

    def _while_loop(
        self, op: Any, loop_vars: tuple[Any, ...], env: dict[Any, Any]
    ) -> tuple[Any, ...]:
        cond, body = op.blocks
        values = tuple(loop_vars)
        for _ in range(MAX_LOOP_ITERATIONS):
            if not bool(self._run_block(cond, env, values)[0]):
                return values
            values = tuple(self._run_block(body, env, values))
        raise UnsupportedOpError(op.op_type, f"{op.name} (more than {MAX_LOOP_ITERATIONS} steps)")

    def _value_inference(self, op: Any, args: Mapping[str, Any]) -> tuple[Any, ...]:
        """Rebuild ``op`` on constant inputs; the builder runs its value_inference."""
        from coremltools.converters.mil.mil import Builder as mb
        from coremltools.converters.mil.mil import Function

        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
        try:
            with Function({}, opset_version=self._function.opset_version):
                built = getattr(mb, op.op_type)(**kwargs)
        except Exception as exc:  # coremltools raises many types for bad inputs
            raise UnsupportedOpError(op.op_type, f"{op.name} ({exc})") from exc
        outputs = built if isinstance(built, (tuple, list)) else (built,)
        values = tuple(var.val for var in outputs)
        if any(value is None for value in values):
            raise UnsupportedOpError(op.op_type, f"{op.name} (no value inferred)")
        return values


def _resolve(var: Any, env: Mapping[Any, Any]) -> Any:
    """The value of an op input: computed, constant, or a tuple of those."""
    if isinstance(var, (tuple, list)):
        return tuple(_resolve(v, env) for v in var)
    if var in env:
        return env[var]
    if var.val is not None:
        return var.val
    raise KeyError(f"MIL var {var.name!r} used before it was computed")


def _np_dtype(var: Any) -> np.dtype[Any]:
    from coremltools.converters.mil.mil import types

    return np.dtype(types.nptype_from_builtin(var.dtype))


def _store(var: Any, value: Any) -> Any:
    """A value in the dtype its var declares (lists and strings as they are)."""
    if isinstance(value, (MilList, str)):
        return value
    from coremltools.converters.mil.mil import types

    if types.is_tensor(var.sym_type):
        return np.asarray(value).astype(_np_dtype(var), copy=False)
    if types.is_scalar(var.sym_type):  # a NumPy scalar: coremltools' builder wants one
        return np.asarray(value).astype(_np_dtype(var))[()]
    return value


# --- lists: how TensorFlow's TensorArrays (recurrent layers) reach MIL -----


def _make_list(op: Any, args: Mapping[str, Any]) -> MilList:
    length = int(args.get("init_length", 1))
    return MilList((None,) * length, bool(args.get("dynamic_length", True)))


def _list_write(op: Any, args: Mapping[str, Any]) -> MilList:
    ls: MilList = args["ls"]
    return ls.with_items([int(args["index"])], [np.asarray(args["value"])])


def _list_scatter(op: Any, args: Mapping[str, Any]) -> MilList:
    ls: MilList = args["ls"]
    value = np.asarray(args["value"])
    indices = [int(i) for i in np.asarray(args["indices"]).reshape(-1)]
    return ls.with_items(indices, list(value))


def _list_gather(op: Any, args: Mapping[str, Any]) -> Array:
    ls: MilList = args["ls"]
    indices = [int(i) for i in np.asarray(args["indices"]).reshape(-1)]
    return np.stack([ls.item(i, op) for i in indices])


_LIST_OPS: dict[str, Any] = {
    "make_list": _make_list,
    "list_write": _list_write,
    "list_scatter": _list_scatter,
    "list_gather": _list_gather,
    "list_read": lambda op, args: args["ls"].item(int(args["index"]), op),
    "list_length": lambda op, args: np.int32(len(args["ls"].items)),
}
