"""``/api/alerts`` (the alert inbox: list, acknowledge) and ``/api/audit`` (who decided what; admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from .._time import iso_utc
from ..accounts import User, audit_log
from ..alerts import Alert, acknowledge, find_alerts
from ._auth import current_user, require, store_of
from ._types import Limit, Offset, RowId

router = APIRouter(prefix="/api", tags=["alerts"])

Reader = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require("analyst"))]
Admin = Annotated[User, Depends(require("admin"))]


def alert_json(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id, "kind": a.kind, "site": a.site, "area": a.area, "change_id": a.change_id, "status": a.status,
        "title": a.title, "created_at": iso_utc(a.created_at), "observed_at": iso_utc(a.observed_at),
        "area_m2": a.payload.get("area_m2"), "evidence": a.payload.get("evidence"),
        "acknowledged_at": iso_utc(a.acknowledged_at), "acknowledged_by": a.acknowledged_by,
    }


@router.get("/alerts", summary="The alert inbox, newest first")
def list_alerts(
    request: Request, user: Reader,
    site: Annotated[str | None, Query(description="A site or search area.")] = None,
    kind: Annotated[str | None, Query(pattern="^(new|confirmed|candidate)$")] = None,
    acknowledged: Annotated[bool | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    alerts = find_alerts(store_of(request), site=site, kind=kind, acknowledged=acknowledged, limit=limit,
                         offset=offset)
    return {"alerts": [alert_json(a) for a in alerts], "numberReturned": len(alerts)}


@router.post("/alerts/{alert_id}/ack", summary="Acknowledge an alert (recorded with who and when)")
def ack_alert(request: Request, alert_id: RowId, user: Analyst) -> dict[str, Any]:
    return alert_json(acknowledge(store_of(request), alert_id, by=user.name))


@router.get("/audit", summary="The audit log, newest first (admin)")
def audit(
    request: Request, user: Admin,
    actor: str | None = None, action: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    entries = audit_log(store_of(request), limit=limit, actor=actor, action=action)
    return {"entries": [{"id": e.id, "at": iso_utc(e.at), "actor": e.actor,
                         "action": e.action, "target": e.target, "details": e.details} for e in entries]}
