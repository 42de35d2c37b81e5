"""The tracker state as the store keeps it (``sitewatch.detect._pack`` / ``_unpack``): an ``.npz`` whose arrays
come back exactly, new and writable; the looks' reflectances stored as they are (zlib barely shrinks measured
floats and took most of a monitor pass on a large site), the rest compressed; states written by numpy's own
``savez_compressed`` (sitewatch up to 0.1.x) read the same."""

from __future__ import annotations

import io
import zipfile
from dataclasses import fields

import numpy as np
import pytest

from sitewatch.detect import _pack, _unpack
from sitewatch.tracking import TrackerState


def _state(seed: int = 3) -> tuple[TrackerState, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    k, nb, h, w = 3, 6, 40, 30
    ts = TrackerState.empty(np.datetime64("2024-03-01T10:30:00", "ns"), k, nb, h, w)
    ts.days, ts.used, ts.clear_fraction = np.array([0.0, 25.0, 61.0]), np.array([True, False, True]), \
        np.array([0.9, 0.1, 0.7])
    ts.buf[:] = rng.random(ts.buf.shape, dtype=np.float32)
    ts.buf[:, :, :5] = np.nan
    ts.buf_day[:] = rng.choice([0.0, 61.0, np.nan], ts.buf_day.shape).astype(np.float32)
    ts.memory[:] = rng.random(ts.memory.shape, dtype=np.float32)  # (float16: the seasonal memory)
    ts.memory[:, :, 2:6] = np.nan
    ts.memory_day[:] = rng.choice([0.0, 61.0, np.nan], ts.memory_day.shape).astype(np.float32)
    for name in ("onset", "prev_clear", "last_clear", "last_hit", "hits", "misses", "consec", "pend", "pend_prev"):
        getattr(ts, name)[:] = rng.integers(-1, 3, (h, w), dtype=np.int32)
    ts.nbuf[:], ts.pos[:] = rng.integers(0, 4, (h, w)), rng.integers(0, 3, (h, w))
    ts.state[:] = rng.random((h, w)) < 0.1
    ts.onset_score[:], ts.pend_score[:] = rng.random((h, w), np.float32), rng.random((h, w), np.float32)
    ts.last_art[3:7, 4:9], ts.regrown[10, 10], ts.season[0, :3] = 61.0, 25.0, 200.5
    return ts, rng.random((h, w), np.float32), rng.random((h, w)) < 0.8


def _same(a: TrackerState, b: TrackerState) -> None:
    assert a.origin == b.origin
    for f in fields(TrackerState):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "origin":
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, f.name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f.name


def test_a_packed_state_comes_back_exactly_and_writable():
    ts, ref_band, ref_clear = _state()
    back, band2, clear2 = _unpack(_pack(ts, ref_band, ref_clear))
    _same(ts, back)
    assert np.array_equal(band2, ref_band) and np.array_equal(clear2, ref_clear)
    # the tracker updates its state in place: every array must be its own and writable
    for f in fields(TrackerState):
        if f.name != "origin":
            assert getattr(back, f.name).flags.writeable, f.name
    back.buf[0, 0, 0, 0] = 7.0
    back.onset[0, 0] = 5
    assert back.buf[0, 0, 0, 0] == 7.0 and back.onset[0, 0] == 5 and ts.buf[0, 0, 0, 0] != 7.0


def test_the_looks_are_stored_as_they_are_and_the_rest_compressed():
    ts, ref_band, ref_clear = _state()
    data = _pack(ts, ref_band, ref_clear)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        kinds = {i.filename: i.compress_type for i in z.infolist()}
        sizes = {i.filename: (i.compress_size, i.file_size) for i in z.infolist()}
    for looks in ("buf.npy", "memory.npy", "memory_day.npy"):  # the looks and the seasonal memory's
        assert kinds.pop(looks) == zipfile.ZIP_STORED, looks
    assert set(kinds.values()) == {zipfile.ZIP_DEFLATED}
    # the counters and masks shrink (the point of compressing them)
    assert sizes["onset.npy"][0] < sizes["onset.npy"][1] / 2 and sizes["buf.npy"][0] == sizes["buf.npy"][1]
    # still an .npz that numpy reads
    with np.load(io.BytesIO(data)) as z:
        assert np.array_equal(z["buf"], ts.buf, equal_nan=True) and np.array_equal(z["ref_clear"], ref_clear)


def test_a_state_written_by_numpys_savez_compressed_reads_the_same():
    ts, ref_band, ref_clear = _state(seed=8)
    arrays = {f.name: getattr(ts, f.name) for f in fields(TrackerState) if f.name != "origin"}
    bio = io.BytesIO()
    np.savez_compressed(bio, origin=np.array([ts.origin]), ref_band=ref_band, ref_clear=ref_clear, **arrays)
    back, band2, clear2 = _unpack(bio.getvalue())
    _same(ts, back)
    assert np.array_equal(band2, ref_band) and np.array_equal(clear2, ref_clear)
    # an older state without the arrays added since (pending onsets, the looks' days) gets them empty
    old = {k: v for k, v in arrays.items() if k not in ("pend", "pend_prev", "pend_score", "buf_day")}
    bio = io.BytesIO()
    np.savez_compressed(bio, origin=np.array([ts.origin]), ref_band=ref_band, ref_clear=ref_clear, **old)
    back = _unpack(bio.getvalue())[0]
    assert (back.pend == -1).all() and np.isnan(back.buf_day).all() and back.buf_day.shape == ts.buf_day.shape
    assert np.array_equal(back.buf, ts.buf, equal_nan=True)


def test_a_fortran_ordered_array_reads_in_its_order():
    ts, ref_band, ref_clear = _state()
    bio = io.BytesIO()
    arrays = {f.name: getattr(ts, f.name) for f in fields(TrackerState) if f.name != "origin"}
    arrays["onset"] = np.asfortranarray(ts.onset)
    np.savez(bio, origin=np.array([ts.origin]), ref_band=np.asfortranarray(ref_band), ref_clear=ref_clear, **arrays)
    back, band2, _ = _unpack(bio.getvalue())
    assert np.array_equal(back.onset, ts.onset) and np.array_equal(band2, ref_band)


def test_a_damaged_state_is_an_error_not_a_wrong_state():
    ts, ref_band, ref_clear = _state()
    data = bytearray(_pack(ts, ref_band, ref_clear))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("buf.npy")
    # flip a byte inside the stored looks (after the member's local header: 30 bytes, its name and its extra
    # field, whose lengths the header gives): the member's CRC no longer matches
    start = info.header_offset
    name_len, extra_len = int.from_bytes(data[start + 26:start + 28], "little"), \
        int.from_bytes(data[start + 28:start + 30], "little")
    at = start + 30 + name_len + extra_len + 200
    data[at] ^= 0xFF
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        _unpack(bytes(data))


def test_members_of_every_npy_format_version_are_read():
    from sitewatch.detect import _read_npy

    arrays = {(1, 0): np.arange(12, dtype=np.int32).reshape(3, 4), (2, 0): np.linspace(0, 1, 5, dtype=np.float32),
              (3, 0): np.zeros(3, dtype=[("é", "f4")])}  # 3.0: numpy's format for non-latin-1 field names
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        for (major, minor), arr in arrays.items():
            with z.open(f"v{major}.npy", "w") as f:
                np.lib.format.write_array(f, arr, version=(major, minor))
    with zipfile.ZipFile(io.BytesIO(bio.getvalue())) as z:
        for (major, _), arr in arrays.items():
            got = _read_npy(z, f"v{major}")
            assert got.dtype == arr.dtype and np.array_equal(got, arr) and got.flags.writeable
