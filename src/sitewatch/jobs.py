"""Background jobs: work asked for over the API that outlasts the request (a detection), run by a small pool of
threads in the server process, its state kept in the store (``queued`` -> ``running`` -> ``done`` or ``failed``).

A job keeps running when the client that asked for it disconnects; its outcome is read back by id.  Jobs a
previous server process left queued or running (it stopped) are marked failed when a :class:`JobRunner`
starts, saying so.  So one API server serves a store for now: a second one starting would mark the first's
running jobs failed (jobs need an owner before several servers share a store, #14).
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from .constants import DEFAULT_METHOD
from .errors import SitewatchError
from .store import Store
from .store.records import Job

__all__ = ["JobRunner", "Job"]

log = logging.getLogger("sitewatch.jobs")


def _now() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """Runs jobs on ``workers`` threads over ``store``."""

    def __init__(self, store: Store, workers: int = 1) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sitewatch-job")
        self.futures: dict[int, Future[None]] = {}
        with store.transaction() as tx:
            for job in tx.jobs.unfinished():
                tx.jobs.set_state(job.id, "failed", _now(), error="the server stopped before the job finished")

    def submit_detect(self, site: str, *, by: str, method: str = DEFAULT_METHOD, engine: str | None = None) -> Job:
        """Queue a full detection of ``site`` (the site must exist; the method is checked when it runs)."""
        with self.store.transaction() as tx:
            name = tx.sites.get(site).name
            job = tx.jobs.add("detect", name, {"method": method, "engine": engine}, by, _now())
            tx.audit.record(by, "site.detect", name, {"job_id": job.id, "method": method, "engine": engine}, _now())
        self.futures[job.id] = self._pool.submit(self._run_detect, job.id, name, method, engine)
        return job

    def get(self, job_id: int) -> Job:
        with self.store.transaction() as tx:
            return tx.jobs.get(job_id)

    def _run_detect(self, job_id: int, site: str, method: str, engine: str | None) -> None:
        from .pipeline import detect_site

        with self.store.transaction() as tx:
            tx.jobs.set_state(job_id, "running", _now())
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = detect_site(self.store, site, method, engine=engine)
            outcome: dict[str, Any] = {
                "changes": len(result.changes), "activity": result.activity, "method": result.method,
                "scenes": len(result.scenes), "warnings": [str(w.message) for w in caught][:20],
            }
        except SitewatchError as exc:
            self._finish(job_id, "failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 (a job's failure is recorded, not raised in a worker thread)
            log.exception("job %s failed", job_id)
            self._finish(job_id, "failed", error=f"internal error ({type(exc).__name__}); see the server's log")
        else:
            self._finish(job_id, "done", result=outcome)

    def _finish(self, job_id: int, state: str, *, result: dict[str, Any] | None = None, error: str = "") -> None:
        with self.store.transaction() as tx:
            tx.jobs.set_state(job_id, state, _now(), result=result, error=error)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; ``wait``: until the running ones finish (queued ones are dropped either way)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
