"""Candidates on disk (GeoJSON, EPSG:4326) and their promotion to watchlist sites.

:func:`write_candidates` writes an RFC 7946 FeatureCollection, one feature per candidate in rank order
with ``rank``, ``score``, ``first_seen_after``, ``first_seen_before`` (ISO UTC) and the rest of what the
search measured, and the search's provenance (area, scenes, dates, parameters, suppressed candidates,
per-tile scores, version) in a top-level ``sitewatch`` member.  :func:`promote_candidate` turns one of them
into a site on the watchlist (its polygon plus a margin), recording who promoted it and why.
:func:`search_to_file` and :func:`similar_to_file` are what ``sitewatch search`` and ``sitewatch similar`` do:
search or rank, then write the file.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from .._atomic import write_text
from .._time import as_utc, iso_utc
from ..compute import THREADS
from ..errors import CandidateNotFound, InvalidSite
from ..export import geometry_to_geojson, to_jsonable
from ..geo import WGS84, to_crs, utm_crs_for
from ..store import Store
from ..types import Site
from ._core import Candidate, SearchResult
from ._similar import Progress, SimilarParams, SimilarResult, find_similar, site_footprint

__all__ = [
    "CandidateNotFound", "candidate_feature", "candidate_site", "promote_candidate", "read_candidates",
    "search_to_file", "similar_to_file", "write_candidates", "write_similar",
]


def _rel(path: str, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive
        return path


def candidate_feature(c: Candidate, base: Path | None = None) -> dict[str, Any]:
    """One candidate as a GeoJSON Feature (chip paths relative to ``base`` when given)."""
    cen = c.geometry.centroid
    chips = [_rel(p, base) if base else p for p in c.chips]
    prov = to_jsonable(c.provenance)
    for chip in prov.get("chips", []):
        chip["file"] = _rel(chip["file"], base) if base else chip["file"]
    return {
        "type": "Feature",
        "id": c.candidate_id,
        "geometry": geometry_to_geojson(c.geometry),
        "properties": {
            "rank": c.rank, "id": c.candidate_id, "score": c.score, "area_m2": c.area_m2,
            "first_seen_after": iso_utc(c.first_seen_after), "first_seen_before": iso_utc(c.first_seen_before),
            "last_seen": iso_utc(c.last_seen), "n_pixels": c.n_pixels, "strength": c.strength,
            "persistence": c.persistence, "onset_dates": c.onset_dates,
            "centroid": [round(cen.x, 6), round(cen.y, 6)], "chips": chips, "provenance": prov,
        },
    }


def write_candidates(result: SearchResult, path: str | Path) -> Path:
    """Write the ranked candidates of ``result`` as GeoJSON (EPSG:4326) at ``path`` (atomically)."""
    path = Path(path)
    base = path.parent.resolve()
    meta = {
        "version": result.version, "created": iso_utc(datetime.now(UTC)), "crs": "EPSG:4326",
        "area": geometry_to_geojson(result.area), "dates": [iso_utc(d) for d in result.dates],
        "scene_ids": list(result.scene_ids), "params": to_jsonable(result.params),
        "suppressed": to_jsonable(list(result.suppressed)), "tile_scores": to_jsonable(list(result.tile_scores)),
        "seconds": result.seconds,
    }
    return _write_collection([candidate_feature(c, base) for c in result.candidates], meta, path)


def _write_collection(features: list[dict[str, Any]], meta: dict[str, Any], path: str | Path) -> Path:
    """An RFC 7946 FeatureCollection, one feature per line, with ``meta`` as its ``sitewatch`` member,
    written atomically."""
    path = Path(path)
    feats = [json.dumps(f, ensure_ascii=False, allow_nan=False) for f in features]
    text = (  # one feature per line: compact, yet diffable line by line
        '{"type": "FeatureCollection", "features": [\n' + ",\n".join(feats) + '\n],\n"sitewatch": '
        + json.dumps(meta, ensure_ascii=False, allow_nan=False) + "}\n"
    )
    return write_text(path, text)


def write_similar(result: SimilarResult, path: str | Path) -> Path:
    """Write the places of a similarity ranking as GeoJSON (EPSG:4326) at ``path`` (atomically): one feature
    per place in rank order (``rank``, ``id``, ``distance``, the place's statistics), the query, its
    statistics, the feature scale, dates, scenes and parameters in the ``sitewatch`` member."""
    as_of = iso_utc(result.as_of)
    feats = []
    for pl in result.places:
        cen = pl.geometry.centroid
        feats.append({
            "type": "Feature", "id": pl.place_id, "geometry": geometry_to_geojson(pl.geometry),
            "properties": {
                "rank": pl.rank, "id": pl.place_id, "kind": "similar", "like": result.query,
                "distance": pl.distance, "as_of": as_of, "valid_share": pl.valid_share,
                "centroid": [round(cen.x, 6), round(cen.y, 6)], "features": pl.features,
            },
        })
    meta = {
        "version": result.version, "created": iso_utc(datetime.now(UTC)), "crs": "EPSG:4326", "kind": "similar",
        "query": {"name": result.query, "geometry": geometry_to_geojson(result.query_geometry),
                  "features": result.query_features},
        "area": geometry_to_geojson(result.area), "as_of": as_of, "dates": [iso_utc(d) for d in result.dates],
        "scene_ids": list(result.scene_ids), "windows": result.windows, "excluded": result.excluded,
        "feature_scale": result.scale, "params": to_jsonable(result.params), "seconds": result.seconds,
    }
    return _write_collection(feats, meta, path)


def read_candidates(path: str | Path) -> list[dict[str, Any]]:
    """The candidate features of a file written by :func:`write_candidates`, in rank order."""
    path = Path(path)
    if not path.exists():
        raise InvalidSite(f"candidates file {path} does not exist; write one with `sitewatch search ... -o FILE`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidSite(f"candidates file {path} is not valid JSON ({exc})") from None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list) or any(
        not isinstance(f, dict) or not isinstance(f.get("properties"), dict) or "rank" not in f["properties"]
        for f in feats
    ):
        raise InvalidSite(f"{path} is not a candidates file (a FeatureCollection whose features have a 'rank')")
    return sorted(feats, key=lambda f: f["properties"]["rank"])


def promote_candidate(
    store: Store,
    path: str | Path,
    rank: int | None = None,
    *,
    candidate_id: str | None = None,
    name: str | None = None,
    added_by: str | None = None,
    reason: str = "",
    buffer_m: float = 500.0,
    aliases: tuple[str, ...] = (),
) -> Site:
    """Add the candidate of ``rank`` (or ``candidate_id``) in the candidates file to the watchlist.

    The site is the candidate's polygon grown by ``buffer_m`` metres (room for the seasonal reference of
    detection); its notes keep the candidate's score, first-seen interval and file; ``added_by`` (default:
    the user running it) and ``reason`` are recorded.  Nothing is written when any check fails.
    """
    if (rank is None) == (candidate_id is None):
        raise CandidateNotFound("give a candidate's rank or its id (one of them)")
    if not buffer_m >= 0:
        raise InvalidSite(f"the buffer must be zero or more metres, not {buffer_m}")
    feats = read_candidates(path)
    found = next((f for f in feats if (f["properties"]["rank"] == rank if rank is not None
                                       else f["properties"].get("id") == candidate_id)), None)
    if found is None:
        what = f"rank {rank}" if rank is not None else f"id {candidate_id!r}"
        raise CandidateNotFound(f"no candidate of {what} in {path} ({len(feats)} candidate(s))")
    props = found["properties"]
    try:
        geom = shape(found["geometry"])
    except Exception as exc:  # noqa: BLE001 - shapely raises several types for bad GeoJSON
        raise InvalidSite(f"candidate {props.get('id')} in {path} has no valid geometry ({exc})") from None
    site = candidate_site(props, geom, origin=Path(path).name, name=name, added_by=added_by, reason=reason,
                          buffer_m=buffer_m, aliases=aliases)
    return store.add_site(site)


def candidate_site(
    props: dict[str, Any], geometry: BaseGeometry, *, origin: str, name: str | None = None,
    added_by: str | None = None, reason: str = "", buffer_m: float = 500.0, aliases: tuple[str, ...] = (),
) -> Site:
    """The watchlist site a candidate (its properties and WGS84 polygon) becomes: the polygon grown by
    ``buffer_m`` metres, notes saying where it came from (``origin``: its candidates file, its search area)."""
    from ..sites import make_site

    if not buffer_m >= 0:
        raise InvalidSite(f"the buffer must be zero or more metres, not {buffer_m}")
    geom = geometry
    if buffer_m > 0:
        c = geom.centroid
        utm = utm_crs_for(c.x, c.y)
        geom = to_crs(to_crs(geom, WGS84, utm).buffer(buffer_m, quad_segs=16), utm, WGS84)
    if props.get("kind") == "similar":  # a place of `sitewatch similar`
        what = (f"similar place #{props['rank']} ({props.get('id')}) of {origin}: looks like "
                f"{props.get('like')} (distance {props.get('distance')}) as of {(props.get('as_of') or '?')[:10]}")
    else:
        what = (f"search candidate #{props['rank']} ({props.get('id')}) of {origin}: "
                f"score {props.get('score')}, {props.get('area_m2')} m², first seen between "
                f"{(props.get('first_seen_after') or '?')[:10]} and {(props.get('first_seen_before') or '?')[:10]}")
    notes = f"promoted from {what}{f', buffered by {buffer_m:g} m' if buffer_m else ''}"
    return make_site(
        name or str(props.get("id") or f"candidate {props['rank']}"), geom, aliases=aliases, notes=notes,
        added_by=added_by if added_by else getpass.getuser(), reason=reason or "search candidate",
    )


def _date(value: str | datetime | None, what: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidSite(f"{what} wants a date like 2024-05-01, not {value!r}") from None
    return as_utc(d)


def search_to_file(
    store: Store,
    out: str | Path,
    *,
    around: str | None = None,
    radius_km: float = 15.0,
    area: str | Path | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    chips: int = 10,
    params: Any = None,
    suppress_sites: bool = True,
    progress: Any = None,
    scheduler: str = THREADS,
) -> tuple[SearchResult, Path]:
    """What ``sitewatch search`` does: search around a watchlist site or over an area file, write the
    candidates to ``out`` (GeoJSON) and the chips of the best ``chips`` of them to ``<out stem>-evidence/``;
    the tiles are screened as tasks of ``scheduler`` (:mod:`sitewatch.compute`)."""
    from ._core import circle_area, read_area, search_area

    if (around is None) == (area is None):
        raise InvalidSite("give either --around SITE (with --radius-km) or --area FILE.geojson, not both or neither")
    t0, t1 = _date(start, "--start"), _date(end, "--end")
    if t0 and t1 and t1 < t0:
        raise InvalidSite(f"--end ({t1:%Y-%m-%d}) is before --start ({t0:%Y-%m-%d})")
    geom = circle_area(store, around, radius_km)[1] if around is not None else read_area(area)  # type: ignore[arg-type]
    out = Path(out)
    result = search_area(
        store, geom, start=t0, end=t1, params=params, suppress_sites=suppress_sites,
        evidence_dir=out.parent / f"{out.stem}-evidence", chips=chips, progress=progress, scheduler=scheduler,
    )
    return result, write_candidates(result, out)


def similar_to_file(
    store: Store,
    like: str,
    out: str | Path,
    *,
    around: str | None = None,
    radius_km: float = 15.0,
    area: str | Path | None = None,
    as_of: str | datetime | None = None,
    params: SimilarParams | None = None,
    exclude_sites: bool = True,
    progress: Progress | None = None,
    scheduler: str = THREADS,
) -> tuple[SimilarResult, Path]:
    """What ``sitewatch similar`` does: the places around a watchlist site (default: around ``like`` itself)
    or over an area file that look like the site ``like``, written to ``out`` (GeoJSON, EPSG:4326); the area's
    blocks are described as tasks of ``scheduler`` (:mod:`sitewatch.compute`)."""
    from ._core import circle_area, read_area

    if around is not None and area is not None:
        raise InvalidSite("give --around SITE (with --radius-km) or --area FILE.geojson, not both")
    footprint, described = site_footprint(store, like)
    geom = read_area(area) if area is not None else circle_area(store, around or like, radius_km)[1]
    when = _date(as_of, "--date")
    if when is not None and isinstance(as_of, str) and len(as_of.strip()) == 10:  # a day: up to its end
        when += timedelta(days=1, microseconds=-1)
    result = find_similar(store, Site(like, footprint, notes=described), geom, as_of=when, params=params,
                          exclude_sites=exclude_sites, progress=progress, scheduler=scheduler)
    return result, write_similar(result, out)
