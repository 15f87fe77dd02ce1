"""Dask clusters for sweeps and studies: a local one bound to 127.0.0.1, or an existing scheduler.

Every worker runs one task at a time with one Rust thread and one BLAS thread, so ``K`` workers use ``K``
cores without oversubscription, and a task computes the same numbers wherever it runs (the Rust kernels
are bit-identical for any thread count; one BLAS thread removes the only other source of variation).
Local workers are started by their nanny with ``spawn`` (dask's default), so no rayon pool is inherited
across a ``fork``.

``dask.distributed`` is the optional extra ``ntkgan[dask]``; it is imported when a cluster is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator

from ntkgan._validation import check_int

__all__ = [
    "CONNECT_TIMEOUT",
    "MALLOC_CONFIG_KEY",
    "SINGLE_THREAD_ENV",
    "check_scheduler_address",
    "count_workers",
    "open_client",
    "single_threaded",
]

#: environment of a worker process: one thread for Rust (rayon), OpenBLAS/MKL/OpenMP and XLA
SINGLE_THREAD_ENV = {
    "RAYON_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}

#: dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers (to hand memory back to the OS early);
#: setting any glibc malloc variable also turns off glibc's adaptive mmap threshold, so every array above
#: 128 KiB is then mapped and unmapped afresh, and a finite-width (``ipm_reset``) run spends about twice the
#: system time of the same run outside dask (4.1 s against 2.1 s for 20 steps), and a run leaves the malloc
#: settings alone when such a variable is set (see :mod:`ntkgan._malloc`).  Local workers get no such
#: variable; the config key to clear on other clusters:
MALLOC_CONFIG_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"

#: seconds to wait for an existing scheduler before giving up
CONNECT_TIMEOUT = 10.0

#: comm protocols a scheduler address may name (``host:port`` alone means ``tcp``)
_PROTOCOLS = ("tcp", "tls", "ucx", "ws", "wss")
_ADDRESS = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s\[\]]+)"
                      r":(?P<port>[0-9]{1,5})/?$")


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the body with one Rust thread and one BLAS thread (restored afterwards).

    Used around every sweep task, in a worker or in the calling process, so results do not depend on where
    a task ran.
    """
    from threadpoolctl import threadpool_limits

    from ntkgan.threads import get_num_threads, set_num_threads

    before = get_num_threads()
    set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        set_num_threads(before)


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("sweeps on a cluster need dask.distributed: pip install 'ntkgan[dask]'") from exc
    return distributed


def check_scheduler_address(address) -> str:
    """``address`` stripped, if it reads ``[PROTOCOL://]HOST:PORT`` (PROTOCOL one of tcp, tls, ucx,
    ws, wss; PORT 1-65535); else ``ValueError`` saying what is expected.

    Only the form is checked here; :func:`open_client` then connects, with a timeout.
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"scheduler must be an address such as 'tcp://host:8786', got {address!r}")
    text = address.strip()
    if text.lower().startswith(("http://", "https://")):
        raise ValueError(f"scheduler {text!r} looks like the dashboard's URL; give the scheduler's address, "
                         "e.g. 'tcp://host:8786' (print(cluster.scheduler_address))")
    m = _ADDRESS.match(text)
    scheme = m.group("scheme") if m else None
    bad_scheme = scheme is not None and scheme not in _PROTOCOLS
    if m is None or bad_scheme or not 1 <= int(m.group("port")) <= 65535:
        raise ValueError(f"scheduler must read [PROTOCOL://]HOST:PORT with PROTOCOL one of "
                         f"{', '.join(_PROTOCOLS)} and PORT in 1-65535, e.g. 'tcp://10.0.0.5:8786'; "
                         f"got {text!r}")
    return text


def count_workers(client) -> int:
    """Number of workers connected to ``client``'s scheduler now."""
    return len(client.nthreads())


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None, *,
                quiet: bool = True, connect_timeout: float = CONNECT_TIMEOUT) -> Iterator[object]:
    """A ``distributed.Client``: to ``scheduler`` (``"tcp://host:port"``), else on a new ``LocalCluster``.

    The local cluster has ``workers`` processes (default: the number of cores), one thread each, the
    single-thread environment :data:`SINGLE_THREAD_ENV`, glibc's default malloc settings
    (:data:`MALLOC_CONFIG_KEY`), and its scheduler, dashboard, nannies and workers bound to 127.0.0.1 only.  Both are closed when the block exits (an external scheduler is left
    running).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (e.g. one started by ``dask-jobqueue``); ``workers`` must then be None.
    workers : int, optional
        Number of local worker processes (>= 1).
    quiet : bool, default=True
        Silence the cluster's informational logging.
    connect_timeout : float, default=10
        Seconds to wait for ``scheduler``.

    Raises
    ------
    ValueError
        Both ``scheduler`` and ``workers`` given, ``workers`` < 1, a malformed address
        (:func:`check_scheduler_address`), or no scheduler answering there within ``connect_timeout``.
    """
    if scheduler is not None and workers is not None:
        raise ValueError("give either scheduler (an existing cluster) or workers (a local one), not both")
    workers = None if workers is None else check_int(workers, "workers")
    if scheduler is not None:
        scheduler = check_scheduler_address(scheduler)
    distributed = _import_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=connect_timeout)
        except OSError as exc:  # TimeoutError, connection refused, unknown host
            raise ValueError(f"could not connect to a Dask scheduler at {scheduler!r} within "
                             f"{connect_timeout:g} s ({type(exc).__name__}: {exc})") from exc
        with client:
            yield client
        return
    import dask

    n = workers if workers is not None else (os.cpu_count() or 1)
    kwargs = {"silence_logs": logging.ERROR} if quiet else {}
    with contextlib.ExitStack() as stack:
        with dask.config.set({MALLOC_CONFIG_KEY: None}):  # read once, when the nannies are made
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                env=dict(SINGLE_THREAD_ENV),
                **kwargs,
            ))
        yield stack.enter_context(distributed.Client(cluster))
