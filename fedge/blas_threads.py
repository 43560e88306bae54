"""One BLAS thread per call in fedge's server processes.

NumPy's OpenBLAS runs a large dot product (an update's norm, the finite
check of a sum) on a pool of its own threads, which then spin
(``sched_yield``) waiting for the next call. In a server whose parallelism
is its request threads, that spinning takes the cores from them: measured
on a 2-core machine, a third of a 1,000-device fleet's CPU time per round
went to it. With one BLAS thread the products run in the calling thread.
"""

from __future__ import annotations


def single_blas_thread() -> None:
    """Limit the BLAS libraries NumPy loaded to one thread (process-wide)."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=1, user_api="blas")
