"""Settings: built by :func:`get_settings` from arguments and ``SITEWATCH_*`` environment variables.

Nothing is read at import time; every face (CLI, API) builds one ``Settings`` and passes it down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .compute import THREADS, check_scheduler
from .constants import MIN_CLEAR_FRACTION
from .errors import InvalidParameter


class Settings(BaseSettings):
    """Where sitewatch keeps its data and how it runs.

    ``home``: folder of the store and of reports (env ``SITEWATCH_HOME``, default ``./sitewatch-home``).
    ``db_url``: SQLAlchemy URL of the store (env ``SITEWATCH_DB_URL``; default SQLite in ``home``).
    ``data``: folder of the real test imagery (env ``SITEWATCH_DATA``, default ``../shared/data``).
    ``min_clear_fraction``: dates clearer than this over a site are used (env ``SITEWATCH_MIN_CLEAR_FRACTION``).
    ``resolution``: pixel size in metres of a site's grid (env ``SITEWATCH_RESOLUTION``).
    ``smtp_host``, ``smtp_port``: the mail server that alert e-mails go through (env ``SITEWATCH_SMTP_HOST``,
    default ``localhost``; ``SITEWATCH_SMTP_PORT``, default 25).
    ``smtp_user``, ``smtp_password``: log in to it when set (env ``SITEWATCH_SMTP_USER``,
    ``SITEWATCH_SMTP_PASSWORD``); ``smtp_starttls``: upgrade the connection with STARTTLS
    (env ``SITEWATCH_SMTP_STARTTLS``, default false); ``smtp_from``: the sender address of alert e-mails
    (env ``SITEWATCH_SMTP_FROM``).
    ``webhook_timeout``: seconds a webhook endpoint has to answer (env ``SITEWATCH_WEBHOOK_TIMEOUT``).
    ``alert_max_attempts``: deliveries tried this many times before they are marked failed
    (env ``SITEWATCH_ALERT_MAX_ATTEMPTS``); ``alert_backoff``: seconds before the first retry, doubled at each
    further one, with jitter (env ``SITEWATCH_ALERT_BACKOFF``).
    ``public_url``: where the home is served (the web app, later); alert links then point there instead of
    ``file://`` paths (env ``SITEWATCH_PUBLIC_URL``).
    ``secret_key``: signs the web app's sessions; ``serve`` refuses an address beyond this machine without it
    (env ``SITEWATCH_SECRET_KEY``).
    ``basemap_url``: an XYZ tile URL template (``https://.../{z}/{x}/{y}.png``) under the web app's maps; none by
    default (the site's own imagery is the map, and the app needs no network) (env ``SITEWATCH_BASEMAP_URL``).
    ``scheduler``: where the independent tasks of a search, a similarity ranking, a detection over many sites and a
    monitoring pass run (:mod:`sitewatch.compute`): ``sync`` (one after another, in the calling thread),
    ``threads`` (default: a local thread pool; detection goes one site at a time), or ``tcp://host:port``, the
    address of a Dask scheduler whose workers run them and can read the same imagery paths or URLs
    (env ``SITEWATCH_SCHEDULER``, option ``--scheduler``); anything else is refused.
    """

    model_config = SettingsConfigDict(env_prefix="SITEWATCH_", extra="ignore")

    home: Path = Field(default=Path("sitewatch-home"))
    db_url: str | None = None
    data: Path = Field(default=Path("../shared/data"))
    min_clear_fraction: float = Field(default=MIN_CLEAR_FRACTION, ge=0.0, le=1.0)
    resolution: float = Field(default=10.0, gt=0.0)
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, gt=0, lt=65536)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_from: str = "sitewatch@localhost"
    webhook_timeout: float = Field(default=10.0, gt=0.0)
    alert_max_attempts: int = Field(default=6, ge=1)
    alert_backoff: float = Field(default=60.0, ge=0.0)
    public_url: str | None = None
    secret_key: str | None = None
    basemap_url: str | None = None
    scheduler: str = THREADS

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        return check_scheduler(value)

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'sitewatch.db').resolve()}"


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit ``overrides`` (``None`` values ignored).

    A value that is not one of its setting's raises :class:`~sitewatch.errors.InvalidParameter` naming the
    setting, its environment variable and what is wrong, one line per setting.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InvalidParameter("; ".join(_problem(e) for e in exc.errors())) from None


def _problem(error: Any) -> str:
    """One problem of a :class:`ValidationError` as a sentence: ``setting scheduler (env ...): ...``."""
    name = ".".join(str(part) for part in error.get("loc", ())) or "?"
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"setting {name} (env SITEWATCH_{name.upper()}): {msg}"
