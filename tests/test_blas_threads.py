"""The server's processes run BLAS in the calling thread (no spinning pool)."""

from __future__ import annotations

from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

from fedge.blas_threads import single_blas_thread


def test_blas_runs_on_one_thread_once_limited() -> None:
    import numpy  # noqa: F401 - loads the BLAS that NumPy uses

    single_blas_thread()

    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
