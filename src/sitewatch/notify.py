"""Sending alerts: webhooks (signed JSON) and e-mail (SMTP), from the deliveries stored with each alert.

:func:`deliver_pending` picks the deliveries that are due (state ``pending``, ``next_attempt`` passed), sends
each and records the outcome in its own transaction: ``sent``, or another attempt later (exponential backoff
with jitter: ``alert_backoff`` x 2^(attempts-1) x [0.5, 1.5) seconds), or ``failed`` after
``alert_max_attempts`` attempts (kept: ``sitewatch alert retry`` sends them again).  A crash while sending
leaves the delivery pending, so it is sent again (at least once); receivers can drop repeats by the
``X-Sitewatch-Alert`` header (the alert's unique key) or the body's ``key``.

Webhook: ``POST`` of the alert as JSON (``Content-Type: application/json``), signed with the endpoint's
secret: ``X-Sitewatch-Signature: sha256=<hex HMAC-SHA256 of the body>``; any 2xx answer is success.
E-mail: plain text through the SMTP server of the settings (``SITEWATCH_SMTP_*``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import requests

from ._time import iso_utc
from .alerts import Alert, Delivery, list_alerts
from .store import Store

__all__ = ["DeliverySummary", "deliver_pending", "retry_failed", "sign", "verify", "alert_json", "alert_text",
           "SIGNATURE_HEADER"]

SIGNATURE_HEADER = "X-Sitewatch-Signature"


@dataclass(frozen=True)
class DeliverySummary:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()


def sign(body: bytes, secret: str) -> str:
    """The signature header's value of ``body``: ``sha256=<hex HMAC-SHA256>`` keyed by ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` with ``secret`` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def alert_json(alert: Alert) -> bytes:
    """The webhook body of an alert (stable key order)."""
    doc = {"key": alert.key, "id": alert.id, "title": alert.title, "created_at": iso_utc(alert.created_at),
           "observed_at": iso_utc(alert.observed_at), **alert.payload}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def alert_text(alert: Alert) -> str:
    """The plain-text e-mail of an alert, with links to its evidence."""
    p = alert.payload
    ev = p.get("evidence") or {}
    lines = [
        alert.title, "",
        f"Site:        {alert.site}",
        f"Change:      {alert.change_id} ({p.get('status')}, {p.get('n_observations')} observation(s))",
        f"Area:        {p.get('area_m2', 0):,.0f} m²",
        f"First seen:  between {p.get('first_seen_after') or '—'} and {p.get('first_seen_before')}",
        f"Last seen:   {p.get('last_seen')}",
        f"Image:       {p.get('first_seen_scene') or '—'}",
        f"Method:      {p.get('method')}, score {p.get('score')}, confidence {p.get('confidence')}",
        "",
    ]
    if ev.get("report"):
        lines.append(f"Report:      {ev['report']}")
    for chip in ev.get("chips", []):
        lines.append(f"Chip:        {chip}")
    c = p.get("geometry", {})
    lines += ["", f"Alert key: {alert.key}", f"Geometry (GeoJSON, WGS84): {json.dumps(c)}", ""]
    return "\n".join(lines)


def _post(url: str, body: bytes, secret: str, alert: Alert, delivery_id: int, timeout: float) -> None:
    headers = {
        "Content-Type": "application/json", "User-Agent": "sitewatch", SIGNATURE_HEADER: sign(body, secret),
        "X-Sitewatch-Event": alert.kind, "X-Sitewatch-Alert": alert.key, "X-Sitewatch-Delivery": str(delivery_id),
    }
    r = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    if not 200 <= r.status_code < 300:
        raise OSError(f"HTTP {r.status_code} from {url}: {r.text[:200]}")


def _mail(settings: Any, to: str, alert: Alert) -> None:
    msg = EmailMessage()
    msg["Subject"] = f"[sitewatch] {alert.title}"
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Message-ID"] = f"<{hashlib.sha1(alert.key.encode()).hexdigest()}@sitewatch>"
    msg["X-Sitewatch-Alert"] = alert.key
    msg.set_content(alert_text(alert))
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.webhook_timeout) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(msg)


def _backoff(settings: Any, attempts: int, rng: random.Random) -> timedelta:
    return timedelta(seconds=settings.alert_backoff * 2 ** (attempts - 1) * rng.uniform(0.5, 1.5))


def deliver_pending(
    store: Store, settings: Any, now: datetime | None = None, seed: int | None = None
) -> DeliverySummary:
    """Send every delivery that is due at ``now`` (default: the present); see the module."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    with store.transaction() as tx:
        due = [(d.id, d.alert_id, d.channel, d.target, d.endpoint_id) for d in tx.deliveries.due(now)]
        secrets = tx.deliveries.secrets()
    alerts = {a.id: a for a in list_alerts(store, ids=sorted({d[1] for d in due}))} if due else {}
    sent = retrying = failed = 0
    errors = []
    for did, aid, channel, target, eid in due:
        alert = alerts[aid]
        error = ""
        try:
            if channel == "webhook":
                _post(target, alert_json(alert), secrets.get(eid or -1, ""), alert, did, settings.webhook_timeout)
            elif channel == "email":
                _mail(settings, target, alert)
            else:
                error = f"unknown channel {channel!r}"
        except (OSError, requests.RequestException, smtplib.SMTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with store.transaction() as tx:
            d = tx.deliveries.get(did)
            if d is None or d.state != "pending":  # removed or handled meanwhile
                continue
            attempts = d.attempts + 1
            if not error:
                tx.deliveries.update(did, attempts=attempts, state="sent", sent_at=datetime.now(UTC), last_error="")
                sent += 1
                continue
            errors.append(f"{channel} {target}: {error}")
            if attempts >= settings.alert_max_attempts:
                tx.deliveries.update(did, attempts=attempts, last_error=error[:2000], state="failed")
                failed += 1
            else:
                tx.deliveries.update(did, attempts=attempts, last_error=error[:2000],
                                     next_attempt=now + _backoff(settings, attempts, rng))
                retrying += 1
    return DeliverySummary(sent, retrying, failed, tuple(errors))


def retry_failed(store: Store, now: datetime | None = None) -> list[Delivery]:
    """Put the failed deliveries back in the queue (due now, attempts counted afresh); returns them."""
    from .alerts import list_deliveries

    now = now or datetime.now(UTC)
    with store.transaction() as tx:
        ids = tx.deliveries.requeue_failed(now)
    return [d for d in list_deliveries(store) if d.id in set(ids)]


def file_uri(path: Path) -> str:
    return path.resolve().as_uri()
