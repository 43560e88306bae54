"""How ``fedge convert`` looks in a terminal: a live row per target, then
a summary table (status, size, time, parity) and, under it, what the table
cannot say: the inputs parity ran on, int8's calibration data, the training
artifact's loss (or why there is none), and why a status is not ``pass``."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, Group
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from fedge.converters.bundle import BundleResult, TargetOutcome
from fedge.converters.model_card import describe_inputs
from fedge.converters.options import TRAIN_TARGET
from fedge.converters.targets.training_loss import describe as describe_loss

_STATUS_STYLE = {"pass": "green", "fail": "red", "unverified": "yellow"}


class ConvertProgress:
    """A spinner row per target; ``__call__(target, message)`` updates it."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[target]:<7}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._rows: dict[str, TaskID] = {}

    def __enter__(self) -> ConvertProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for row in self._rows.values():
            self._progress.update(row, total=1, completed=1)
        self._progress.stop()

    def __call__(self, target: str, message: str) -> None:
        if target in self._rows:
            self._progress.update(self._rows[target], description=message)
            return
        for row in self._rows.values():
            self._progress.update(row, total=1, completed=1)
        self._rows[target] = self._progress.add_task(message, total=None, target=target)


def summary_table(result: BundleResult) -> Group:
    """The table, then one line per note (see the module docstring)."""
    table = Table(
        title=f"bundle {result.manifest.name} v{result.manifest.version} -> {result.path}"
    )
    for column in ("target", "status", "size", "time", "parity", "max abs err", "top-1"):
        table.add_column(column, justify="right" if column in ("size", "time") else "left")
    parity = result.manifest.parity
    for outcome in result.outcomes:
        record = parity.get(outcome.target, {})
        status = record.get("status", "-")
        shipped = outcome.ok or _kept(result, outcome.target)
        table.add_row(
            outcome.target.replace("_", "-"),
            _export_status(result, outcome.target, outcome.ok),
            _size(_own_bytes(outcome) if shipped else None),
            f"{outcome.seconds:.1f} s",
            f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]",
            _num(record.get("max_abs_err")),
            _pct(record.get("top1_agreement")),
        )
    return Group(table, *[Text(line) for line in notes(result)])


def notes(result: BundleResult) -> list[str]:
    """What the table cannot say, one line each."""
    manifest = result.manifest
    lines = []
    inputs = next(
        (r["inputs"] for t, r in manifest.parity.items() if t != TRAIN_TARGET and r.get("inputs")),
        None,
    )
    if inputs:
        lines.append(f"parity inputs: {describe_inputs(inputs)}")
    tflite = manifest.artifacts.get("tflite", {})
    if tflite.get("calibration"):
        lines.append(f"int8 calibration: {describe_inputs(tflite['calibration'])}")
    if tflite.get("training"):
        lines.append(f"train.tflite: {describe_loss(tflite['training'])}")
    elif tflite.get("training_skipped"):
        lines.append(f"no training artifact: {tflite['training_skipped']}")
    for target, record in manifest.parity.items():  # failures: the CLI's error lines
        if record.get("status") == "unverified":
            lines.append(f"{target}: parity unverified: {record.get('reason', '')}")
    for target, record in manifest.artifacts.items():  # each target's own limits
        lines.extend(f"{target}: {note}" for note in record.get("notes") or [])
    return lines


def _export_status(result: BundleResult, target: str, ok: bool) -> str:
    if ok:
        return "exported"
    if _kept(result, target):
        return "[red]kept, failed[/red]"
    return "[red]failed[/red]"


def _kept(result: BundleResult, target: str) -> bool:
    tflite = result.manifest.artifacts.get("tflite", {})
    if target == TRAIN_TARGET:
        return bool(tflite.get("training")) and tflite["training"].get("verified") is False
    return result.manifest.artifacts.get(target, {}).get("verified") is False


def _own_bytes(outcome: TargetOutcome) -> int | None:
    """What the target's runtime loads: the TFLite model without
    ``train.tflite``, which has a row of its own."""
    if outcome.artifact is None:
        return None
    training = outcome.artifact.options.get("training") if outcome.target == "tflite" else None
    skip = training.get("path") if isinstance(training, dict) else None
    return sum(f.bytes for f in outcome.artifact.files if f.path != skip)


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / 2**20:.2f} MiB"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
