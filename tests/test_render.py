"""Offscreen pictures and movies of the cortex: real GL (Mesa EGL), real PyAV encoding.

Pixels are checked for what a person would see: a cortex (not a blank or one-colour image),
warm colours where the values are positive and cool ones where they are negative, the grey
sulcal background where they are inside the threshold.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from conftest import run_cli

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.surface.colors import ColorLimits, get_colormap, map_colors, robust_limits
from tribe_stream.surface.mesh import load_brain_mesh
from tribe_stream.surface.views import VIEWS, fit_camera, grid_shape, panels_for

BG = np.array([18, 18, 23])  # scene.BACKGROUND in 8-bit


def classify(img: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of cortex (not background), warm, cool and grey pixels of an RGB(A) uint8 image."""
    rgb = img[..., :3].astype(int)
    r, b = rgb[..., 0], rgb[..., 2]
    cortex = np.abs(rgb - BG).sum(-1) > 40
    warm = cortex & (r > b + 60) & (r > 120)
    cool = cortex & (b > r + 60) & (b > 120)
    gray = cortex & (np.ptp(rgb, axis=-1) < 12)
    return {"cortex": cortex, "warm": warm, "cool": cool, "gray": gray}


def lateralised() -> np.ndarray:
    """+1..+3 on the left hemisphere, -1..-3 on the right (a smooth pattern, no zeros)."""
    mesh = load_brain_mesh()
    wave = 2.0 + np.sin(mesh.vertices[:, 1] / 15.0)
    v = wave.copy()
    v[N_VERTICES_HEMI:] *= -1
    return v.astype(np.float32)


# -- surface -----------------------------------------------------------------------------------


