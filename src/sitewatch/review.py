"""The review queue: the candidates that searches of the areas found, and the analysts' decisions on them.

Each monitoring pass that searches an area stores its candidates (:meth:`CandidateRepo.record
<sitewatch.store.repos.CandidateRepo.record>`, in the transaction that records the search and raises its
alerts); a candidate found again keeps the decision taken on it.  An analyst then *accepts* a candidate (a real
new site, noted), *rejects* it (not a site: a field, a quarry, a cloud edge), or *promotes* it to the watchlist
(a site drawn around it, :func:`sitewatch.search.candidate_site`).  Every decision is stored with who, when and
why, and written to the audit log in the same transaction.  The API and the web app call these functions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import InvalidParameter
from .store import Store
from .store.records import Candidate

__all__ = ["Candidate", "STATUSES", "DECISIONS", "list_candidates", "get_candidate", "decide", "promote"]

#: a candidate's states: waiting for a look, or the decision taken on it
STATUSES = ("open", "accepted", "rejected", "promoted")
#: the decisions that leave the watchlist alone (``promote`` adds a site: :func:`promote`)
DECISIONS = {"accept": "accepted", "reject": "rejected"}


def list_candidates(store: Store, *, area: str | None = None, status: str | None = None, limit: int = 100,
                    offset: int = 0) -> tuple[list[Candidate], int]:
    """A page of stored candidates (by area, best first) and how many match."""
    if status is not None and status not in STATUSES:
        raise InvalidParameter(f"unknown candidate status {status!r}: one of {', '.join(STATUSES)}", field="status")
    with store.transaction() as tx:
        if area is not None:
            tx.areas.get(area)  # an unknown area is an error, not an empty list
        return tx.candidates.find(area=area, status=status, limit=limit, offset=offset)


def get_candidate(store: Store, candidate: int) -> Candidate:
    with store.transaction() as tx:
        return tx.candidates.get(candidate)


def _open_to(c: Candidate, what: str) -> None:
    if c.status == "promoted":
        raise InvalidParameter(f"candidate {c.id} was promoted to site {c.site!r} by {c.decided_by}, and stays "
                               f"promoted: it cannot be {what} (the site's own page is where it goes on)",
                               field="candidate")


def decide(store: Store, candidate: int, decision: str, *, by: str, reason: str = "",
           now: datetime | None = None) -> Candidate:
    """Accept or reject a candidate (``decision``: ``accept`` or ``reject``), recorded with who and why.

    A decision may be changed (the audit log keeps each one); a promoted candidate stays promoted."""
    if decision not in DECISIONS:
        raise InvalidParameter(f"unknown decision {decision!r}: accept, reject (or promote)", field="decision")
    at = now or datetime.now(UTC)
    with store.transaction() as tx:
        c = tx.candidates.get(candidate)
        _open_to(c, DECISIONS[decision])
        out = tx.candidates.decide(candidate, DECISIONS[decision], by, reason, at)
        tx.audit.record(by, f"candidate.{decision}", f"{c.area}#{c.id}",
                        {"candidate_id": c.candidate_id, "reason": reason, "was": c.status}, at)
        return out


def promote(store: Store, candidate: int, *, by: str, name: str | None = None, reason: str = "",
            buffer_m: float = 500.0, now: datetime | None = None) -> tuple[Candidate, str]:
    """Add a candidate to the watchlist (its polygon grown by ``buffer_m`` metres; named ``name``, else by its
    id); the site, the decision and the audit entry are written together.  Returns the candidate and the site's
    name."""
    from .search import candidate_site

    at = now or datetime.now(UTC)
    with store.transaction() as tx:
        c = tx.candidates.get(candidate)
        _open_to(c, "promoted again")
        props = {**c.properties, "rank": c.rank, "id": c.candidate_id, "score": c.score, "area_m2": c.area_m2}
        site = candidate_site(props, c.geometry, origin=f"search area {c.area}", name=name, added_by=by,
                              reason=reason, buffer_m=buffer_m)
        added = tx.sites.add(site, False)
        out = tx.candidates.decide(candidate, "promoted", by, reason, at, site=added.name)
        tx.audit.record(by, "candidate.promote", f"{c.area}#{c.id}",
                        {"candidate_id": c.candidate_id, "reason": reason, "site": added.name}, at)
        return out, added.name
