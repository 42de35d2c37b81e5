"""The alerts as an Atom 1.0 feed (RFC 4287), for any feed reader: ``<home>/alerts.atom``.

Regenerated after each monitoring pass from the stored alerts (newest first).  Entry ids are ``tag:`` URIs
(RFC 4151) made from the alert's unique key, so a reader never shows an alert twice; times are UTC.  Each
entry links to the site's report (``rel="alternate"``) and to the change's chips (``rel="related"``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from ._atomic import atomic_path
from ._time import iso_utc
from .alerts import Alert

__all__ = ["write_feed", "ATOM_NS", "entry_id"]

ATOM_NS = "http://www.w3.org/2005/Atom"
TAG_AUTHORITY = "sitewatch.invalid,2026"


def entry_id(alert: Alert) -> str:
    return f"tag:{TAG_AUTHORITY}:alert:{quote(alert.key, safe='')}"


def write_feed(alerts: Sequence[Alert], path: str | Path, title: str = "sitewatch alerts",
               feed_key: str = "sitewatch", self_url: str | None = None) -> Path:
    """Write ``alerts`` as an Atom feed to ``path`` (atomically: readers never see half a file)."""
    path = Path(path)
    ET.register_namespace("", ATOM_NS)

    def el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        e = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            e.text = text
        return e

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    el(feed, "id", f"tag:{TAG_AUTHORITY}:feed:{quote(feed_key, safe='')}")
    el(feed, "title", title)
    updated = max((a.created_at for a in alerts), default=datetime(1970, 1, 1, tzinfo=UTC))
    el(feed, "updated", iso_utc(updated))
    author = el(feed, "author")
    el(author, "name", "sitewatch")
    el(feed, "generator", "sitewatch")
    el(feed, "link", rel="self", href=self_url or path.resolve().as_uri())
    for a in alerts:
        e = el(feed, "entry")
        el(e, "id", entry_id(a))
        el(e, "title", a.title)
        el(e, "updated", iso_utc(a.created_at))
        el(e, "published", iso_utc(a.created_at))
        label = {"new": "new change", "confirmed": "confirmed change", "candidate": "candidate site"}.get(a.kind)
        el(e, "category", term=a.kind, label=label or a.kind)
        el(e, "category", term=a.status)
        ev = a.payload.get("evidence") or {}
        if ev.get("report"):
            el(e, "link", rel="alternate", type="text/html", href=ev["report"])
        for chip in ev.get("chips", []):
            el(e, "link", rel="related", type="image/png", href=chip)
        p = a.payload
        el(e, "summary", (
            f"{a.site}: change {a.change_id}, {p.get('status')}, {p.get('area_m2', 0):,.0f} m², first seen between "
            f"{p.get('first_seen_after') or 'the start of the series'} and {p.get('first_seen_before')} "
            f"(image {p.get('first_seen_scene') or 'unknown'}); last seen {p.get('last_seen')}."
        ))
    tree = ET.ElementTree(feed)
    ET.indent(tree)
    with atomic_path(path) as tmp:  # readable by others: a web server serves the feed
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
    return path