def test_half_inflated_mesh_sits_between_pial_and_inflated():
    pial, half, infl = (load_brain_mesh(x) for x in (0.0, 0.5, 1.0))
    assert half.vertices.shape == (N_VERTICES, 3) and half.faces.shape == (40960, 3)
    assert half.faces[: len(half.faces) // 2].max() < N_VERTICES_HEMI  # left faces, left rows
    assert half.faces[len(half.faces) // 2 :].min() >= N_VERTICES_HEMI
    # The midline gap: the left hemisphere is wholly left of the right one at every inflation.
    for m in (pial, half, infl):
        assert m.vertices[:N_VERTICES_HEMI, 0].max() < m.vertices[N_VERTICES_HEMI:, 0].min()

    # Half inflated is smoother than pial: shorter mean distance from each vertex to the surface's
    # bounding-box centre spread (inflated surfaces are rounder) -> compare sulcal roughness.
    def roughness(m):
        e = m.vertices[m.faces[:, 0]] - m.vertices[m.faces[:, 1]]
        n = m.normals[m.faces[:, 0]] - m.normals[m.faces[:, 1]]
        return float(np.mean(np.linalg.norm(n, axis=1) / np.linalg.norm(e, axis=1)))

    assert roughness(infl) < roughness(half) < roughness(pial)
    # Normals point outwards for most of each hemisphere.
    for hemi in ("left", "right"):
        rows = half.vertices[half.hemi_vertices(hemi)]
        out = rows - rows.mean(0)
        assert np.mean(np.sum(out * half.normals[half.hemi_vertices(hemi)], 1) > 0) > 0.8
    assert half.sulc.shape == (N_VERTICES,) and half.sulc.std() > 0.1


def test_every_view_fits_its_vertices():
    mesh = load_brain_mesh()
    for name in VIEWS:
        for panel in panels_for([name]):
            v = (
                mesh.vertices
                if panel.hemi == "both"
                else mesh.vertices[mesh.hemi_vertices(panel.hemi)]
            )
            centre, scale = fit_camera(v, panel, aspect=1.5)
            right, up = np.asarray(panel.right), np.asarray(panel.up)
            half_w, half_h = scale * 1.5 / 2, scale / 2
            assert np.all(np.abs((v - centre) @ right) <= half_w)
            assert np.all(np.abs((v - centre) @ up) <= half_h)
    assert grid_shape(4) == (2, 2) and grid_shape(3) == (1, 3) and grid_shape(5) == (2, 3)


def test_robust_limits_ignore_outliers_and_nan():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(N_VERTICES)
    v[:10] = 1e6  # a few broken vertices must not wash out the map
    v[10:20] = np.nan
    lim = robust_limits(v, diverging=True, percentile=98, threshold_percentile=50)
    assert 2.0 < lim.vmax < 3.0 and lim.vmin == -lim.vmax
    assert 0.5 < lim.threshold < 0.8  # median |z| of a normal is 0.674
    seq = robust_limits(v, diverging=False, threshold_percentile=50)
    assert seq.vmin == seq.threshold and abs(seq.threshold) < 0.1 and seq.vmax > 1.5
    zero = robust_limits(np.zeros(5))
    assert zero.vmax > zero.vmin  # a usable range even for a flat map


def test_map_colors_threshold_background_and_nan():
    gray = np.full(8, 0.5, np.float32)
    values = np.array([-3.0, -0.5, 0.0, 0.5, 3.0, np.nan, -1.5, 1.5])
    cm = get_colormap("cold_hot")
    rgba = map_colors(values, gray, ColorLimits(-3, 3, 1.0), cm)
    background = [1, 2, 3, 5]  # inside the threshold, and NaN
    assert np.allclose(rgba[background, :3], 0.5)
    assert np.allclose(rgba[0], cm.lut[0]) and np.allclose(rgba[4], cm.lut[-1])
    assert np.array_equal(rgba[[6, 7]], cm.lut[[64, 191]])  # (v - vmin) / span of 255 steps
    assert rgba[7, 0] > rgba[7, 2] + 0.5 and rgba[6, 2] > rgba[6, 0] + 0.5  # hot red, cold blue
    hot = get_colormap("hot")
    seq = map_colors(values, gray, ColorLimits(1.0, 3.0, 1.0), hot)
    assert np.allclose(seq[[0, 1, 2, 3, 5, 6], :3], 0.5) and not np.allclose(seq[4, :3], 0.5)
    assert np.array_equal(seq[7], hot.lut[64])


# -- pictures -----------------------------------------------------------------------------------


def test_render_puts_each_hemisphere_and_sign_where_it_belongs(offscreen):
    from tribe_stream.viewer.render import render_image

    img = render_image(lateralised(), views=("left", "right"), size=(800, 400))
    assert img.shape == (400, 800, 4) and img.dtype == np.uint8
    panels = img[:-64]  # above the colorbar
    left, right = classify(panels[:, :400]), classify(panels[:, 400:])
    assert left["cortex"].mean() > 0.25 and right["cortex"].mean() > 0.25
    # Positive values on the left hemisphere are warm, negative on the right are cool.
    assert left["warm"].sum() > 20 * max(left["cool"].sum(), 1)
    assert right["cool"].sum() > 20 * max(right["warm"].sum(), 1)
    # The colorbar runs from cool to warm, left to right.
    bar = classify(img[-64:])
    cols = np.nonzero(bar["warm"].any(0))[0], np.nonzero(bar["cool"].any(0))[0]
    assert cols[0].size and cols[1].size and cols[1].mean() < cols[0].mean()


def test_render_flat_map_shows_only_the_sulcal_background(offscreen):
    from tribe_stream.viewer.render import render_image

    img = render_image(np.zeros(N_VERTICES, np.float32), views=("dorsal",), size=(400, 400))
    c = classify(img[:-64])
    assert c["cortex"].mean() > 0.2
    assert c["warm"].sum() == 0 and c["cool"].sum() == 0
    shades = np.unique(img[:-64][c["gray"]][:, 0])
    assert shades.size > 40  # sulcal depth and lighting, not a flat silhouette


def test_render_command_writes_png_of_requested_size(offscreen, tmp_path: Path):
    from PIL import Image

    pred = tmp_path / "pred.npy"
    np.save(pred, np.stack([np.zeros(N_VERTICES, np.float32), lateralised()]))
    out = tmp_path / "brain.png"
    r = run_cli(
        "render",
        str(pred),
        "--out",
        str(out),
        "--second",
        "1",
        "--size",
        "900x420",
        "--views",
        "left",
        "right",
        "dorsal",
        "--cmap",
        "coolwarm",
    )
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (420, 900, 3)
    c = classify(img)
    assert c["cortex"].mean() > 0.2
    assert c["warm"].sum() > 1000 and c["cool"].sum() > 1000
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 500  # a picture, not flat fills


def test_render_command_explains_bad_input(tmp_path: Path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 1000), np.float32))
    r = run_cli("render", str(bad), "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2
    assert "20484" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("render", str(bad), "--out", str(tmp_path / "x.png"), "--size", "big")
    assert r.returncode == 2 and "WIDTHxHEIGHT" in r.stderr


# -- movies -------------------------------------------------------------------------------------


def write_recording(path: Path, n: int, flip: bool = True) -> None:
    """A real recording (RecordingWriter) of n seconds, through the recorder's decode path.

    flip: the map goes from left-warm to left-cool; else it grows from 1x to n x."""
    from tribe_stream.protocol import decode, encode_prediction, stream_metadata
    from tribe_stream.recording import RecordingWriter
    from tribe_stream.types import Prediction

    base = lateralised()
    w = RecordingWriter(path, stream_metadata(stream_id="test", dtype="float16", model={}))
    for k in range(n):
        v = base * ((1 - 2 * k / max(n - 1, 1)) if flip else (1 + k))
        frames = encode_prediction(
            Prediction(k, v, (k, k + 1), k + 5),
            stream_id="test",
            session="s1",
            seq=k,
            publish_wall=time.time(),
        )
        w.add_prediction(decode(frames))
    w.close()


def write_stimulus(path: Path, seconds: float) -> None:
    import av

    src = av.open("testsrc=size=320x240:rate=8", format="lavfi")
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i, f in enumerate(src.decode(video=0)):
            if i >= seconds * 8:
                break
            for p in s.encode(av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), "rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    src.close()


def decode_all(path: Path) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(str(path)) as c:
        rate = float(c.streams.video[0].average_rate)
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)], rate


