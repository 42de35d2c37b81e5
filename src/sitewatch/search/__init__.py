"""Broad-area search for unreported construction, and promotion of candidates to watchlist sites.

:func:`search_area` (or :func:`search_around` a watchlist site) tiles an area, screens every pixel's time
series for new, lasting built or cleared ground (:mod:`sitewatch.search._screen`), joins the pixels into
dated polygons across tiles, drops those on watchlist sites and ranks the rest; :func:`write_candidates`
writes them as GeoJSON and :func:`promote_candidate` puts one on the watchlist.
"""

from __future__ import annotations

from ._core import Candidate, SearchParams, SearchResult, circle_area, read_area, search_area, search_around
from ._output import CandidateNotFound, promote_candidate, read_candidates, search_to_file, write_candidates
from ._screen import PixelScreen, Screen, ScreenParams

__all__ = [
    "Candidate", "CandidateNotFound", "PixelScreen", "Screen", "ScreenParams", "SearchParams", "SearchResult",
    "circle_area", "promote_candidate", "read_area", "read_candidates", "search_area", "search_around",
    "search_to_file", "write_candidates",
]
