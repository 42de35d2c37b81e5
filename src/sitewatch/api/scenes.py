"""``/api/sites/{name}/scenes`` (a site's stored scenes) and ``/api/scenes/{id}/tiles/{z}/{x}/{y}.png`` (map tiles
of a stored scene, by its id only: :mod:`sitewatch.tiles`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from .._time import iso_utc
from ..accounts import User
from ..export import geometry_to_geojson
from ..geo import to_crs
from ..tiles import MAX_ZOOM, parse_bands, scene_tile
from ..types import Scene
from ._auth import current_user, store_of

router = APIRouter(prefix="/api", tags=["scenes"])

Reader = Annotated[User, Depends(current_user)]


def scene_json(scene: Scene) -> dict[str, Any]:
    """What a client may know of a stored scene: never where its files are."""
    from shapely.geometry import box

    return {
        "id": scene.scene_id, "datetime": iso_utc(scene.datetime),
        "platform": scene.platform, "source": scene.source, "cloud_cover": scene.cloud_cover,
        "bands": list(scene.bands), "has_mask": scene.mask_path is not None,
        "footprint": geometry_to_geojson(to_crs(box(*scene.bounds), scene.crs, "EPSG:4326")),
    }


@router.get("/sites/{name}/scenes", summary="The stored scenes over a site, oldest first (with the clear share "
            "over the site that its latest detection measured, when it used them)")
def site_scenes(request: Request, name: str, user: Reader) -> dict[str, Any]:
    store = store_of(request)
    site = store.get_site(name)
    scenes = store.scenes(site)
    run = store.latest_run(site.name)
    clear = dict(zip(run.scene_ids, run.clear_fraction, strict=True)) if run is not None else {}
    return {"site": site.name, "numberMatched": len(scenes),
            "scenes": [{**scene_json(s), "clear_fraction": clear.get(s.scene_id)} for s in scenes]}


@router.get("/scenes/{scene_id}/tiles/{z}/{x}/{y}.png", summary="A map tile of a stored scene (PNG, Web Mercator)",
            responses={200: {"content": {"image/png": {}}}, 204: {"description": "no pixel of the scene there"}})
def scene_tile_png(
    request: Request, scene_id: str, user: Reader,
    z: Annotated[int, Path(ge=0, le=MAX_ZOOM)], x: Annotated[int, Path(ge=0)], y: Annotated[int, Path(ge=0)],
    bands: Annotated[str | None, Query(description="1 band (grey) or 3 (red,green,blue), e.g. B04,B03,B02; "
                                                   "B12,B8A,B04 shows bare ground and roofs.")] = None,
) -> Response:
    scene = store_of(request).get_scene(scene_id)
    png = scene_tile(scene, z, x, y, parse_bands(bands, scene), cache=request.app.state.tiles)
    headers = {"Cache-Control": "private, max-age=3600"}
    if png is None:
        return Response(status_code=204, headers=headers)
    return Response(png, media_type="image/png", headers=headers)
