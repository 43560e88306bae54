"""How ``fedge convert`` looks in a terminal: a live row per target, then
a summary table (status, size, time, parity)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedge.converters.bundle import BundleResult

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


def summary_table(result: BundleResult) -> Table:
    table = Table(
        title=f"bundle {result.manifest.name} v{result.manifest.version} -> {result.path}"
    )
    for column in ("target", "status", "size", "time", "parity", "max abs err", "top-1"):
        table.add_column(column, justify="right" if column in ("size", "time") else "left")
    parity = result.manifest.parity
    for outcome in result.outcomes:
        record = parity.get(outcome.target, {})
        status = record.get("status", "-")
        size = outcome.artifact.total_bytes if outcome.artifact and outcome.ok else None
        table.add_row(
            outcome.target,
            "exported" if outcome.ok else "[red]failed[/red]",
            _size(size),
            f"{outcome.seconds:.1f} s",
            f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]",
            _num(record.get("max_abs_err")),
            _pct(record.get("top1_agreement")),
        )
    if "tflite_train" in parity:
        record = parity["tflite_train"]
        style = _STATUS_STYLE.get(record["status"], "white")
        table.add_row(
            "tflite-train",
            "exported",
            "",
            "",
            f"[{style}]{record['status']}[/]",
            _num(record.get("max_abs_err")),
            "",
        )
    return table


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / 2**20:.2f} MiB"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
