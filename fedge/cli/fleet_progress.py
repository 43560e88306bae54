"""A fleet run with a live progress bar (``fedge simulate``, ``fedge demo``).

The bar goes to stderr: one step per round, with the round's state, its
metrics, how many updates it took and how long; between rounds it shows
what the fleet is doing (building the model, releases, canaries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedge.cli.console import make_console

if TYPE_CHECKING:
    from fedge.client_sim.fleet.config import FleetConfig
    from fedge.client_sim.report.fleet_report import FleetReport


def run_with_progress(config: FleetConfig) -> FleetReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from fedge.client_sim.fleet.run import run_fleet
    from fedge.client_sim.report.fleet_report import RoundReport

    bar = Progress(
        TextColumn("[bold]rounds"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=make_console(stderr=True),
    )
    task = bar.add_task("rounds", total=config.rounds, status="preparing")

    def on_round(report: RoundReport) -> None:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in report.metrics.items())
        bar.update(
            task,
            advance=1,
            status=(
                f"round {report.round_id} {report.state}: {shown}, "
                f"{report.participants} updates, {report.seconds:.1f} s"
            ),
        )

    def say(message: str) -> None:
        # A warning stays on screen; progress notes only replace the status.
        if message.startswith("warning: "):
            bar.console.print(message, markup=False)
        else:
            bar.update(task, status=message)

    with bar:
        return run_fleet(config, progress=on_round, say=say)
