"""Errors and warnings raised by sitewatch.

One root, :class:`SitewatchError`, mixed with the builtin that fits, so callers can catch either
(``except OSError`` still catches an unreadable image).  Messages say what is wrong and what to do.
"""

from __future__ import annotations


class SitewatchError(Exception):
    """Root of every error that sitewatch raises on purpose.

    ``field``: the input at fault, where there is one (a query parameter, a member of a GeoJSON body), for the
    API's 422 answers.
    """

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        self.field = field


class ImageryError(SitewatchError, OSError):
    """An image file cannot be read or is not usable (corrupt, truncated, no CRS, no date...)."""


class MissingCRSError(ImageryError):
    """An image has no coordinate reference system, so it cannot be placed on Earth."""


class SourceError(ImageryError):
    """An imagery source (a STAC catalog or API, a file server) cannot be searched or read."""


class SourceNotFound(SitewatchError, LookupError):
    """No imagery source is registered under that name."""


class MissingBandError(SitewatchError, KeyError):
    """An image lacks a band that a detector or stage needs."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoOverlapError(SitewatchError, ValueError):
    """A scene or a set of scenes does not cover the site."""


class AllCloudError(SitewatchError, ValueError):
    """No clear pixel is left over the site after masking clouds, shadows and snow."""


class InvalidParameter(SitewatchError, ValueError):
    """A run parameter has a value the run cannot use (an unknown engine, ...)."""


class InvalidSite(SitewatchError, ValueError):
    """A site definition (name, geometry, GeoJSON) is not valid."""


class SiteNotFound(SitewatchError, LookupError):
    """No site of that name (or alias) is in the watchlist."""


class JobNotFound(SitewatchError, LookupError):
    """No background job of that id is recorded."""


class SceneNotFound(SitewatchError, LookupError):
    """No scene of that id is stored."""


class AreaNotFound(SitewatchError, LookupError):
    """No search area of that name is recorded."""


class CandidateNotFound(SitewatchError, LookupError):
    """No search candidate of that rank or id (in a candidates file, or stored)."""


class AlertNotFound(SitewatchError, LookupError):
    """No alert of that id is stored."""


class AlertError(SitewatchError, ValueError):
    """An alert rule or endpoint is not valid (bad hours, URL, address, unknown id)."""


class DetectorNotFound(SitewatchError, LookupError):
    """No change detector is registered under that name."""


class AccountError(SitewatchError, ValueError):
    """A user or token request is not valid (a name taken or unknown, a bad role, password or lifetime)."""


class AccountNotFound(AccountError, LookupError):
    """No user of that name, or no API token of that id."""


class AuthError(SitewatchError, PermissionError):
    """Credentials were refused: an unknown user or wrong password, an unknown, expired or revoked token."""


class StoreError(SitewatchError, RuntimeError):
    """The store could not be read or written; nothing was changed."""


class SchedulerError(SitewatchError, ConnectionError):
    """The Dask scheduler of the ``scheduler`` setting cannot be reached (or Dask is not installed)."""


class TooLargeError(SitewatchError, MemoryError):
    """A run would need more memory than the machine has (it says what would fit instead)."""


class SitewatchWarning(UserWarning):
    """Root of the non-fatal data-quality warnings."""


class CloudySceneWarning(SitewatchWarning):
    """A scene was skipped over a site because too little of it is clear."""


class PartialCoverageWarning(SitewatchWarning):
    """A scene covers only part of a site."""


class MissingBandWarning(SitewatchWarning):
    """Scenes were left out of a run because they lack a band the method needs."""