def test_movie_one_frame_per_second(offscreen, tmp_path: Path):
    rec = tmp_path / "rec.h5"
    write_recording(rec, 4)
    out = tmp_path / "brain.mp4"
    r = run_cli("movie", str(rec), "--out", str(out), "--size", "480x320", "--views", "left")
    assert r.returncode == 0, r.stderr
    frames, rate = decode_all(out)
    assert len(frames) == 4 and rate == 1.0
    assert all(f.shape == (320, 480, 3) for f in frames)
    first, last = classify(frames[0][:-64]), classify(frames[-1][:-64])
    assert first["cortex"].mean() > 0.2
    # The left hemisphere goes from positive (warm) to negative (cool) over the recording.
    assert first["warm"].sum() > 10 * max(first["cool"].sum(), 1)
    assert last["cool"].sum() > 10 * max(last["warm"].sum(), 1)


def test_movie_interpolated_beside_the_stimulus(offscreen, tmp_path: Path):
    rec, stim = tmp_path / "rec.h5", tmp_path / "stim.mp4"
    write_recording(rec, 3, flip=False)
    write_stimulus(stim, 3)
    out = tmp_path / "brain.mp4"
    r = run_cli(
        "movie",
        str(rec),
        "--out",
        str(out),
        "--size",
        "640x240",
        "--fps",
        "4",
        "--interpolate",
        "--stimulus",
        str(stim),
        "--views",
        "left",
    )
    assert r.returncode == 0, r.stderr
    frames, rate = decode_all(out)
    assert len(frames) == 12 and rate == 4.0 and frames[0].shape == (240, 640, 3)
    stim_half, brain_half = frames[5][:, :320], frames[5][:, 320:]
    # testsrc's colour bars on the left: many distinct saturated colours.
    assert np.ptp(stim_half.reshape(-1, 3), axis=0).min() > 150
    assert classify(brain_half[:-64])["cortex"].mean() > 0.15
    # Interpolation moves the picture every frame between the first and last second's centres
    # (t = 0.5 .. 2.5 s), not only once a second; before and after, it holds.
    brain = [f[:, 320:].astype(int) for f in frames]
    diffs = [np.abs(brain[i + 1] - brain[i]).mean() for i in range(11)]
    assert all(d > 0.5 for d in diffs[2:10]), diffs
    assert diffs[0] < 0.5 and diffs[10] < 0.5, diffs


