"""The server's cache of drawn tiles (sitewatch.tiles.TileCache): bounded in bytes, least recently used out
first, "no pixel there" remembered too; and scene_tile draws a tile once for the same key."""

from __future__ import annotations

from unittest import mock

from sitewatch import tiles
from sitewatch.tiles import TileCache


def test_least_recently_used_tiles_leave_first_within_the_byte_budget():
    e = TileCache.ENTRY_BYTES
    c = TileCache(max_bytes=3 * e + 100)
    c.put("a", b"x" * 40)
    c.put("b", b"y" * 40)
    c.put("none", None)  # a tile outside the scene: remembered, for the cost of an entry
    assert c.get("a") == (True, b"x" * 40)  # a is now the most recent
    c.put("c", b"z" * 40)  # over the budget: b (least recent) goes
    assert c.get("b") == (False, None) and c.get("a")[0] and c.get("c")[0] and c.get("none") == (True, None)
    assert c.size == 3 * e + 80
    c.put("huge", b"h" * (3 * e + 101))  # larger than the whole budget: not kept, nothing dropped for it
    assert c.get("huge") == (False, None) and c.size == 3 * e + 80
    assert (c.hits, c.misses) == (4, 2)


def test_a_flood_of_empty_tiles_stays_within_the_budget():
    c = TileCache(max_bytes=100 * TileCache.ENTRY_BYTES)
    for i in range(10_000):
        c.put(("S1", 22, i, i), None)
    assert c.size <= c.max_bytes and len(c._items) == 100


def test_scene_tile_draws_once_per_scene_bands_and_tile():
    scene = mock.Mock(scene_id="S1")
    cache = TileCache()
    with mock.patch.object(tiles, "_draw", side_effect=[b"png-1", None, b"png-2"]) as draw:
        assert tiles.scene_tile(scene, 14, 10, 11, ("B04", "B03", "B02"), cache=cache) == b"png-1"
        assert tiles.scene_tile(scene, 14, 10, 11, ("B04", "B03", "B02"), cache=cache) == b"png-1"
        assert tiles.scene_tile(scene, 14, 10, 12, ("B04", "B03", "B02"), cache=cache) is None
        assert tiles.scene_tile(scene, 14, 10, 12, ("B04", "B03", "B02"), cache=cache) is None
        assert tiles.scene_tile(scene, 14, 10, 11, ("B08",), cache=cache) == b"png-2"
        assert draw.call_count == 3
