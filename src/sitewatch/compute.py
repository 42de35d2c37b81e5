"""Running independent tasks: the scheduler policy (setting ``scheduler``, env ``SITEWATCH_SCHEDULER``).

A service that has many independent pieces of work (the tiles of a search, the blocks of a similarity ranking)
hands them to :func:`runner` and gets their results back, in the order it gave the tasks, whatever order they
finished in; it merges them itself.  Where they run is the scheduler's choice:

* ``sync``: one after another in the calling thread (tests, debugging, profiles);
* ``threads`` (the default): a local thread pool of the service's ``workers`` threads;
* ``tcp://host:port``: the workers of a Dask cluster (``dask scheduler``, ``dask worker tcp://host:port``),
  through a :class:`distributed.Client` opened for the job and closed after it.  Each task may be tried
  :data:`RETRIES` more times when it raises, and a task lost with a worker (killed, out of memory) runs again
  on another one; the results are gathered as they complete, so progress keeps moving.

What a task may be: a module-level function (pickled by name) of small arguments, such as scene records, grids,
windows and parameters, never pixel arrays: the worker reads the imagery itself, so the scenes' paths or URLs
must be readable from every worker.  Its result is small too (candidate pixels, scores).  A task writes
nothing to the store: the caller writes the results, in its own transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from .errors import InvalidParameter, SchedulerError

__all__ = ["SYNC", "THREADS", "SCHEDULERS", "RETRIES", "CONNECT_TIMEOUT", "Runner", "check_scheduler", "runner"]

SYNC = "sync"
THREADS = "threads"
#: the local schedulers; any other is the address of a Dask scheduler, ``tcp://host:port``
SCHEDULERS = (SYNC, THREADS)
#: a task that raises is tried this many more times on a cluster (a task lost with its worker runs again anyway)
RETRIES = 2
#: seconds to reach a Dask scheduler before :class:`~sitewatch.errors.SchedulerError`
CONNECT_TIMEOUT = 5.0

_ADDRESS = re.compile(r"tcp://(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})/?")

T = TypeVar("T")
#: ``(index of the task in the order given, its result)``, called in the caller's thread as each task finishes
Done = Callable[[int, Any], None]


def check_scheduler(value: str) -> str:
    """``value`` as a scheduler setting (``sync``, ``threads``, or ``tcp://host:port``), stripped;
    :class:`~sitewatch.errors.InvalidParameter` otherwise."""
    v = str(value).strip()
    if v.lower() in SCHEDULERS:
        return v.lower()
    m = _ADDRESS.fullmatch(v)
    if m is not None and 0 < int(m["port"]) < 65536:
        return v.rstrip("/")
    raise InvalidParameter(
        f"scheduler must be 'sync', 'threads' or the address of a Dask scheduler as tcp://host:port "
        f"(for example tcp://10.0.0.5:8786), not {value!r}"
    )


class Runner(Protocol):
    """Runs independent tasks; ``slots``: how many run at once (to cut the work into enough tasks)."""

    slots: int

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], done: Done | None = None) -> list[T]:
        """``[fn(*a) for a in args]``, run by the scheduler; ``done`` is told of each result as it comes."""
        ...


class _Sync:
    slots = 1

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], done: Done | None = None) -> list[T]:
        out = []
        for i, a in enumerate(args):
            out.append(fn(*a))
            if done:
                done(i, out[-1])
        return out


class _Threads:
    def __init__(self, workers: int) -> None:
        self.slots = max(1, workers)

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], done: Done | None = None) -> list[T]:
        out: list[Any] = [None] * len(args)
        with ThreadPoolExecutor(max_workers=self.slots) as pool:
            futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    out[i] = fut.result()
                    if done:
                        done(i, out[i])
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return out


class _Cluster:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.slots = max(1, sum(client.nthreads().values()))

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], done: Done | None = None) -> list[T]:
        from distributed import as_completed as completed

        futures = [self.client.submit(fn, *a, pure=False, retries=RETRIES) for a in args]
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(args)
        try:
            for fut in completed(futures, loop=self.client.loop):
                i = index[fut.key]
                out[i] = fut.result()
                if done:
                    done(i, out[i])
        finally:
            self.client.cancel([f for f in futures if not f.done()])
        return out


def _connect(address: str) -> Any:
    """A :class:`distributed.Client` of the scheduler at ``address``; :class:`SchedulerError` when dask's
    distributed scheduler is not installed or the address cannot be reached in :data:`CONNECT_TIMEOUT`."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError(
            f"scheduler {address}: Dask's distributed scheduler is not installed (pip install 'dask[distributed]')"
        ) from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT:g} s ({exc}); start it "
            f"(`dask scheduler`, then `dask worker {address}`) or set SITEWATCH_SCHEDULER=threads"
        ) from None


@contextmanager
def runner(scheduler: str = THREADS, workers: int = 2) -> Iterator[Runner]:
    """The :class:`Runner` of ``scheduler`` (see the module); ``workers``: the threads of ``threads``.  A cluster's
    client is opened here and closed when the block ends."""
    s = check_scheduler(scheduler)
    if s == SYNC:
        yield _Sync()
    elif s == THREADS:
        yield _Threads(workers)
    else:
        client = _connect(s)
        try:
            yield _Cluster(client)
        finally:
            client.close()
