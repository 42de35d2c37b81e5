"""The learned detector: the shipped ONNX model agrees with its torch weights, inference and training are
reproducible, inputs are checked, and the model finds the change of a real OSCD city.

Torch is needed (the ``train`` extra): without it the torch checks skip locally and fail under CI=true.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sitewatch.detectors import get_detector
from sitewatch.detectors.learned import (
    MODEL_BANDS,
    PAIR_CHANNELS,
    SIX_BANDS,
    default_model,
    load_metadata,
    normalise,
    pair_features,
    predict,
)
from sitewatch.errors import ImageryError, MissingBandError
from sitewatch.pair import detect_pair
from sitewatch.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() == "true"


def _need_torch():  # noqa: ANN202
    try:
        import torch
    except ImportError:
        reason = "torch is not installed: install the train extra (pip install -e '.[dev,train]')"
        if CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return torch


def _scene(seed: int = 0, shape: tuple[int, int] = (96, 120)) -> tuple[np.ndarray, np.ndarray]:
    """A textured 10-band scene and the same scene with a bright roof block built in it."""
    rng = np.random.default_rng(seed)
    base = np.array([0.04, 0.07, 0.05, 0.12, 0.2, 0.24, 0.28, 0.3, 0.2, 0.1], np.float32)
    texture = rng.normal(1.0, 0.08, (1, *shape)).astype(np.float32)
    before = base[:, None, None] * texture
    after = before * np.float32(1.02) + rng.normal(0, 0.002, before.shape).astype(np.float32)
    after[:, 40:56, 50:70] = np.array([0.2, 0.22, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.32, 0.3])[:, None, None]
    return before, after


# ---------------------------------------------------------------------------------------------- model


MODELS = pytest.mark.parametrize("bands", [MODEL_BANDS, SIX_BANDS], ids=["ten-band", "six-band"])


@MODELS
def test_shipped_model_metadata(bands: tuple[str, ...]) -> None:
    model = default_model(bands)
    meta = load_metadata(model)
    # (the ten-band model was trained before Config had bands: its config does not name them)
    assert tuple(meta["bands"]) == bands and tuple(meta["config"].get("bands", MODEL_BANDS)) == bands
    assert 0.3 <= meta["threshold"] <= 0.95  # chosen on the training cities
    assert len(meta["train_cities"]) == 10 and meta["held_out"] is None
    loco = meta["loco"]
    assert sorted(loco["per_city"]) == meta["train_cities"]  # every city scored by the model without it
    assert model.stat().st_size < 5_000_000  # small enough to commit


def test_the_ten_band_model_runs_when_the_red_edge_is_there_else_the_six_band_one() -> None:
    assert default_model(MODEL_BANDS).name == "oscd_siamdiff.onnx"
    assert default_model(("B01", *MODEL_BANDS, "B09")) == default_model(MODEL_BANDS)
    assert default_model(SIX_BANDS).name == "oscd_siamdiff6.onnx"
    assert default_model(MODEL_BANDS[:-1]) == default_model(SIX_BANDS)  # B12 missing: the six-band one says so
    before, after = _scene(7, (64, 64))
    six = [MODEL_BANDS.index(b) for b in SIX_BANDS]
    ten = get_detector("learned").detect(before, after, MODEL_BANDS)
    only_six = get_detector("learned").detect(before[six], after[six], SIX_BANDS)
    assert ten.params["model_bands"] == list(MODEL_BANDS) and ten.params["model"].endswith("oscd_siamdiff.onnx")
    assert only_six.params["model_bands"] == list(SIX_BANDS)
    assert only_six.params["model"].endswith("oscd_siamdiff6.onnx")
    assert only_six.threshold == load_metadata(default_model(SIX_BANDS))["threshold"]
    # an explicit model reads its own bands, whatever else the images have
    forced = get_detector("learned", model=str(default_model(SIX_BANDS))).detect(before, after, MODEL_BANDS)
    np.testing.assert_array_equal(forced.score, only_six.score)


def test_a_site_run_loads_the_red_edge_only_when_every_scene_has_it() -> None:
    from datetime import UTC, datetime

    from sitewatch.detect import detector_bands
    from sitewatch.types import Scene

    def scene(i: int, bands: tuple[str, ...]) -> Scene:
        return Scene(f"s{i}", f"/x/s{i}.tif", datetime(2024, 1, i + 1, tzinfo=UTC), "EPSG:32631",
                     (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), 8, 8, (0.0, -80.0, 80.0, 0.0), bands)

    det = get_detector("learned")
    full = ("B01", *MODEL_BANDS)
    assert set(detector_bands("s", "learned", det, [scene(0, full), scene(1, full)])[0]) >= set(MODEL_BANDS)
    mixed = [scene(0, full), scene(1, SIX_BANDS)]
    bands, usable = detector_bands("s", "learned", det, mixed)
    assert set(bands) == set(SIX_BANDS) and len(usable) == 2  # no scene left out for an optional band
    with pytest.raises(MissingBandError, match=r"B11, B12 missing .* method 'learned' needs them"):
        detector_bands("s", "learned", det, [scene(0, ("B02", "B03", "B04", "B08"))])
    # a model given by path: its own bands are needed, no more is optional
    ten = get_detector("learned", model=str(default_model(MODEL_BANDS)))
    assert ten.required_bands == MODEL_BANDS and ten.optional_bands == ()
    with pytest.raises(MissingBandError, match=r"B05, B06, B07, B8A missing"):
        detector_bands("s", "learned", ten, [scene(0, SIX_BANDS)])


@pytest.mark.slow
@MODELS
def test_onnx_matches_torch(bands: tuple[str, ...]) -> None:
    """The shipped ONNX models and their torch weights give the same probabilities (tiled inference
    included)."""
    torch = _need_torch()
    from sitewatch.detectors.learned import _session
    from sitewatch.train.net import SiamDiff

    model = default_model(bands)
    meta = load_metadata(model)
    assert meta["inputs"] == ["before", "after", "pair"]
    net = SiamDiff(len(bands), tuple(meta["config"]["widths"]), len(bands) + 2)
    net.load_state_dict(torch.load(model.with_suffix(".pt"), weights_only=True))
    net.eval()
    before, after = _scene(1, (160, 192))
    pick = [MODEL_BANDS.index(b) for b in bands]
    before, after = before[pick], after[pick]
    ok = np.ones(before.shape[1:], bool)
    x1, x2 = normalise(before, ok), normalise(after, ok)
    pair = pair_features(x1, x2)
    with torch.no_grad():
        want = torch.sigmoid(net(*(torch.from_numpy(v)[None] for v in (x1, x2, pair))))[0, 0].numpy()
    session = _session(str(model), 1)
    (got,) = session.run(None, {"before": x1[None], "after": x2[None], "pair": pair[None]})
    np.testing.assert_allclose(got[0, 0], want, atol=1e-4)
    # one tile covering the whole image: only the border handling differs (mirror padding instead of the
    # network's zero padding), so the two agree beyond the receptive field (~40 px) of the image edges
    tiled = predict(session, x1, x2, tile=256, margin=16)
    assert tiled.shape == want.shape
    np.testing.assert_allclose(tiled[48:112, 48:144], want[48:112, 48:144], atol=1e-4)


def test_pair_features_are_scene_normalised() -> None:
    """Pair features: z-scores of the date difference in units of the scene's own scatter, 0 where invalid."""
    before, after = _scene(6, (64, 80))
    ok = np.ones(before.shape[1:], bool)
    ok[:, :5] = False
    x1, x2 = normalise(before, ok), normalise(after, ok)
    feats = pair_features(x1, x2)
    assert feats.shape == (PAIR_CHANNELS, 64, 80) and feats.dtype == np.float32
    assert not feats[:, :, :5].any()  # invalid pixels (0 in the inputs) stay 0
    np.testing.assert_array_equal(feats, pair_features(x1, x2, ok))
    z = feats[: len(MODEL_BANDS)]
    assert np.allclose(np.median(z[:, ok], axis=1), 0.0, atol=1e-3)  # centred on the scene's median
    roof = np.zeros(ok.shape, bool)
    roof[40:56, 50:70] = True
    chi = feats[len(MODEL_BANDS) :]
    assert (chi[:, roof].mean(axis=1) > 5 * chi[:, ok & ~roof].mean(axis=1)).all()  # the new roof stands out
    # a uniform change of scale of the whole difference does not change the z-scores
    np.testing.assert_allclose(pair_features(x1 * 2, x2 * 2, ok)[: len(MODEL_BANDS)], z, atol=1e-4)


