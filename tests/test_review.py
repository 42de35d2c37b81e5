"""The review queue (#13): a search area's stored candidates, accepted, rejected or promoted to the watchlist,
each decision with who, when and why in the audit log; in the library and through the API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box, mapping

from sitewatch.accounts import add_user, audit_log, create_token
from sitewatch.api import create_app
from sitewatch.areas import add_area, remove_area
from sitewatch.errors import CandidateNotFound, InvalidParameter, InvalidSite
from sitewatch.review import decide, get_candidate, list_candidates, promote
from sitewatch.settings import get_settings
from sitewatch.store import Store

AREA = mapping(box(128.0, 41.2, 128.3, 41.5))
T0 = datetime(2024, 6, 1, tzinfo=UTC)


def _cand(i: int, west: float, score: float) -> dict:
    g = box(west, 41.30, west + 0.004, 41.303)
    return {"id": f"c{i:02d}", "rank": i, "score": score, "area_m2": 110_000.0, "geometry": mapping(g),
            "first_seen_after": "2023-05-02T02:00:00Z", "first_seen_before": "2023-05-12T02:00:00Z",
            "evidence": {"chips": [f"areas/valley/chips/c{i:02d}.png"]}}


def _searched(store: Store, cands: list[dict], now: datetime = T0) -> list[int]:
    with store.transaction() as tx:
        area_id = tx.areas.record_search("valley", {"at": now.isoformat(), "candidates": len(cands)})
        return tx.candidates.record(area_id, cands, now)


@pytest.fixture()
def store(tmp_path):
    s = Store(get_settings(home=tmp_path / "home").database_url)
    add_area(s, "valley", geojson=AREA, added_by="test")
    return s


def test_a_search_fills_the_queue_and_a_second_search_keeps_the_decisions(store):
    ids = _searched(store, [_cand(1, 128.10, 9.5), _cand(2, 128.20, 3.1)])
    page, total = list_candidates(store, area="valley")
    assert total == 2 and [c.id for c in page] == ids and [c.status for c in page] == ["open", "open"]
    assert page[0].first_seen_before == datetime(2023, 5, 12, 2, tzinfo=UTC)
    assert page[0].properties["evidence"]["chips"] == ["areas/valley/chips/c01.png"]
    decide(store, ids[1], "reject", by="ana", reason="a quarry")
    # the next search finds both again (other ids and ranks; the first grown) and a new one
    grown = _cand(5, 128.10, 12.0)
    grown["geometry"] = mapping(box(128.099, 41.299, 128.105, 41.304))
    again = _searched(store, [grown, _cand(6, 128.20, 3.0), _cand(7, 128.25, 1.0)],
                      now=datetime(2024, 7, 1, tzinfo=UTC))
    assert again[:2] == ids  # the same rows, updated
    page, total = list_candidates(store, area="valley")
    assert total == 3
    first = get_candidate(store, ids[0])
    assert (first.candidate_id, first.score, first.status) == ("c05", 12.0, "open")
    assert first.found_at == T0 and first.seen_at == datetime(2024, 7, 1, tzinfo=UTC)
    rejected = get_candidate(store, ids[1])
    assert (rejected.status, rejected.decided_by, rejected.reason) == ("rejected", "ana", "a quarry")
    assert [c.id for c in list_candidates(store, status="open")[0]] == [ids[0], again[2]]


def test_each_stored_candidate_is_matched_once(store):
    """Two candidates of a later search that both overlap one stored candidate: the one of the same id (else
    the larger overlap) takes the stored row and its decision; the other is new and open.  Two candidates of
    one search that touch are two rows."""
    (first,) = _searched(store, [_cand(1, 128.10, 9.5)])
    decide(store, first, "reject", by="ana", reason="a quarry")
    left, right = _cand(2, 128.10, 4.0), _cand(3, 128.102, 5.0)  # the stored one split in two halves
    left["geometry"] = mapping(box(128.100, 41.30, 128.1025, 41.303))
    right["geometry"] = mapping(box(128.1015, 41.30, 128.104, 41.303))
    again = _searched(store, [left, right], now=datetime(2024, 7, 1, tzinfo=UTC))
    assert again[0] != again[1] and first in again
    rows = {c.id: c for c in list_candidates(store, area="valley")[0]}
    assert len(rows) == 2
    kept = rows[first]
    assert kept.candidate_id == "c02" and kept.status == "rejected"  # the larger overlap keeps the decision
    other = rows[next(i for i in again if i != first)]
    assert other.candidate_id == "c03" and other.status == "open"
    # the same id wins over a larger overlap
    moved = _cand(3, 128.20, 5.0)
    big = _cand(9, 128.10, 9.0)
    big["geometry"] = mapping(box(128.099, 41.299, 128.105, 41.304))
    third = _searched(store, [big, moved], now=datetime(2024, 8, 1, tzinfo=UTC))
    assert third == [first, other.id]


def test_decisions_promotion_and_the_audit_log(store):
    ids = _searched(store, [_cand(1, 128.10, 9.5), _cand(2, 128.20, 3.1)])
    at = datetime(2024, 8, 1, 9, tzinfo=UTC)
    c = decide(store, ids[0], "accept", by="ana", reason="new revetments", now=at)
    assert (c.status, c.decided_by, c.decided_at, c.reason) == ("accepted", "ana", at, "new revetments")
    c, site = promote(store, ids[0], by="bob", name="Valley North", reason="watch it", buffer_m=300)
    assert (c.status, c.site, site) == ("promoted", "Valley North", "Valley North")
    s = store.get_site("Valley North")
    assert s.added_by == "bob" and s.reason == "watch it" and "search area valley" in s.notes
    assert s.geometry.contains(c.geometry) and s.geometry.area > 4 * c.geometry.area  # grown by 300 m
    # a promoted candidate stays promoted; nothing is written when a decision is refused
    with pytest.raises(InvalidParameter, match="promoted to site 'Valley North' by bob, and stays promoted: it "
                                               "cannot be rejected"):
        decide(store, ids[0], "reject", by="ana")
    with pytest.raises(InvalidParameter, match="cannot be promoted again"):
        promote(store, ids[0], by="ana", name="Again")
    # a name taken: no site, no decision, no audit entry
    with pytest.raises(InvalidSite, match="Valley North"):
        promote(store, ids[1], by="ana", name="Valley North")
    assert get_candidate(store, ids[1]).status == "open"
    with pytest.raises(InvalidParameter, match="unknown decision"):
        decide(store, ids[1], "maybe", by="ana")
    with pytest.raises(CandidateNotFound):
        decide(store, 999, "accept", by="ana")
    log = [(e.actor, e.action, e.details.get("reason")) for e in audit_log(store)]
    assert log == [("bob", "candidate.promote", "watch it"), ("ana", "candidate.accept", "new revetments")]
    # forgetting the area forgets its candidates
    remove_area(store, "valley")
    with pytest.raises(CandidateNotFound):
        get_candidate(store, ids[1])


def test_the_review_api_and_its_roles(store):
    ids = _searched(store, [_cand(1, 128.10, 9.5), _cand(2, 128.20, 3.1), _cand(3, 128.25, 2.0)])
    tokens = {}
    for role in ("viewer", "analyst"):
        add_user(store, role[:3], role, "long enough", actor="test")
        tokens[role] = {"Authorization": f"Bearer {create_token(store, role[:3], actor='test')[1]}"}
    client = TestClient(create_app(get_settings(), store=store), raise_server_exceptions=False)
    assert client.get("/api/candidates").status_code == 401
    r = client.get("/api/areas", headers=tokens["viewer"])
    assert r.status_code == 200 and r.json()["features"][0]["properties"]["candidates"] == 3
    r = client.get("/api/areas/valley/candidates?limit=2", headers=tokens["viewer"])
    fc = r.json()
    assert r.status_code == 200 and fc["numberMatched"] == 3 and fc["numberReturned"] == 2
    assert [f["id"] for f in fc["features"]] == ids[:2] and "offset=2" in fc["links"][0]["href"]
    assert fc["features"][0]["properties"]["first_seen_before"] == "2023-05-12T02:00:00Z"
    assert client.get("/api/areas/nowhere/candidates", headers=tokens["viewer"]).status_code == 404
    assert client.get("/api/candidates?status=maybe", headers=tokens["viewer"]).status_code == 422
    # viewers read, analysts decide
    for verb in ("accept", "reject", "promote"):
        r = client.post(f"/api/candidates/{ids[0]}/{verb}", headers=tokens["viewer"])
        assert r.status_code == 403 and r.json()["error"]["status"] == 403
    r = client.post(f"/api/candidates/{ids[0]}/accept", json={"reason": "new pads"}, headers=tokens["analyst"])
    assert r.status_code == 200 and r.json()["properties"]["status"] == "accepted"
    assert r.json()["properties"]["decided_by"] == "ana"
    r = client.post(f"/api/candidates/{ids[1]}/reject", headers=tokens["analyst"])  # no body: no reason
    assert r.status_code == 200 and r.json()["properties"]["status"] == "rejected"
    r = client.post(f"/api/candidates/{ids[2]}/promote", json={"name": "East pads", "buffer_m": -1},
                    headers=tokens["analyst"])
    assert r.status_code == 422 and r.json()["error"]["field"].endswith("buffer_m")
    r = client.post(f"/api/candidates/{ids[2]}/promote", json={"name": "East pads", "reason": "grows"},
                    headers=tokens["analyst"])
    assert r.status_code == 200 and r.json()["properties"]["site"] == "East pads"
    assert client.get("/api/sites/East%20pads", headers=tokens["viewer"]).status_code == 200
    r = client.post(f"/api/candidates/{ids[2]}/reject", headers=tokens["analyst"])
    assert r.status_code == 422 and r.json()["error"]["field"] == "candidate"
    assert client.post("/api/candidates/999/accept", headers=tokens["analyst"]).status_code == 404
    assert client.get("/api/candidates?status=open", headers=tokens["viewer"]).json()["numberMatched"] == 0
    assert [e.action for e in audit_log(store) if e.action.startswith("candidate.")] == [
        "candidate.promote", "candidate.reject", "candidate.accept"]
