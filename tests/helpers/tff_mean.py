"""Runs one TFF computation through fedge's runtime helper.

Prints the worker's pid and the result; with ``--hold`` it then sleeps
inside the context so a test can kill this process with SIGKILL.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import tensorflow_federated as tff

from fedge.client_sim.tff.runtime import tff_execution_context


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def federated_mean(values: object) -> object:
    return tff.federated_mean(values)


def main() -> None:
    with tff_execution_context() as worker:
        print(f"worker-pid {worker.pid}", flush=True)
        print(f"mean {federated_mean([1.0, 2.0, 6.0])}", flush=True)
        if "--hold" in sys.argv:
            time.sleep(600)


if __name__ == "__main__":
    main()
