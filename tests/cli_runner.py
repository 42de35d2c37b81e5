"""One runner for the ``sitewatch`` command line in the tests: :func:`run_cli`, in this process.

A ``python -m sitewatch`` subprocess pays about 1.8 s of imports per call; this runs the entry point itself,
:func:`sitewatch.cli.main` (the one-line errors, exit codes and warning lines included), under
``typer.testing.CliRunner``'s isolation, and answers like :func:`subprocess.run` does (``returncode``,
``stdout``, ``stderr``), so a test reads the same either way.  Each call starts as a new process would:

* ``sys.stdout``/``sys.stderr``/``sys.stdin`` are swapped for buffers, and ``env`` is set in ``os.environ``
  for the call only (``SITEWATCH_*``, ``COLUMNS``...); the rich consoles are made again (``main`` does it), so
  they see those streams and that environment;
* the global options (``--home``...) start from their defaults, and the settings are read again (they are not
  cached: :func:`sitewatch.settings.get_settings` builds them each time);
* the warning filters are Python's defaults, not pytest's, and the warning hook ``main`` installs is undone
  after the call (``warnings.catch_warnings``).

Still shared with the test process: imported modules and their caches (e.g. loaded ONNX models), and logging
(records go to pytest's handlers rather than to stderr).  Tests for which a separate process is the point
(the console script and ``python -m`` entry points, exit codes seen by a parent process) use
:mod:`subprocess` and say so.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner

from sitewatch.cli import main


@dataclass
class CliResult:
    """A finished run, shaped like :class:`subprocess.CompletedProcess` (and ``CliRunner``'s ``Result``)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    #: the error that made the run fail (the one ``main`` printed as one line, or the traceback's)
    exception: BaseException | None = None

    @property
    def exit_code(self) -> int:
        return self.returncode

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _python_default_warning_filters() -> None:
    """The filters of a Python started without ``-W`` or ``PYTHONWARNINGS`` (as ``python -m sitewatch`` is)."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings.filterwarnings("ignore", category=DeprecationWarning, append=True)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning, append=True)
    warnings.filterwarnings("ignore", category=ImportWarning, append=True)
    warnings.filterwarnings("ignore", category=ResourceWarning, append=True)


def _code(code: Any) -> int:
    """A process's exit status for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_cli(*args: Any, home: Any = None, ok: bool = True, env: Mapping[str, str | None] | None = None,
            input: str | None = None) -> CliResult:
    """Run ``sitewatch [--home HOME] ARGS...`` in this process; with ``ok``, assert that it exits 0.

    ``env`` adds to (a value ``None`` removes from) the environment for this call only.
    """
    argv = [*(["--home", str(home)] if home is not None else []), *map(str, args)]
    exception: BaseException | None = None
    with CliRunner().isolation(input=input, env=env) as (out, err, _), warnings.catch_warnings():
        _python_default_warning_filters()
        try:
            main(argv, prog_name="sitewatch")
            code = 0
        except SystemExit as exc:
            code = _code(exc.code)
            # main() turns a handled error into ``sys.exit(1)`` inside its ``except``: that error is the context
            exception = exc.__context__ if code else None
        except Exception as exc:  # uncaught (``--verbose``): a new process prints the traceback, exits 1
            traceback.print_exc()
            code, exception = 1, exc
        sys.stdout.flush()
        sys.stderr.flush()
        result = CliResult(argv, code, out.getvalue().decode(), err.getvalue().decode(), exception)
    if ok:
        assert result.returncode == 0, result.stderr + result.stdout
    return result