def test_movie_frame_times_step_and_interpolate():
    from tribe_stream.viewer.movie import frame_values

    values = np.stack([np.full(3, 0.0), np.full(3, 10.0), np.full(3, 40.0)])
    seconds = np.array([0, 1, 3])  # second 2 is missing (a gap)
    times = np.array([0.0, 0.5, 1.0, 2.5, 3.9])
    steps = [(round(v[0], 3), s) for _, v, s in frame_values(values, seconds, times, False)]
    assert steps == [(0.0, 0), (0.0, 0), (10.0, 1), (10.0, 1), (40.0, 3)]
    interp = [round(v[0], 3) for _, v, _ in frame_values(values, seconds, times, True)]
    assert interp == [0.0, 0.0, 5.0, 25.0, 40.0]


def test_view_cameras_show_what_their_panels_declare(offscreen):
    """Each panel's `right`/`up` (RAS) really point right/up on screen: catches a flipped or
    mirrored camera (e.g. a left view showing the frontal lobe on the wrong side)."""
    from tribe_stream.viewer.scene import BrainScene

    scene = BrainScene(views=tuple(VIEWS), size=(900, 600))
    try:
        scene.render()
        for box, panel, brain, _ in scene._boxes:
            tr = brain.get_transform("visual", "canvas")
            c = np.asarray(box.camera.center)
            p0, pr, pu = (
                tr.map(c + d)[:2]
                for d in (0, 40 * np.asarray(panel.right), 40 * np.asarray(panel.up))
            )
            assert pr[0] - p0[0] > 20 and abs(pr[1] - p0[1]) < 2, panel.label
            assert p0[1] - pu[1] > 20 and abs(pu[0] - p0[0]) < 2, panel.label  # canvas y is down
        left = next(p for _, p, _, _ in scene._boxes if p.label == "left lateral")
        assert left.right == (0, -1, 0)  # anterior (+y) on the left of a left lateral view
    finally:
        scene.close()


def test_the_banner_never_covers_a_panel_name(offscreen):
    """Before: "waiting for stream" sat on "right medial" (the bottom-right panel's name was at
    its top-left corner, the middle of the picture, where the banner is)."""
    from tribe_stream.viewer.scene import BrainScene, Layout

    def picture(labels: bool, banner: str) -> np.ndarray:
        sc = BrainScene(
            views=("both",), size=(1280, 800), layout=Layout(hud=36, colorbar=64, label=labels)
        )
        try:
            sc.set_banner(banner)
            return sc.render()[..., :3].astype(int)
        finally:
            sc.close()

    bare = picture(False, "")
    names = np.abs(picture(True, "") - bare).sum(-1) > 30
    banner = np.abs(picture(False, "waiting for stream\ntcp://127.0.0.1:5556") - bare).sum(-1) > 30
    assert names.sum() > 100 and banner.sum() > 100  # both were drawn
    ys, xs = np.nonzero(banner)
    near = np.zeros_like(banner)  # the banner's box, 12 px around it
    near[max(0, ys.min() - 12) : ys.max() + 13, max(0, xs.min() - 12) : xs.max() + 13] = True
    assert not (names & near).any(), "a panel name lies under the banner"
