"""Defaults shared by the library and its faces (the CLI), in a module with no heavy imports.

The command line imports these at start-up to show them in ``--help``; the library modules that own them
(:mod:`sitewatch.pipeline`, :mod:`sitewatch.pair`) re-export them under the same names.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METHOD", "DEFAULT_PAIR_METHOD"]

#: The default detector of a site's detection run (:func:`sitewatch.pipeline.detect_site`, `sitewatch detect`,
#: `sitewatch monitor`).
DEFAULT_METHOD = "index"

#: The default detector of :func:`sitewatch.pair.detect_pair` and `sitewatch detect-pair`: the best one on real
#: pairs (pooled F1 on the OSCD cities, see the README's Accuracy section).
DEFAULT_PAIR_METHOD = "urban"
