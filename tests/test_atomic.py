"""The one atomic-write helper (sitewatch._atomic) and the files written through it: their mode, and what a failed
write leaves."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitewatch._atomic import atomic_path, write_text
from sitewatch.export import export_changes
from sitewatch.feed import write_feed
from sitewatch.report import write_report

from .test_export import make_changes
from .test_report import make_result


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_text_replaces_the_file_with_the_mode_open_gives(tmp_path: Path, umask_022: None) -> None:
    dest = tmp_path / "sub" / "page.html"
    assert write_text(dest, "new\n") == dest  # the folder is made
    assert dest.read_text("utf-8") == "new\n" and mode(dest) == 0o644
    os.umask(0o002)
    write_text(dest, "newer\n")
    assert dest.read_text("utf-8") == "newer\n" and mode(dest) == 0o664  # as open(path, "w") would
    assert [p.name for p in dest.parent.iterdir()] == ["page.html"]


def test_private_files_are_readable_by_their_owner_only(tmp_path: Path, umask_022: None) -> None:
    dest = write_text(tmp_path / "secret.txt", "token", private=True)
    assert mode(dest) == 0o600
    with atomic_path(tmp_path / "secret.db", folder=True, private=True) as tmp:
        tmp.write_bytes(b"x")
    assert mode(tmp_path / "secret.db") == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    dest = tmp_path / "alerts.atom"
    dest.write_text("old", "utf-8")
    for folder in (False, True):
        with pytest.raises(RuntimeError, match="disk full"), atomic_path(dest, folder=folder) as tmp:
            tmp.write_text("partial", "utf-8")
            if folder:
                (tmp.parent / "alerts.atom-journal").write_text("j", "utf-8")
            raise RuntimeError("disk full")
        assert dest.read_text("utf-8") == "old"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.atom"]


def test_two_writers_get_different_temporary_names(tmp_path: Path) -> None:
    dest = tmp_path / "candidates.geojson"
    with atomic_path(dest) as a, atomic_path(dest) as b:
        assert a != b and a.parent == b.parent == tmp_path
        assert a.name.startswith(".candidates.geojson.") and a.name.endswith(".tmp")
        a.write_text("first", "utf-8")
        b.write_text("second", "utf-8")
    assert dest.read_text("utf-8") == "first"  # the last to finish wins; neither wrote into the other
    assert [p.name for p in tmp_path.iterdir()] == ["candidates.geojson"]


def test_a_folder_writer_gets_a_fresh_name_and_its_side_files_go(tmp_path: Path) -> None:
    dest = tmp_path / "detections.gpkg"
    with atomic_path(dest, folder=True) as tmp:
        assert tmp.name == "detections.gpkg" and tmp.parent.parent == tmp_path and not tmp.exists()
        tmp.write_bytes(b"gpkg")
        (tmp.parent / "detections.gpkg-journal").write_bytes(b"j")
    assert dest.read_bytes() == b"gpkg"
    assert [p.name for p in tmp_path.iterdir()] == ["detections.gpkg"]
    with pytest.raises(FileNotFoundError), atomic_path(dest, folder=True):
        pass  # the writer wrote nothing: nothing to rename, the old file stays
    assert dest.read_bytes() == b"gpkg"


def test_served_files_are_readable_by_group_and_others(tmp_path: Path, umask_022: None) -> None:
    """The Atom feed (it used to come out 0600, which a web server cannot serve), the report with its images,
    and the exports."""
    feed = write_feed([], tmp_path / "alerts.atom")
    index = write_report(make_result(stack=None), tmp_path / "report")
    exports = [export_changes(make_changes(), tmp_path / name) for name in ("d.geojson", "d.gpkg")]
    served = [feed, *exports, *(p for p in index.parent.rglob("*") if p.is_file())]
    assert index in served and len(served) > 4
    assert {p.name: mode(p) for p in served} == {p.name: 0o644 for p in served}
