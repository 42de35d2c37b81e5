"""Settings: built by :func:`get_settings` from arguments and ``SITEWATCH_*`` environment variables.

Nothing is read at import time; every face (CLI, API) builds one ``Settings`` and passes it down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where sitewatch keeps its data and how it runs.

    ``home``: folder of the store and of reports (env ``SITEWATCH_HOME``, default ``./sitewatch-home``).
    ``db_url``: SQLAlchemy URL of the store (env ``SITEWATCH_DB_URL``; default SQLite in ``home``).
    ``data``: folder of the real test imagery (env ``SITEWATCH_DATA``, default ``../shared/data``).
    ``min_clear_fraction``: dates clearer than this over a site are used (env ``SITEWATCH_MIN_CLEAR_FRACTION``).
    ``resolution``: pixel size in metres of a site's grid (env ``SITEWATCH_RESOLUTION``).
    """

    model_config = SettingsConfigDict(env_prefix="SITEWATCH_", extra="ignore")

    home: Path = Field(default=Path("sitewatch-home"))
    db_url: str | None = None
    data: Path = Field(default=Path("../shared/data"))
    min_clear_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    resolution: float = Field(default=10.0, gt=0.0)

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'sitewatch.db').resolve()}"


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit ``overrides`` (``None`` values ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
