"""``/api/sites``: the watchlist as GeoJSON, a site, its detections (filtered, a page at a time), adding one;
``/api/detections``: the detections of every site, by box (the store's spatial query), date and status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from .._time import iso_utc
from ..accounts import User
from ..constants import DEFAULT_METHOD
from ..errors import InvalidParameter
from ..export import feature_collection, geometry_to_geojson
from ..jobs import Job
from ..query import ChangeQuery, find_changes, parse_bbox
from ..sites import site_from_feature
from ..types import Site
from ._auth import current_user, require, store_of
from ._types import Limit, Offset, RowId, paged

router = APIRouter(prefix="/api/sites", tags=["sites"])

Reader = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require("analyst"))]


def site_feature(site: Site) -> dict[str, Any]:
    return {
        "type": "Feature", "id": site.name, "geometry": geometry_to_geojson(site.geometry),
        "properties": {"name": site.name, "aliases": list(site.aliases), "notes": site.notes,
                       "added_by": site.added_by, "reason": site.reason},
    }


@router.get("", summary="The watchlist (a GeoJSON FeatureCollection of the sites)")
def list_sites(request: Request, user: Reader) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [site_feature(s) for s in store_of(request).list_sites()]}


@router.post("", status_code=201, summary="Add a site (a GeoJSON Feature with properties.name)")
def add_site(
    request: Request, user: Analyst,
    feature: Annotated[dict[str, Any], Body(description="A GeoJSON Feature: its geometry, properties.name "
                                            "(and optional notes, reason, aliases).")],
) -> JSONResponse:
    site = site_from_feature(feature, added_by=user.name)
    with store_of(request).transaction() as tx:  # the site and its audit entry together, or neither
        added = tx.sites.add(site, False)
        tx.audit.record(user.name, "site.add", added.name, {"reason": added.reason}, datetime.now(UTC))
    return JSONResponse(site_feature(added), status_code=201,
                        headers={"Location": f"/api/sites/{quote(added.name, safe='')}"})


@router.get("/{name}", summary="One site (a GeoJSON Feature)")
def get_site(request: Request, name: str, user: Reader) -> dict[str, Any]:
    return site_feature(store_of(request).get_site(name))


Start = Annotated[datetime | None, Query(description="First seen on or after (ISO 8601, UTC).")]
End = Annotated[datetime | None, Query(description="First seen on or before.")]
Status = Annotated[str | None, Query(pattern="^(probable|confirmed)$")]
BboxText = Annotated[str | None, Query(description="west,south,east,north (degrees; west > east: across the "
                                                   "antimeridian).")]


@router.get("/{name}/detections",
            summary="The site's detections (a FeatureCollection, the properties of detections.geojson), a page at "
                    "a time")
def detections(
    request: Request, name: str, user: Reader, start: Start = None, end: End = None, status: Status = None,
    bbox: BboxText = None, limit: Limit = 100, offset: Offset = 0,
) -> dict[str, Any]:
    store = store_of(request)
    site = store.get_site(name)
    box = parse_bbox(bbox) if bbox else None
    page, total = find_changes(store, ChangeQuery(start, end, status, box, limit=limit, offset=offset), site=site.name)
    return paged(request, feature_collection(page), total, offset)


detections_router = APIRouter(prefix="/api/detections", tags=["sites"])


@detections_router.get("", summary="The detections of every site (a FeatureCollection), in a box, a page at a time")
def all_detections(
    request: Request, user: Reader, bbox: BboxText = None,
    method: Annotated[str | None, Query(max_length=100, description="Only this detector's.")] = None,
    start: Start = None, end: End = None, status: Status = None, limit: Limit = 100, offset: Offset = 0,
) -> dict[str, Any]:
    box = parse_bbox(bbox) if bbox else None
    page, total = find_changes(store_of(request), ChangeQuery(start, end, status, box, limit=limit, offset=offset),
                               method=method)
    return paged(request, feature_collection(page), total, offset)


_MEDIA = {"geojson": ("application/geo+json", "geojson"), "gpkg": ("application/geopackage+sqlite3", "gpkg"),
          "kml": ("application/vnd.google-earth.kml+xml", "kml")}


@router.get("/{name}/export", summary="The site's detections as a file: GeoJSON, GeoPackage or KML",
            responses={200: {"content": {m: {} for m, _ in _MEDIA.values()}}})
def export(
    request: Request, name: str, user: Reader,
    format: Annotated[str, Query(pattern="^(geojson|gpkg|kml)$")] = "geojson",  # noqa: A002 (the API's word)
) -> Response:
    from ..export import export_bytes

    store = store_of(request)
    site = store.get_site(name)
    media, suffix = _MEDIA[format]
    return _attachment(export_bytes(store.changes(site.name), format), media, site.name, f"detections.{suffix}")


@router.get("/{name}/report", summary="The site's evidence report (a ZIP: the page, its timeline and chips)",
            responses={200: {"content": {"application/zip": {}}}})
def report(request: Request, name: str, user: Reader) -> Response:
    from ..pipeline import stored_result
    from ..report import report_archive

    store = store_of(request)
    site = store.get_site(name)
    data = report_archive(stored_result(store, site.name, resolution=request.app.state.settings.resolution))
    return _attachment(data, "application/zip", site.name, "report.zip")


def _attachment(data: bytes, media: str, site: str, what: str) -> Response:
    """A file to download, named after the site (``<site>-<what>``, characters safe in a file name)."""
    from ..render import safe_name

    filename = f"{safe_name(site, 'site', limit=None)}-{what}"
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.post("/{name}/detect", status_code=202, summary="Detect, date and track the site's changes (a background job)")
def detect(
    request: Request, name: str, user: Analyst,
    method: Annotated[str, Query(description="The detector (`sitewatch methods`).")] = DEFAULT_METHOD,
    engine: Annotated[str | None, Query(pattern="^(series|tracker)$")] = None,
) -> JSONResponse:
    from ..detectors import available

    if method not in available():
        raise InvalidParameter(f"unknown method {method!r}: one of {', '.join(available())}", field="method")
    job = request.app.state.jobs.submit_detect(name, by=user.name, method=method, engine=engine)
    return JSONResponse(job_json(job), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


def job_json(job: Job) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "site": job.site, "params": job.params, "state": job.state,
            "by": job.by, "created_at": iso_utc(job.created_at), "started_at": iso_utc(job.started_at),
            "finished_at": iso_utc(job.finished_at), "result": job.result, "error": job.error or None}


jobs_router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@jobs_router.get("/{job_id}", summary="A background job's state and outcome")
def get_job(request: Request, job_id: RowId, user: Reader) -> dict[str, Any]:
    return job_json(request.app.state.jobs.get(job_id))
