"""`render --rgb`: the modalities' contributions as one map (text red, audio green, video blue),
normalised as the official `plot_surf_rgb`; real GL offscreen, pixels checked."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError
from tribe_stream.prediction import Predictions
from tribe_stream.surface.colors import rgb_colors
from tribe_stream.surface.mesh import load_brain_mesh
from tribe_stream.viewer.render import load_contributions, render_rgb_image


def thirds() -> list[np.ndarray]:
    """Front, middle and back bands of the left hemisphere (along y), gaps between them."""
    v = load_brain_mesh().vertices
    left = np.arange(N_VERTICES) < N_VERTICES_HEMI
    y = v[:, 1]
    lo, hi = y[left].min(), y[left].max()
    t = (y - lo) / (hi - lo)
    return [left & (t > 0.7), left & (np.abs(t - 0.5) < 0.15), left & (t < 0.3)]


def channels_for(order: tuple[int, int, int]) -> np.ndarray:
    """Channel `order[i]` is 2.0 on band i (front, middle, back), every other value 0."""
    c = np.zeros((N_VERTICES, 3), np.float32)
    for band, ch in zip(thirds(), order, strict=True):
        c[band, ch] = 2.0
    return c


def dominant(img: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels where one channel is bright and the other two well below it."""
    rgb = img[..., :3].astype(int)
    out = {}
    for i, name in enumerate(("red", "green", "blue")):
        others = np.delete(rgb, i, axis=-1).max(-1)
        out[name] = (rgb[..., i] > 110) & (rgb[..., i] > 3 * others + 10)
    return out


# -- the normalisation -------------------------------------------------------------------------


def test_rgb_colors_share_one_scale_topped_at_the_95th_percentile():
    rng = np.random.default_rng(0)
    text = rng.uniform(0.0, 1.0, 4000)
    c = rgb_colors(np.stack([text, 2 * text, np.zeros_like(text)], axis=1))
    # One scale for all three: audio (twice the text) is twice as bright until it clips ...
    unclipped = c[:, 1] < 1
    np.testing.assert_allclose(c[unclipped, 1], 2 * c[unclipped, 0], rtol=1e-5)
    # ... the top 5 % of all 12,000 values sit at 1, the smallest value at 0 (one-sided)
    assert abs((c == 1).mean() - 0.05) < 0.003
    assert c[:, 2].max() == 0 and (c[:, :2] == 0).sum() == 0
    # signed maps: the floor is the most negative value (as the official), so 0 is not black
    signed = rgb_colors(np.stack([text - 0.5, text - 0.5, text - 0.5], axis=1))
    assert signed.min() == 0 and signed[np.argmin(np.abs(text - 0.5)), 0] > 0.4
    # an absent modality (NaN) is black and out of the scale: 5 % of the 8,000 present values
    absent = rgb_colors(np.stack([text, 2 * text, np.full_like(text, np.nan)], axis=1))
    assert absent[:, 2].max() == 0 and abs((absent[:, :2] == 1).mean() - 0.05) < 0.003
    with pytest.raises(InputError, match="expected"):
        rgb_colors(np.zeros((10, 2)))


# -- pictures ----------------------------------------------------------------------------------


def test_each_modality_shows_its_colour_where_it_alone_drives_the_map(offscreen):  # noqa: F811
    """Text on the front band, audio in the middle, video at the back: red, green and blue
    there (anterior is on the left of a left lateral view); with the roles turned round, the
    same pixels take the new modality's colour; where nothing drives the map it is black."""
    a = render_rgb_image(channels_for((0, 1, 2)), views=["left"], size=(480, 360))[:-64]
    b = render_rgb_image(channels_for((2, 0, 1)), views=["left"], size=(480, 360))[:-64]
    da, db = dominant(a), dominant(b)
    cols = np.arange(a.shape[1])[None, :]
    centre = {k: float((cols * m).sum() / max(m.sum(), 1)) for k, m in da.items()}
    for k, m in da.items():
        assert m.sum() > 4000, (k, m.sum())
    assert centre["red"] < centre["green"] < centre["blue"], centre
    # the same patches, other modalities: front red -> blue, middle green -> red, back -> green
    for was, now in (("red", "blue"), ("green", "red"), ("blue", "green")):
        assert db[now][da[was]].mean() > 0.97, (was, now, db[now][da[was]].mean())
    lit = a[..., :3].max(-1) > 40
    assert (lit & ~(da["red"] | da["green"] | da["blue"])).sum() < 0.1 * lit.sum()


def test_render_rgb_command_reads_the_contribution_files(offscreen, tmp_path):  # noqa: F811
    """`predict --contributions` files in .h5: text drives the front band at second 1 only,
    video the back band at second 0 only, audio absent; `--second 1` shows red, no blue."""
    text, video = np.zeros((2, N_VERTICES), np.float32), np.zeros((2, N_VERTICES), np.float32)
    front, _, back = thirds()
    text[1, front], video[0, back] = 3.0, 3.0
    meta = {"stimulus_sha256": "ab", "model": {"untrained": True}}
    preds = Predictions(text + video, np.arange(2), dict(meta))
    for m, v in (("text", text), ("video", video)):
        preds.contributions[m] = Predictions(v, np.arange(2), {**meta, "contribution": m})
    preds.save(tmp_path / "clip.h5")
    out = tmp_path / "rgb.png"
    r = run_cli("render", str(tmp_path / "clip.h5"), "--rgb", "--second", "1",
                "--views", "left", "--size", "480x360", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "RGB of text, video; no audio contribution" in r.stdout
    from PIL import Image

    d = dominant(np.asarray(Image.open(out))[:-64])  # the cortex, not the legend below it
    assert d["red"].sum() > 4000 and d["blue"].sum() == 0 and d["green"].sum() == 0
    # the mean over time: both bands, at half strength each (the same for both)
    channels, caption, found = load_contributions([tmp_path / "clip.video.h5"])
    assert found == ["text", "video"] and "mean over time" in caption
    assert np.isnan(channels[:, 1]).all()  # audio absent
    np.testing.assert_array_equal(channels[:, 0], text.mean(0))
    np.testing.assert_array_equal(channels[:, 2], video.mean(0))
    # files of different runs are refused, and a file without contributions says how to make them
    other = Predictions(
        text, np.arange(2), {**meta, "stimulus_sha256": "cd", "contribution": "text"}
    )
    other.save(tmp_path / "x.text.npy")
    with pytest.raises(InputError, match="do not belong together"):
        load_contributions([tmp_path / "x.text.npy", tmp_path / "clip.video.h5"])
    np.save(tmp_path / "lone.npy", text)
    with pytest.raises(InputError, match="--contributions"):
        load_contributions([tmp_path / "lone.npy"])
