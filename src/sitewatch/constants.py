"""Defaults and policy values shared by the library and its faces (the CLI), in a module with no heavy imports.

Each value is written here once and imported where it is used; the command line imports these at start-up to
show them in ``--help``.  A value a user may change per installation is a setting
(:class:`sitewatch.settings.Settings`) whose default comes from here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METHOD", "DEFAULT_PAIR_METHOD", "MAX_SHIFT", "MIN_CLEAR_FRACTION", "RECENT_DAYS"]

#: The default detector of a site's detection run (:func:`sitewatch.pipeline.detect_site`, `sitewatch detect`,
#: `sitewatch monitor`).
DEFAULT_METHOD = "index"

#: The default detector of :func:`sitewatch.pair.detect_pair` and `sitewatch detect-pair`: the best one on real
#: pairs (pooled F1 on the OSCD cities, see the README's Accuracy section).
DEFAULT_PAIR_METHOD = "urban"

#: A date is used when at least this share of the site is clear (setting ``min_clear_fraction``; the tracker,
#: the series engine and the report's activity sentence), and a search uses a date in a tile from this clear
#: share of the tile's data.
MIN_CLEAR_FRACTION = 0.2

#: A site is ``active`` when a change was first seen in the last this many days of its series (about six
#: months), else ``dormant`` (:func:`sitewatch.detect.activity_status`, the report's activity sentence).
RECENT_DAYS = 183

#: Largest co-registration shift (pixels) that is applied: more is implausible for orthorectified products
#: (:func:`sitewatch.coreg.register`).
MAX_SHIFT = 3.0
