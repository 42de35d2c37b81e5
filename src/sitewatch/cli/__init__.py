"""The ``sitewatch`` command line: parses options, calls the library, prints the result.

No detection, storage or geometry logic lives here.  Errors print one line and exit 1 (``--verbose``
shows the traceback).  :mod:`sitewatch.cli.root` holds the root command and :func:`main`, the entry point;
one module per command group holds its commands (after rasterio's ``rio`` package).
"""

from __future__ import annotations

from .root import app, main

__all__ = ["app", "main"]
