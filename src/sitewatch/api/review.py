"""``/api/areas`` (the search areas) and ``/api/candidates`` (the review queue: a search's candidates, to
accept, reject or promote to the watchlist; each decision recorded with who and why: :mod:`sitewatch.review`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from .._time import iso_utc
from ..accounts import User
from ..areas import list_areas
from ..export import geometry_to_geojson
from ..review import Candidate, decide, get_candidate, list_candidates, promote
from ._auth import current_user, require, store_of
from ._types import Limit, Offset, RowId, paged

router = APIRouter(prefix="/api", tags=["review"])

Reader = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require("analyst"))]
Status = Annotated[str | None, Query(pattern="^(open|accepted|rejected|promoted)$")]


class Decision(BaseModel):
    reason: str = Field("", max_length=2000, description="Why (kept with the decision and in the audit log).")


class Promotion(Decision):
    name: str | None = Field(None, max_length=200, description="The new site's name (default: the candidate's id).")
    buffer_m: float = Field(500.0, ge=0, le=10_000, description="How far around the candidate the site reaches.")


def candidate_feature(c: Candidate) -> dict[str, Any]:
    """A candidate as a GeoJSON Feature: the search's properties and the decision on it."""
    p = c.properties
    return {
        "type": "Feature", "id": c.id, "geometry": geometry_to_geojson(c.geometry),
        "properties": {
            "id": c.id, "area": c.area, "candidate_id": c.candidate_id, "rank": c.rank, "score": c.score,
            "area_m2": c.area_m2, "first_seen_after": iso_utc(c.first_seen_after),
            "first_seen_before": iso_utc(c.first_seen_before), "found_at": iso_utc(c.found_at),
            "seen_at": iso_utc(c.seen_at), "evidence": p.get("evidence"), "status": c.status,
            "decided_by": c.decided_by, "decided_at": iso_utc(c.decided_at), "reason": c.reason, "site": c.site,
        },
    }


def _page(request: Request, found: tuple[list[Candidate], int], offset: int) -> dict[str, Any]:
    page, total = found
    return paged(request, {"type": "FeatureCollection", "features": [candidate_feature(c) for c in page]}, total,
                 offset)


@router.get("/areas", summary="The search areas (a FeatureCollection) and what their last search found")
def areas(request: Request, user: Reader) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": a.name, "geometry": geometry_to_geojson(a.geometry),
         "properties": {"name": a.name, "around": a.around, "radius_km": a.radius_km, "area_km2": a.area_km2,
                        "min_area_m2": a.min_area_m2, "added_by": a.added_by, "reason": a.reason,
                        "last_search": a.searched.get("at"), "candidates": a.searched.get("candidates")}}
        for a in list_areas(store_of(request))]}


@router.get("/candidates", summary="The review queue: candidates of the search areas, by area and rank")
def candidates(
    request: Request, user: Reader, status: Status = None,
    area: Annotated[str | None, Query(description="Only this search area's.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    found = list_candidates(store_of(request), area=area, status=status, limit=limit, offset=offset)
    return _page(request, found, offset)


@router.get("/areas/{name}/candidates", summary="A search area's candidates, best first")
def area_candidates(
    request: Request, name: str, user: Reader, status: Status = None, limit: Limit = 100, offset: Offset = 0,
) -> dict[str, Any]:
    return candidates(request, user, status, name, limit, offset)


@router.get("/candidates/{candidate}", summary="One candidate (a GeoJSON Feature)")
def one(request: Request, candidate: RowId, user: Reader) -> dict[str, Any]:
    return candidate_feature(get_candidate(store_of(request), candidate))


@router.post("/candidates/{candidate}/accept", summary="Accept a candidate: a real new site (analyst)")
def accept(request: Request, candidate: RowId, user: Analyst,
           body: Annotated[Decision | None, Body()] = None) -> dict[str, Any]:
    reason = body.reason if body else ""
    return candidate_feature(decide(store_of(request), candidate, "accept", by=user.name, reason=reason))


@router.post("/candidates/{candidate}/reject", summary="Reject a candidate: not a site (analyst)")
def reject(request: Request, candidate: RowId, user: Analyst,
           body: Annotated[Decision | None, Body()] = None) -> dict[str, Any]:
    reason = body.reason if body else ""
    return candidate_feature(decide(store_of(request), candidate, "reject", by=user.name, reason=reason))


@router.post("/candidates/{candidate}/promote", summary="Promote a candidate to the watchlist (analyst)")
def promote_one(request: Request, candidate: RowId, user: Analyst,
                body: Annotated[Promotion | None, Body()] = None) -> dict[str, Any]:
    b = body or Promotion.model_validate({})
    c, site = promote(store_of(request), candidate, by=user.name, name=b.name, reason=b.reason,
                      buffer_m=b.buffer_m)
    return candidate_feature(c)
