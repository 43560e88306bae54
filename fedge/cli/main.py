"""The ``fedge`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import logging
import os
import warnings

import click

from fedge import __version__

# Libraries whose warnings are notices about themselves (versions they were
# tested with, macOS-only parts, Keras's uncompiled metrics), not about the
# user's model; their errors still show.
_NOISY_LOGGERS = ("tensorflow", "absl", "coremltools")


def _library_notice(record: logging.LogRecord) -> bool:
    """Drop TF Decision Forests' version notice (logged on the root logger
    when tensorflowjs imports it); keep every other record."""
    return record.levelno >= logging.ERROR or "tensorflow_decision_forests" not in record.pathname


def _quiet_tensorflow() -> None:
    """Keep the libraries' import-time notices off the user's screen.

    Runs before anything imports TensorFlow, which reads its C++ log level
    once; a level the user set in the environment wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # coremltools draws its own tqdm bars, which tear through fedge's display.
    os.environ.setdefault("TQDM_DISABLE", "1")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().addFilter(_library_notice)  # the same object: added once
    # tensorflow_hub (imported by tensorflowjs) imports pkg_resources.
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedge")
def main() -> None:
    """fedge: one Keras model on phones, browsers and Apple devices,
    improved by federated rounds."""
    _quiet_tensorflow()


def _register_commands() -> None:
    """One module per command (or family of commands); the group only lists them."""
    from fedge.cli.convert import convert
    from fedge.cli.demo import demo
    from fedge.cli.predict import predict
    from fedge.cli.pull import pull
    from fedge.cli.release import COMMANDS as RELEASE_COMMANDS
    from fedge.cli.serve import serve
    from fedge.cli.setup_node import setup_node
    from fedge.cli.simulate import simulate
    from fedge.cli.train import train

    for command in (
        train,
        convert,
        predict,
        pull,
        serve,
        setup_node,
        demo,
        simulate,
        *RELEASE_COMMANDS,
    ):
        main.add_command(command)


_register_commands()
