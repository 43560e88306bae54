"""``fedge setup-node``: the npm packages TF.js parity runs on."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("setup-node")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    help="npm prefix to install into (gets node_modules/) "
    "[default: a per-user directory, where fedge looks].",
)
def setup_node(prefix: Path | None) -> None:
    """Install the npm packages for TF.js parity (@tensorflow/tfjs) with npm ci.

    They come from the package-lock.json packaged with fedge; a git checkout's
    web/node_modules (scripts/setup.sh) or $FEDGE_NODE_MODULES also works."""
    from fedge import web
    from fedge.web.npm import install

    target = web.user_prefix() if prefix is None else prefix
    try:
        modules = install(target, say=lambda line: click.echo(f"==> {line}", err=True))
    except web.NodePackagesError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(modules))