@pytest.mark.slow
def test_training_is_reproducible() -> None:
    """Two trainings with one seed give identical weights; another seed gives others."""
    torch = _need_torch()
    from sitewatch.train.fit import Config, train
    from sitewatch.train.oscd import City

    before, after = _scene(2)
    ok = np.ones(before.shape[1:], bool)
    label = np.zeros(ok.shape, np.int8)
    label[40:56, 50:70] = 1
    city = City("synthetic", normalise(before, ok), normalise(after, ok), ok, label, np.argwhere(label == 1))
    cfg = Config(steps=3, batch=2, crop=32, widths=(4, 8, 8, 8), threads=1)

    def weights(seed: int) -> list[np.ndarray]:
        from dataclasses import replace

        net = train([city], replace(cfg, seed=seed))
        return [p.detach().numpy().copy() for p in net.state_dict().values()]

    a, b, c = weights(0), weights(0), weights(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert torch.are_deterministic_algorithms_enabled()


# ------------------------------------------------------------------------------------------- detector


def test_detect_scores_and_masks() -> None:
    before, after = _scene()
    valid = np.ones(before.shape[1:], bool)
    valid[:, :8] = False
    det = get_detector("learned")
    cmap = det.detect(before, after, MODEL_BANDS, valid)
    assert cmap.score.shape == valid.shape and cmap.score.dtype == np.float32
    assert float(cmap.score.min()) >= 0.0 and float(cmap.score.max()) <= 1.0
    assert not cmap.score[:, :8].any() and not cmap.mask[:, :8].any()  # invalid: score 0, no change
    meta = load_metadata(default_model())
    assert cmap.threshold == meta["threshold"] and cmap.params["trained_on"] == meta["train_cities"]
    np.testing.assert_array_equal(cmap.mask, valid & (cmap.score > cmap.threshold))
    assert get_detector("learned", threshold=0.2).detect(before, after, MODEL_BANDS, valid).threshold == 0.2
    again = det.detect(before, after, MODEL_BANDS, valid)  # inference is deterministic
    np.testing.assert_array_equal(again.score, cmap.score)
    assert cmap.score[40:56, 50:70].mean() > cmap.score[valid].mean()  # the roof block scores above the rest


def test_tiles_bound_memory_and_cover_the_image() -> None:
    before, after = _scene(3, (150, 210))
    small = get_detector("learned", tile=64).detect(before, after, MODEL_BANDS)
    large = get_detector("learned", tile=256).detect(before, after, MODEL_BANDS)
    assert small.score.shape == large.score.shape == (150, 210)
    assert np.corrcoef(small.score.ravel(), large.score.ravel())[0, 1] > 0.9


def test_band_order_and_extra_bands() -> None:
    """Bands are found by name: a shuffled order with extra bands gives the same result."""
    before, after = _scene(4, (64, 64))
    names = ("B01", *MODEL_BANDS[::-1])
    perm = [MODEL_BANDS.index(n) for n in names[1:]]
    b2 = np.concatenate([before[:1], before[perm]])
    a2 = np.concatenate([after[:1], after[perm]])
    det = get_detector("learned")
    np.testing.assert_array_equal(det.detect(b2, a2, names).score, det.detect(before, after, MODEL_BANDS).score)


def test_bad_input() -> None:
    before, after = _scene(5, (64, 64))
    with pytest.raises(MissingBandError, match="B08"):  # the six-band model's first band missing
        get_detector("learned").detect(before[:4], after[:4], MODEL_BANDS[:4])
    with pytest.raises(MissingBandError, match="B05"):  # a ten-band model asked for
        get_detector("learned", model=str(default_model())).detect(before[:4], after[:4], MODEL_BANDS[:4])
    with pytest.raises(ValueError, match="threshold"):
        get_detector("learned", threshold=1.5)
    with pytest.raises(ValueError, match="tile"):
        get_detector("learned", tile=100)
    with pytest.raises(ImageryError, match="make train"):
        get_detector("learned", model="/nonexistent/model.onnx").detect(before, after, MODEL_BANDS)


def test_fit_picks_the_fold_model_without_the_held_out_city(tmp_path: Path) -> None:
    class P:
        def __init__(self, name: str, bands: tuple[str, ...] = ("B01", *MODEL_BANDS)) -> None:
            self.name, self.bands = name, bands

    for held in ("a", "b"):
        for prefix, bands in (("loco", MODEL_BANDS), ("loco6", SIX_BANDS)):
            (tmp_path / f"{prefix}-{held}.onnx").write_bytes(b"")
            (tmp_path / f"{prefix}-{held}.json").write_text(json.dumps(
                {"held_out": held, "train_cities": sorted({"a", "b", "c"} - {held}), "bands": list(bands)}
            ))
    det = get_detector("learned", folds=str(tmp_path))
    assert det.fit([P("b"), P("c")], held_out=P("a")) == {"model": str(tmp_path / "loco-a.onnx")}
    # a pair without the red edge is scored by the six-band fold, as detect() would run the six-band model
    assert det.fit([P("b")], held_out=P("a", SIX_BANDS)) == {"model": str(tmp_path / "loco6-a.onnx")}
    assert det.fit([P("a"), P("b")], held_out=P("c")) == {}  # the shipped model never saw "c"
    seen = load_metadata(default_model())["train_cities"][0]
    with pytest.raises(FileNotFoundError, match=f"without {seen}"):
        det.fit([P("a")], held_out=P(seen))  # no fold model without it, and the shipped model saw it


# ------------------------------------------------------------------------------------------ real data


def _oscd_city(city: str) -> tuple[Path, Path, Path]:
    root = get_settings().data
    root = root if root.is_absolute() else REPO / root
    images = root / "oscd" / "Onera Satellite Change Detection dataset - Images" / city
    label = root / "oscd" / "Onera Satellite Change Detection dataset - Train Labels" / city / "cm" / f"{city}-cm.tif"
    if not label.is_file():
        reason = f"OSCD city {city} not found under {root}; set SITEWATCH_DATA to the data folder"
        if CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return images / "imgs_1", images / "imgs_2", label


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.slow
def test_real_oscd_city_through_detect_pair(tmp_path: Path) -> None:
    """rennes through detect-pair: mask and probability written, and most of the labelled change found
    (the shipped model saw rennes in training: this guards against regressions, it is not a score)."""
    before, after, label_path = _oscd_city("rennes")
    res = detect_pair(before, after, tmp_path / "m.tif", method="learned", score_path=tmp_path / "s.tif")
    with rasterio.open(tmp_path / "m.tif") as m, rasterio.open(tmp_path / "s.tif") as s, rasterio.open(
        label_path
    ) as lab:
        mask, score, truth = m.read(1).astype(bool), s.read(1), lab.read(1) == 2
        assert json.loads(m.tags()["params"])["model_bands"] == list(MODEL_BANDS)
    assert res.method == "learned" and mask.shape == truth.shape == (339, 563)
    np.testing.assert_array_equal(mask, np.nan_to_num(score) > res.threshold)
    tp = int((mask & truth).sum())
    f1 = 2 * tp / (mask.sum() + truth.sum())
    assert f1 > 0.4


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.slow
def test_benchmark_scores_rennes_with_the_fold_model_that_never_saw_it() -> None:
    """`make bench` path: rennes is scored by benchmarks/models/loco-rennes.onnx, whose metadata says it was
    not trained on rennes, and the harness reproduces the score recorded by `make train` exactly."""
    import sys

    _oscd_city("rennes")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks import harness
    from benchmarks.datasets import discover

    folds = REPO / "benchmarks" / "models"
    pairs = [p for p in discover(None, ["oscd"]) if p.name == "rennes"]
    result = harness.run(pairs, [harness.DetectorSpec("learned", {"folds": str(folds)})], baseline=None)
    (row,) = result.rows
    assert row.error is None and row.fitted_params == {"model": str(folds / "loco-rennes.onnx")}
    assert "rennes" not in row.trained_on and len(row.trained_on) == 9
    recorded = json.loads((folds / "loco-rennes.json").read_text())["held_out_scores"]
    assert (row.tp, row.fp, row.fn, row.tn) == tuple(recorded[k] for k in ("tp", "fp", "fn", "tn"))
