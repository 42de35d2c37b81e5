"""The API against its own OpenAPI document (#13): schemathesis generates requests for every operation (valid
and invalid parameters and bodies, with an admin's token) and no answer may be a server error (5xx).  The
store holds a site, a search area with candidates, an alert and users, so that requests reach deep."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from shapely.geometry import box, mapping

from sitewatch.accounts import add_user, create_token
from sitewatch.api import create_app
from sitewatch.areas import add_area
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    settings = get_settings(home=tmp_path_factory.mktemp("schema-home"))
    store = Store(settings.database_url)
    store.add_site(make_site("Valley", box(128.1, 41.3, 128.2, 41.4)))
    add_area(store, "valley", geojson=mapping(box(128.0, 41.2, 128.3, 41.5)), added_by="test")
    now = datetime(2024, 6, 1, tzinfo=UTC)
    with store.transaction() as tx:
        area_id = tx.areas.record_search("valley", {"at": now.isoformat(), "candidates": 1})
        cand = {"id": "c01", "rank": 1, "score": 2.5, "area_m2": 20_000.0,
                "geometry": mapping(box(128.10, 41.30, 128.104, 41.303)),
                "first_seen_after": "2023-05-02T02:00:00Z", "first_seen_before": "2023-05-12T02:00:00Z"}
        tx.candidates.record(area_id, [cand], now)
        tx.alerts.add(key="area:valley|search|c01|candidate", area_id=area_id, change_id="c01", kind="candidate",
                      status="candidate", created_at=now, observed_at=now, payload={**cand, "area": "valley"},
                      targets=[], next_attempt=now)
    add_user(store, "root", "admin", "long enough", actor="test")
    token = create_token(store, "root", actor="test")[1]
    app = create_app(settings, store=store)
    return schemathesis.openapi.from_asgi("/api/openapi.json", app), {"Authorization": f"Bearer {token}"}


def test_no_request_makes_a_server_error(api_schema):
    api_schema, headers = api_schema
    # one hypothesis run per operation (schemathesis' pytest loader does not run under this pytest)
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 24  # every operation of the document (a test of its own lists them)
    answers: dict[str, set[int]] = {}
    for op in operations:

        @given(case=op.as_strategy())
        @hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                   database=None)
        def run(case) -> None:
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
            answers.setdefault(case.operation.label, set()).add(response.status_code)

        run()
    # the requests went in with the token: reads succeed, bad input is refused
    assert 200 in answers["GET /api/sites"] and 200 in answers["GET /api/candidates"], answers
    assert 422 in answers["POST /api/sites"] and 401 not in answers["GET /api/audit"], answers
    print({k: sorted(v) for k, v in answers.items()})
