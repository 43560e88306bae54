"""``fedge push``, ``rollout``, ``promote``, ``rollback``, ``releases``: a
server's releases from the command line, over its HTTP API.

``fedge push`` takes a bundle directory, or a plain Keras model (.keras,
.h5 or a SavedModel directory) that it converts first with the same display
as ``fedge convert``; it verifies the bundle, sends it as a tar
(:mod:`fedge.bundle.tar`) and prints the release the server made. A
refusal exits 1 with the server's message and code. The admin token comes
from ``--admin-token`` (``--token``, its old spelling, still works) or
``FEDGE_ADMIN_TOKEN`` (the variable ``fedge serve`` reads too).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from fedge.bundle.manifest import MANIFEST_FILE
from fedge.cli import options
from fedge.errors import ConfigError, FedgeError
from fedge.wire.canary import describe, describe_parity, parity_lines

_SERVER: options.Decorator = options.server(
    required=True, help="The server's URL, e.g. http://host:8750."
)
_TIMEOUT_S = (10, 600)  # connect, read: a large bundle takes a while to upload


def _admin(token: str | None) -> dict[str, str]:
    if not token:
        raise click.UsageError(
            f"an admin token is needed: --admin-token or {options.ADMIN_TOKEN_VARIABLE}"
        )
    return {"Authorization": f"Bearer {token}"}


def _call(method: str, server: str, path: str, **kwargs: Any) -> Any:
    """The server's JSON answer; an error status exits 1 with its message and code."""
    import requests

    try:
        reply = requests.request(method, server.rstrip("/") + path, timeout=_TIMEOUT_S, **kwargs)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {server}: {exc}") from exc
    try:
        body = reply.json()
    except ValueError:
        body = {"code": "error", "message": reply.text[:300]}
    if reply.status_code >= 400:
        raise click.ClickException(
            f"{body.get('message', '')} ({body.get('code', 'error')}, HTTP {reply.status_code})"
        )
    return body


@click.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@_SERVER
@options.admin_token()
@click.option(
    "--rollout",
    type=click.FloatRange(0, 100),
    default=10.0,
    show_default=True,
    help="Percent of devices that get the new release first (the canary slice); "
    "the first release of a server goes to every device.",
)
@click.option("--notes", default="", help="What changed, for the release list.")
@click.option(
    "--force",
    "force_reason",
    metavar="REASON",
    help="Release a bundle whose parity checks failed, saying why (recorded).",
)
@options.by()
@options.targets(help="Targets to convert a plain Keras model to (ignored for a bundle).")
def push(
    source: Path,
    server: str,
    admin_token: str | None,
    rollout: float,
    notes: str,
    force_reason: str | None,
    by: str | None,
    targets: tuple[str, ...],
) -> None:
    """Publish SOURCE (a bundle directory, or a Keras model converted first) as a new release."""
    headers = {**_admin(admin_token), "Content-Type": "application/x-tar"}
    params = {"rollout": f"{rollout:g}", "notes": notes or None, "force": force_reason, "by": by}
    with tempfile.TemporaryDirectory(prefix="fedge-push-") as work:
        bundle = source if (source / MANIFEST_FILE).is_file() else _convert(source, targets, work)
        with tempfile.TemporaryFile(dir=work) as archive:
            bundle_id = _pack(bundle, archive)
            click.echo(f"uploading bundle {bundle_id} to {server}", err=True)
            release = _call(
                "POST", server, "/v1/releases", data=archive, headers=headers, params=params
            )
    share = f" for {release['percent']:g}% of devices" if release["state"] == "canary" else ""
    click.echo(f"release {release['version']} ({release['bundle_id']}): {release['state']}{share}")


def _convert(model: Path, targets: tuple[str, ...], work: str) -> Path:
    from fedge.cli.console import make_console
    from fedge.converters.bundle import convert
    from fedge.converters.cli_view import ConvertProgress
    from fedge.converters.options import ConvertOptions

    chosen = ConvertOptions(targets=targets)
    out = Path(work) / "bundle"
    try:
        with ConvertProgress(make_console(stderr=True)) as progress:
            result = convert(model, out, chosen, progress=progress)
    except ConfigError as exc:
        raise click.UsageError(f"{exc}\nnothing was pushed") from exc
    except FedgeError as exc:
        raise click.ClickException(f"{exc}\nnothing was pushed") from exc
    for outcome in result.failed:
        click.echo(f"warning: {outcome.error}", err=True)
    return out


def _pack(bundle: Path, archive: Any) -> str:
    from fedge.bundle.tar import pack_bundle

    try:
        verified = pack_bundle(bundle, archive)
    except FedgeError as exc:
        raise click.ClickException(f"{bundle} does not verify: {exc}\nnothing was pushed") from exc
    archive.seek(0)
    return verified.bundle_id


