import json

import pytest
from shapely.geometry import Point, box, mapping

from sitewatch.errors import InvalidSite
from sitewatch.geo import area_m2
from sitewatch.sites import make_site, read_geometry


def test_point_and_radius_gives_circle_of_right_area():
    s = make_site("base", lon=128.17, lat=41.36, radius_m=2000)
    assert s.geometry.geom_type == "Polygon"
    assert area_m2(s.geometry) == pytest.approx(3.14159 * 2000**2, rel=0.01)
    assert s.geometry.contains(Point(128.17, 41.36))


def test_geojson_feature_collection_file(tmp_path):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": mapping(box(128.0, 41.0, 128.1, 41.1))}]}
    p = tmp_path / "site.geojson"
    p.write_text(json.dumps(fc))
    s = make_site("x", p, aliases=["y", " "])
    assert s.geometry.bounds == pytest.approx((128.0, 41.0, 128.1, 41.1))
    assert s.aliases == ("y",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"foo": 1}', "no 'type'"),
        ('{"type": "Point", "coordinates": [128, 41]}', "needs a Polygon"),
        ('{"type": "Polygon", "coordinates": [[[500000, 4500000], [500100, 4500000], [500100, 4500100], '
         '[500000, 4500000]]]}', "not longitude/latitude"),
        ('{"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}', "invalid polygon"),
        ('{"type": "FeatureCollection", "features": []}', "no features"),
        ('{"type": "Polygon", "coordinates": "nope"}', "not a valid GeoJSON geometry"),
    ],
)
def test_invalid_geojson_is_a_specific_error(text, message):
    with pytest.raises(InvalidSite, match=message):
        read_geometry(text)


def test_site_needs_name_and_geometry():
    with pytest.raises(InvalidSite, match="non-empty name"):
        make_site(" ", lon=1, lat=1, radius_m=10)
    with pytest.raises(InvalidSite, match="lon, lat and radius"):
        make_site("a", lon=1)
    with pytest.raises(InvalidSite, match="positive"):
        make_site("a", lon=1, lat=1, radius_m=-5)
    with pytest.raises(InvalidSite, match="does not exist"):
        make_site("a", "/nonexistent/site.geojson")
