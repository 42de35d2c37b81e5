"""Broad-area search for unreported construction, and promotion of candidates to watchlist sites.

:func:`search_area` (or :func:`search_around` a watchlist site) tiles an area, screens every pixel's time
series for new, lasting built or cleared ground (:mod:`sitewatch.search._screen`), joins the pixels into
dated polygons across tiles, drops those on watchlist sites and ranks the rest; :func:`write_candidates`
writes them as GeoJSON and :func:`promote_candidate` puts one on the watchlist.  :func:`find_similar` ranks the
places of an area that look like a site (spectral-texture statistics in a nearest-neighbour index,
:mod:`sitewatch.search._similar`).
"""

from __future__ import annotations

from ._core import Candidate, SearchParams, SearchResult, circle_area, read_area, search_area, search_around
from ._output import (
    CandidateNotFound,
    candidate_site,
    promote_candidate,
    read_candidates,
    search_to_file,
    similar_to_file,
    write_candidates,
    write_similar,
)
from ._screen import PixelScreen, Screen, ScreenParams
from ._similar import FEATURES, SimilarParams, SimilarPlace, SimilarResult, find_similar

__all__ = [
    "FEATURES", "Candidate", "CandidateNotFound", "PixelScreen", "Screen", "ScreenParams", "SearchParams",
    "SearchResult", "SimilarParams", "SimilarPlace", "SimilarResult", "circle_area", "find_similar",
    "candidate_site", "promote_candidate", "read_area", "read_candidates", "search_area", "search_around",
    "search_to_file", "similar_to_file", "write_candidates", "write_similar",
]
