"""Score detections against the demo world's ground truth (object level, in metres)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from ..geo import WGS84, to_crs, utm_crs_for
from ..types import Change, Site

__all__ = ["TruthEvent", "EventMatch", "Evaluation", "read_truth", "evaluate"]


@dataclass(frozen=True)
class TruthEvent:
    id: str
    kind: str
    cls: str
    start: datetime
    geometry: BaseGeometry  # WGS84


@dataclass(frozen=True)
class EventMatch:
    event: TruthEvent
    change_id: str | None
    iou: float
    dated: bool  # first_seen_after < start <= first_seen_before
    first_seen_after: datetime | None = None
    first_seen_before: datetime | None = None


@dataclass(frozen=True)
class Evaluation:
    matches: tuple[EventMatch, ...]  # one per construction event inside the site
    false_detections: tuple[str, ...]  # change ids matching no construction event
    distractor_hits: tuple[str, ...]  # change ids overlapping a distractor
    details: dict[str, object] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        return sum(m.iou >= 0.3 for m in self.matches) / len(self.matches) if self.matches else 1.0


def read_truth(path: str | Path) -> list[TruthEvent]:
    fc = json.loads(Path(path).read_text())
    out = []
    for f in fc["features"]:
        p = f["properties"]
        start = datetime.fromisoformat(p["start"]).replace(tzinfo=UTC)
        out.append(TruthEvent(p["id"], p["kind"], p.get("class", ""), start, shape(f["geometry"])))
    return out


def evaluate(
    changes: Sequence[Change], truth: Sequence[TruthEvent], site: Site, min_iou: float = 0.3
) -> Evaluation:
    """Match each construction event inside ``site`` with its best detection by IoU (in UTM metres)."""
    c = site.geometry.centroid
    utm = utm_crs_for(c.x, c.y)
    site_m = to_crs(site.geometry, WGS84, utm)
    geoms = {ch.change_id: to_crs(ch.geometry, WGS84, utm) for ch in changes}
    by_id = {ch.change_id: ch for ch in changes}
    construction = [e for e in truth if e.kind in ("known", "hidden")]
    matches = []
    for e in construction:
        eg = to_crs(e.geometry, WGS84, utm)
        if eg.intersection(site_m).area < 0.5 * eg.area:
            continue
        best, best_iou = None, 0.0
        for cid, g in geoms.items():
            inter = g.intersection(eg).area
            iou = inter / g.union(eg).area if inter else 0.0
            if iou > best_iou:
                best, best_iou = cid, iou
        ch = by_id.get(best) if best else None
        dated = bool(
            ch is not None
            and (ch.first_seen_after is None or ch.first_seen_after < e.start)
            and e.start <= ch.first_seen_before
        )
        matches.append(EventMatch(e, best if best_iou > 0 else None, best_iou, dated,
                                  ch.first_seen_after if ch else None, ch.first_seen_before if ch else None))
    false = []
    distractor_hits = []
    events_m = [(e, to_crs(e.geometry, WGS84, utm)) for e in truth]
    for cid, g in geoms.items():
        overl = [(e, g.intersection(eg).area / g.area) for e, eg in events_m if g.intersects(eg)]
        if any(e.kind in ("known", "hidden") and (frac >= 0.5 or g.intersection(eg).area / g.union(eg).area >= 0.3)
               for e, frac in overl):
            continue
        false.append(cid)
        if any(e.kind == "distractor" and frac > 0.1 for e, frac in overl):
            distractor_hits.append(cid)
    return Evaluation(tuple(matches), tuple(false), tuple(distractor_hits))
