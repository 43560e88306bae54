"""Seconds per round of Flower's simulation of fedge's reference rounds.

Runs in ``.bench-venv`` (see ``bench/setup_flower.sh``): Flower and its Ray
cannot be installed next to the pinned TFF stack. ``bench/flower_sim_bench.py``
writes the devices' data (fedge's own split, so every device holds the same
examples as in fedge's fleet) to an ``.npz`` file and starts this script on
it; it prints one JSON object.

The rounds are Flower's Message API as its simulation runs it
(``flwr.simulation.run_simulation`` on the Ray backend): a ``ServerApp``
running ``FedAvg`` with ``fraction_train`` picking ``--per-round`` of the
supernodes, a ``ClientApp`` per supernode training the reference CNN
(conv 16, conv 32, max-pool, dense 64, dense 10) in PyTorch on the CPU for
one local epoch, batch 16, SGD at lr 0.05, and the server evaluating every
new global model on the test split, as fedge's fleet does, so that a
round's seconds include aggregation and evaluation. There is no federated
evaluation on the clients. A round's seconds run from the end of one
global evaluation to the end of the next.

    .bench-venv/bin/python bench/flower_simulation.py DATA.npz --per-round 100 --rounds 4

The ``.npz`` holds ``x`` (every device's training images, 8x8x1, one after
the other), ``y``, ``offsets`` (device ``i`` holds ``offsets[i]:offsets[i+1]``),
``test_x`` and ``test_y``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import json
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

EPOCHS = 1
BATCH_SIZE = 16
LEARNING_RATE = 0.05
Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Settings:
    data: str
    devices: int
    per_round: int
    rounds: int
    actors: int
    seed: int


@dataclass
class Timings:
    """Filled by the ServerApp's thread: the end of each global evaluation
    (round 0 is the initial model's) and its accuracy."""

    started: float = 0.0
    evaluated_at: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    # Replies without an error that each round aggregated: Flower logs a
    # failed ClientApp and goes on, so a round of failures would look fast.
    updates: list[int] = field(default_factory=list)


@functools.cache
def device_data(path: str) -> dict[str, Array]:
    """The whole ``.npz`` in memory, once per process (each Ray actor's)."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def make_net() -> Any:
    """The reference CNN in PyTorch (logits; the loss applies the softmax)."""
    import torch  # type: ignore[import-not-found]

    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def as_tensors(x: Array, y: Array) -> tuple[Any, Any]:
    """NHWC float images and class ids as PyTorch's NCHW and int64 tensors."""
    import torch

    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
    return images, torch.from_numpy(y.astype(np.int64))


def train_locally(net: Any, x: Array, y: Array, seed: int) -> None:
    """One epoch of minibatch SGD on one device's examples."""
    import torch

    images, labels = as_tensors(x, y)
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss_fn(net(images[batch]), labels[batch]).backward()
            optimizer.step()


def client_app(settings: Settings) -> Any:
    """A ClientApp that trains on the examples of its supernode's partition."""
    import torch
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict  # type: ignore[import-not-found]
    from flwr.clientapp import ClientApp  # type: ignore[import-not-found]

    app = ClientApp()
    path, seed = settings.data, settings.seed

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        data = device_data(path)
        device = int(context.node_config["partition-id"])
        begin, end = (int(i) for i in data["offsets"][device : device + 2])
        net = make_net()
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        server_round = int(msg.content["config"]["server-round"])
        train_locally(net, data["x"][begin:end], data["y"][begin:end], seed + device + server_round)
        content = RecordDict(
            {
                "arrays": ArrayRecord(net.state_dict()),
                "metrics": MetricRecord({"num-examples": end - begin}),
            }
        )
        return Message(content=content, reply_to=msg)

    return app


def server_app(settings: Settings, timings: Timings) -> Any:
    """A ServerApp running FedAvg over ``per_round`` sampled supernodes, with
    the global model evaluated on the test split after every round."""
    import torch
    from flwr.app import ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp  # type: ignore[import-not-found]
    from flwr.serverapp.strategy import FedAvg  # type: ignore[import-not-found]

    app = ServerApp()
    data = device_data(settings.data)
    test_images, test_labels = as_tensors(data["test_x"], data["test_y"])

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        net = make_net()
        net.load_state_dict(arrays.to_torch_state_dict())
        net.eval()
        with torch.no_grad():
            logits = net(test_images)
        loss = float(torch.nn.functional.cross_entropy(logits, test_labels))
        accuracy = float((logits.argmax(1) == test_labels).float().mean())
        timings.evaluated_at.append(time.perf_counter())
        timings.accuracy.append(accuracy)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        torch.manual_seed(settings.seed)
        strategy = FedAvg(
            fraction_train=settings.per_round / settings.devices,
            fraction_evaluate=0.0,
            min_train_nodes=settings.per_round,
            min_available_nodes=settings.devices,
        )
        aggregate_train = strategy.aggregate_train

        def counted(server_round: int, replies: Any) -> Any:
            replies = list(replies)
            timings.updates.append(sum(not reply.has_error() for reply in replies))
            return aggregate_train(server_round, replies)

        strategy.aggregate_train = counted
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(make_net().state_dict()),
            num_rounds=settings.rounds,
            evaluate_fn=evaluate,
        )

    return app


def simulate(settings: Settings, object_store_mib: int) -> dict[str, Any]:
    import torch
    from flwr.simulation import run_simulation  # type: ignore[import-not-found]

    torch.set_num_threads(1)
    timings = Timings(started=time.perf_counter())
    run_simulation(
        server_app=server_app(settings, timings),
        client_app=client_app(settings),
        num_supernodes=settings.devices,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {
                "address": "local",  # a Ray of its own, never another bench's cluster
                "num_cpus": settings.actors,
                "object_store_memory": object_store_mib * 2**20,
            },
        },
    )
    total = time.perf_counter() - timings.started
    ends = timings.evaluated_at
    if len(ends) != settings.rounds + 1:
        raise RuntimeError(f"{len(ends) - 1} of {settings.rounds} rounds finished")
    if min(timings.updates) < settings.per_round:
        raise RuntimeError(f"updates per round {timings.updates}: some ClientApps failed")
    seconds = [b - a for a, b in itertools.pairwise(ends)]
    return {
        **asdict(settings),
        "framework": f"torch {torch.__version__}",
        "flwr": version("flwr"),
        "ray": version("ray"),
        "local_epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "round_seconds": seconds,
        "median_s": statistics.median(seconds[1:] or seconds),
        "setup_s": ends[0] - timings.started,
        "total_s": total,
        # The driver: the ServerApp, Flower's in-memory link state with a
        # node per client, Ray's driver and the pages of Ray's shared object
        # store it touched (up to --object-store-mib); not Ray's actors.
        "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "updates": timings.updates,
        "accuracy": timings.accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help=".npz of the devices' and the test examples")
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--actors", type=int, default=os.cpu_count() or 1, help="Ray CPUs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--object-store-mib", type=int, default=512)
    args = parser.parse_args()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    devices = len(device_data(str(args.data))["offsets"]) - 1
    settings = Settings(
        data=str(args.data.resolve()),
        devices=devices,
        per_round=min(args.per_round, devices),
        rounds=args.rounds,
        actors=args.actors,
        seed=args.seed,
    )
    print(json.dumps(simulate(settings, args.object_store_mib)))


if __name__ == "__main__":
    # Ray's workers unpickle the apps' functions by module name and cannot
    # import __main__: run them from this file imported under its own name
    # (its folder is on sys.path, which Flower passes on to the workers).
    importlib.import_module(Path(__file__).stem).main()