@click.command()
@click.argument("percent", type=click.FloatRange(0, 100))
@_SERVER
@options.why(required=True)
@options.admin_token()
@options.by()
def rollout(percent: float, server: str, why: str, admin_token: str | None, by: str | None) -> None:
    """Give the candidate release to PERCENT of devices (raising it only adds devices)."""
    body = {"percent": percent, "why": why, **({"by": by} if by else {})}
    answer = _call("POST", server, "/v1/admin/rollout", json=body, headers=_admin(admin_token))
    state = answer["rollout"]
    click.echo(
        f"release {state['candidate']} reaches {state['percent']:g}% of devices; "
        f"release {state['live']} the rest"
    )


@click.command()
@click.argument("version", type=click.IntRange(min=1))
@_SERVER
@options.why(required=False)
@options.admin_token()
@options.by()
def promote(
    version: int, server: str, why: str | None, admin_token: str | None, by: str | None
) -> None:
    """Make the candidate release VERSION live for every device."""
    body = {k: v for k, v in {"why": why, "by": by}.items() if v}
    path = f"/v1/admin/releases/{version}/promote"
    answer = _call("POST", server, path, json=body, headers=_admin(admin_token))
    click.echo(f"release {answer['rollout']['live']} is live")


@click.command()
@_SERVER
@options.why(required=True)
@click.option(
    "--to",
    "version",
    type=click.IntRange(min=1),
    help="Release to go back to [default: the live release before this one].",
)
@options.admin_token()
@options.by()
def rollback(
    server: str, why: str, version: int | None, admin_token: str | None, by: str | None
) -> None:
    """Make an earlier release live again; the current one and any candidate are dropped."""
    body = {k: v for k, v in {"why": why, "version": version, "by": by}.items() if v}
    answer = _call("POST", server, "/v1/admin/rollback", json=body, headers=_admin(admin_token))
    click.echo(
        f"release {answer['rollout']['live']} is live (rolled back from release "
        f"{answer['change']['details'].get('from')})"
    )


@click.command()
@_SERVER
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def releases(server: str, limit: int) -> None:
    """List a server's releases, newest first."""
    from rich.table import Table

    from fedge.cli.console import make_console
    from fedge.wire.releases import ReleaseRecord

    answer = _call("GET", server, "/v1/releases", params={"limit": limit})
    table = Table(
        "version",
        "state",
        "percent",
        "source",
        "created",
        "by",
        "bundle",
        "notes",
        "canary",
        "parity",
    )
    for raw in answer["releases"]:
        record = ReleaseRecord.from_json(raw)
        created = datetime.fromtimestamp(record.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        percent = f"{record.percent:g}" if record.state == "canary" else ""
        table.add_row(
            str(record.version),
            record.state,
            percent,
            record.source,
            created,
            record.created_by,
            (record.bundle_id or "")[:12],
            record.notes,
            *_canary_cells(server, record.version, record.state),
        )
    make_console().print(table)


def _canary_cells(server: str, version: int, state: str) -> tuple[str, str]:
    """The canary's evidence for a release that was a candidate, and its
    parity per runtime ("" for the rest)."""
    if state in ("building", "failed"):
        return "", ""
    shown = _call("GET", server, f"/v1/releases/{version}")
    canary, parity = shown.get("canary"), shown.get("parity")
    return (describe(canary) if canary else ""), (describe_parity(parity) if parity else "")


@click.command()
@_SERVER
@click.argument("version", type=click.IntRange(1, 2**62))
def release(server: str, version: int) -> None:
    """Show one release and the evidence of its canary."""
    shown = _call("GET", server, f"/v1/releases/{version}")
    share = f" for {shown['percent']:g}% of devices" if shown["state"] == "canary" else ""
    click.echo(f"release {version} ({shown['bundle_id']}): {shown['state']}{share}")
    canary = shown.get("canary")
    click.echo(f"canary: {describe(canary)}")
    if canary and canary.get("statistic") is not None:
        _statistic_lines(canary)
    for line in parity_lines(shown.get("parity")):
        click.echo(line)


def _statistic_lines(canary: dict[str, Any]) -> None:
    for side, what in (("promote", "not worse by the margin"), ("rollback", "worse than live")):
        click.echo(
            f"  {side}: e-value {canary['statistic'][side]:.3g} against threshold "
            f"{canary['threshold'][side]:.3g} ({what})"
        )
    click.echo(
        f"  margin {canary['margin']:g}, alpha {canary['alpha']:g}, beta {canary['beta']:g}, "
        f"differences clipped to +-{canary['bound']:g}, at least {canary['min_reports']} devices"
    )


COMMANDS = (push, rollout, promote, rollback, releases, release)
