"""The viewer's pure parts, no window or GL needed: heads-up line, latency and drops, colormaps
and colour limits, views and camera fits, size and map parsing, key bindings, fades.

(The window itself is tested in test_viewer.py under Xvfb, pictures in test_render.py.)
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.surface.colors import (
    COLORMAPS,
    LUT_SIZE,
    ColorLimits,
    get_colormap,
    map_colors,
    robust_limits,
    sulcal_gray,
)
from tribe_stream.surface.views import VIEWS, Panel, fit_camera, grid_shape, panels_for
from tribe_stream.viewer.hud import (
    DROP_UNITS,
    drops_text,
    end_to_end_latency,
    hud_line,
    stream_drops,
)
from tribe_stream.viewer.render import check_values, load_map, parse_size

# -- heads-up line ------------------------------------------------------------------------------

HEADER = {
    "second": 42,
    "stimulus": [42.0, 43.0],
    "bold_time": 47.0,
    "t0_wall": 1000.0,
    "publish_wall": 1043.5,
    "counters": {"frames_dropped": 2, "audio_dropped": 1, "errors": 5},
}


def test_hud_line_reports_time_latency_and_drops():
    lat = end_to_end_latency(HEADER, now_wall=1043.8)
    assert lat[1] == "stimulus end" and abs(lat[0] - 0.8) < 1e-9
    no_t0 = end_to_end_latency({**HEADER, "t0_wall": None}, now_wall=1043.8)
    assert no_t0[1] == "publish" and abs(no_t0[0] - 0.3) < 1e-9
    status = {"counters": {"publisher.dropped": 4, "frames_dropped": 2}}
    line = hud_line(HEADER, lat, lost=1, skipped=3, fps=59.6, status=status)
    for part in (
        "second 42",
        "stimulus 42.0-43.0 s",
        "BOLD 47.0 s",
        "latency 800 ms",
        "drops 2 frames, 4 messages, 1 other  lost 1  skipped 3",
        "60 fps",
    ):
        assert part in line, line
    assert line.index("second") < line.index("stimulus") < line.index("BOLD") < line.index("fps")
    assert "(publish)" not in line
    assert hud_line(None, fps=12.4) == "no prediction yet  |  12 fps"


def test_latency_falls_back_from_stimulus_end_to_publish_to_nothing():
    # A stimulus that is not a (start, end) pair cannot give the capture time.
    assert end_to_end_latency({**HEADER, "stimulus": [42.0]}, now_wall=1044.0)[1] == "publish"
    assert end_to_end_latency({**HEADER, "stimulus": "42-43"}, now_wall=1044.0)[1] == "publish"
    # Integers are times too; the result is seconds, negative if the clocks disagree.
    lat, ref = end_to_end_latency({"t0_wall": 1000, "stimulus": (0, 1)}, now_wall=1000.5)
    assert ref == "stimulus end" and lat == pytest.approx(-0.5)
    assert end_to_end_latency({"second": 1}, now_wall=5.0) == (None, "")
    assert end_to_end_latency({"publish_wall": "soon"}, now_wall=5.0) == (None, "")


def test_drops_are_counted_by_what_they_count():
    """Before: one number added audio samples, frames, chunks and bins (`drops 30406` for about
    2 s of sound). Now each unit apart; a source's dropped chunks are its frames and samples."""
    none = stream_drops()
    assert set(none) == {u for u, _ in DROP_UNITS} and not any(none.values())
    assert drops_text(stream_drops(None, {})) == "drops none"
    live = {
        "source0.dropped_samples": 30400,  # 16 kHz samples: 1.9 s of sound
        "source0.dropped_frames": 3,
        "source0.dropped_chunks": 7,  # the 3 frames and the sound's chunks: not again
        "source0.skipped_samples": 32000,  # before the stream began: not a drop
        "dropped_bins": 2,
        "dropped_seconds": 1,
        "errors": 5,
        "words": 9,
    }
    d = stream_drops(live, {"publisher.dropped": 4})
    assert d == {
        "sound_s": pytest.approx(1.9),
        "frames": 3,
        "bins": 2,
        "seconds": 1,
        "messages": 4,
        "other": 0,
    }
    assert drops_text(d) == "drops 1.9 s of sound, 3 frames, 2 bins, 1 seconds, 4 messages"
    # Non-numbers and negative values (a reset counter) are not added.
    assert stream_drops({"a_dropped": "3", "b_dropped": -4, "c_dropped": 1.0})["other"] == 1
    # A name in both sets counts once, from the later (newer) set.
    assert stream_drops({"dropped_bins": 2}, {"dropped_bins": 5})["bins"] == 5


def test_the_terminal_progress_line_gives_drops_by_unit_too():
    """Before: `run`/`demo` printed `drops N`, bins, seconds and chunks added together."""
    import numpy as np

    from tribe_stream.stream.progress import ProgressLine
    from tribe_stream.types import Prediction

    counters = {"dropped_bins": 2, "dropped_seconds": 1, "source0.dropped_chunks": 4,
                "source0.dropped_frames": 4, "words": 3}  # fmt: skip
    pred = Prediction(1, np.zeros(4, np.float32), (1.0, 2.0), 6.0, {}, counters)
    line = ProgressLine(total=5).line(pred)
    assert "drops 4 frames, 2 bins, 1 seconds  errors 0" in line, line
    pred.counters = {}
    assert "drops none" in ProgressLine().line(pred)


def test_hud_line_without_optional_fields():
    lat = end_to_end_latency({"publish_wall": 10.0}, now_wall=10.0456)
    line = hud_line({"second": 3}, lat, fps=30.2)
    assert (
        line == "second 3  |  latency 46 ms (publish)  |  drops none  lost 0  skipped 0  |  30 fps"
    )
    # Heartbeat drops count even when the prediction carries no counters.
    line = hud_line({"second": 3}, status={"counters": {"publisher.dropped": 6}})
    assert "drops 6 messages" in line and "latency" not in line


# -- colormaps ----------------------------------------------------------------------------------


def test_every_colormap_is_a_256_entry_opaque_lut():
    for name in COLORMAPS:
        cm = get_colormap(name)
        assert cm.name == name
        assert cm.lut.shape == (LUT_SIZE, 4) and cm.lut.dtype == np.float32
        assert np.all((cm.lut >= 0) & (cm.lut <= 1)) and np.all(cm.lut[:, 3] == 1)
        assert len(np.unique(cm.lut, axis=0)) > 100, name  # a ramp, not a few flat colours
    assert [get_colormap(n).diverging for n in COLORMAPS] == [True, True, False, False, False]
    with pytest.raises(InputError, match="cold_hot, coolwarm, hot, viridis, fire"):
        get_colormap("jet")


def test_colormaps_are_the_libraries_own():
    import matplotlib

    x = np.linspace(0, 1, LUT_SIZE)
    for name in ("coolwarm", "hot", "viridis"):
        want = matplotlib.colormaps[name](x).astype(np.float32)
        assert np.array_equal(get_colormap(name).lut, want), name
    from vispy.color import get_colormap as vispy_colormap

    fire = np.asarray(vispy_colormap("fire").map(x[:, None]), np.float32)
    assert np.array_equal(get_colormap("fire").lut, fire)


def test_cold_hot_is_nilearns():
    pytest.importorskip("nilearn.plotting", reason="nilearn's plotting needs matplotlib")
    import matplotlib
    import nilearn.plotting.cm  # noqa: F401 - registers cold_hot with matplotlib

    want = matplotlib.colormaps["cold_hot"](np.linspace(0, 1, LUT_SIZE)).astype(np.float32)
    lut = get_colormap("cold_hot").lut
    assert np.array_equal(lut, want)
    # Black at zero, white at both ends, blue below and red above: the two halves mirror each
    # other with red and blue swapped.
    assert lut[127, :3].max() < 0.1 and lut[128, :3].max() < 0.1
    assert np.all(lut[[0, -1], :3] == 1)
    assert np.array_equal(lut[:128, :3], lut[:127:-1, 2::-1])
    assert lut[64, 2] > lut[64, 0] + 0.5 and lut[191, 0] > lut[191, 2] + 0.5


def test_without_matplotlib_the_error_says_how_to_install_it(tmp_path):
    pred = tmp_path / "pred.npy"
    np.save(pred, np.zeros(N_VERTICES, np.float32))
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # as if it were not installed
        "from tribe_stream.cli import main\n"
        f"sys.exit(main(['render', {str(pred)!r}, '--out', {str(tmp_path / 'x.png')!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "matplotlib" in r.stderr and "pip install" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.png").exists()
    # vispy's own map still builds without matplotlib.
    code = "import sys; sys.modules['matplotlib'] = None\n" + (
        "from tribe_stream.surface.colors import get_colormap; print(get_colormap('fire').name)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "fire", r.stderr


# -- colour limits and mapping ------------------------------------------------------------------


def test_robust_limits_in_every_shape_and_edge_case():
    v = np.linspace(-4.0, 2.0, 601).reshape(601, 1)  # any shape
    div = robust_limits(v, diverging=True, percentile=100, threshold_percentile=0)
    assert (div.vmin, div.vmax) == (-4.0, 4.0) and div.threshold == pytest.approx(0.0, abs=1e-12)
    seq = robust_limits(v, diverging=False, percentile=100, threshold_percentile=50)
    assert seq.vmax == 2.0 and seq.vmin == seq.threshold == pytest.approx(-1.0)
    # An explicit threshold wins, but never above vmax.
    assert robust_limits(v, threshold=0.5).threshold == 0.5
    assert robust_limits(v, percentile=100, threshold=10.0).threshold == 4.0
    # Nothing finite, or all zero: a unit range that still maps colours.
    for empty in (np.array([]), np.full(4, np.nan), np.array([np.inf, -np.inf])):
        assert robust_limits(empty) == ColorLimits(-1.0, 1.0, 0.0)
        assert robust_limits(empty, diverging=False) == ColorLimits(0.0, 1.0, 0.0)
    flat = robust_limits(np.full(10, 3.0), diverging=False)
    assert flat.vmin == flat.threshold == 3.0 and flat.vmax == 6.0
    assert robust_limits(np.zeros(10), diverging=False) == ColorLimits(0.0, 1.0, 0.0)


def test_limits_blend_linearly_and_clip_the_weight():
    a, b = ColorLimits(-1.0, 1.0, 0.2), ColorLimits(-3.0, 3.0, 1.0)
    assert a.blend(b, 0.0) == a and a.blend(b, 1.0) == b
    q = a.blend(b, 0.25)
    assert (q.vmin, q.vmax, q.threshold) == pytest.approx((-1.5, 1.5, 0.4))
    assert a.blend(b, 7.0) == b and a.blend(b, -1.0) == a


def test_sulcal_gray_is_light_on_gyri_and_dark_in_sulci():
    sulc = np.linspace(-2.0, 2.0, 101)
    g = sulcal_gray(sulc, light=0.8, dark=0.4)
    assert g.dtype == np.float32 and g.shape == sulc.shape
    assert np.all(np.diff(g) < 0)  # deeper is darker, smoothly
    assert 0.4 < g.min() < 0.42 and 0.78 < g.max() < 0.8 and g[50] == pytest.approx(0.6)
    assert np.allclose(sulcal_gray(np.zeros(5)), 0.61)  # flat: halfway between the defaults


def test_map_colors_clips_and_hides_inf():
    cm = get_colormap("coolwarm")
    values = np.array([-10.0, 10.0, np.inf, -np.inf, 0.9, 1.1])
    rgba = map_colors(values, np.full(6, 0.3, np.float32), ColorLimits(-2, 2, 1.0), cm)
    assert rgba.shape == (6, 4) and rgba.dtype == np.float32
    assert np.array_equal(rgba[0], cm.lut[0]) and np.array_equal(rgba[1], cm.lut[-1])
    assert np.allclose(rgba[[2, 3, 4], :3], 0.3)  # inf and inside the threshold: background
    assert np.array_equal(rgba[5], cm.lut[round((1.1 + 2) / 4 * 255)])
    with pytest.raises(InputError, match="shape"):
        map_colors(values, np.zeros(5, np.float32), ColorLimits(-2, 2, 1.0), cm)


# -- views --------------------------------------------------------------------------------------


def test_views_name_their_panels():
    assert list(VIEWS) == ["left", "right", "medial", "dorsal", "ventral", "both"]
    both = panels_for(["both"])
    assert [p.label for p in both] == [
        "left lateral",
        "right lateral",
        "left medial",
        "right medial",
    ]
    assert [p.hemi for p in both] == ["left", "right", "left", "right"]
    # Lateral and medial views of one hemisphere look from opposite sides.
    assert both[0].azimuth == -both[2].azimuth and both[1].azimuth == -both[3].azimuth
    assert [p.label for p in panels_for(["dorsal", "left", "dorsal"])] == [
        "dorsal",
        "left lateral",
        "dorsal",
    ]
    for panels in VIEWS.values():
        for p in panels:  # screen right and up: unit length, at right angles
            r, u = np.asarray(p.right, float), np.asarray(p.up, float)
            assert np.linalg.norm(r) == 1 and np.linalg.norm(u) == 1 and r @ u == 0
    with pytest.raises(InputError, match="unknown view 'top'"):
        panels_for(["top"])
    with pytest.raises(InputError, match="no view"):
        panels_for([])


def test_grid_shapes():
    want = {1: (1, 1), 2: (1, 2), 3: (1, 3), 4: (2, 2), 5: (2, 3), 6: (2, 3), 7: (3, 3)}
    assert {n: grid_shape(n) for n in want} == want


def test_fit_camera_covers_the_box_along_the_shorter_side():
    # A box 200 mm front to back (y), 100 mm high (z), seen from the left (right = -y, up = z).
    corners = np.array([[x, y, z] for x in (0, 50) for y in (-100, 100) for z in (10, 110)], float)
    side = Panel("side", "left", -90.0, 0.0, (0, -1, 0), (0, 0, 1))
    centre, scale = fit_camera(corners, side, aspect=1.0, margin=1.0)
    assert centre == (25.0, 0.0, 60.0) and scale == 200.0  # width limits a square box
    assert fit_camera(corners, side, aspect=4.0, margin=1.0)[1] == 100.0  # wide: height limits
    assert fit_camera(corners, side, aspect=1.5, margin=1.0)[1] == pytest.approx(200 / 1.5)
    # Tall (aspect < 1): the scale is along the width, and the height must fit in scale / aspect.
    front = Panel("front", "both", 0.0, 0.0, (1, 0, 0), (0, 0, 1))  # 50 wide, 100 high
    assert fit_camera(corners, front, aspect=0.25, margin=1.0)[1] == 50.0
    assert fit_camera(corners, front, aspect=0.8, margin=1.0)[1] == pytest.approx(80.0)
    assert fit_camera(corners, side, aspect=1.0)[1] == pytest.approx(212.0)  # default margin


# -- sizes and maps -----------------------------------------------------------------------------


def test_parse_size():
    assert parse_size("1200x900") == (1200, 900) and parse_size("801X601") == (801, 601)
    assert parse_size("64x8192") == (64, 8192)
    for bad in ("big", "1200", "1200x", "x900", "12x34x56", "1.5x900"):
        with pytest.raises(InputError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    for out in ("63x900", "1200x8193", "0x0", "-100x100"):
        with pytest.raises(InputError, match="64..8192"):
            parse_size(out)


def test_check_values_and_load_map(tmp_path):
    assert check_values(np.arange(N_VERTICES), "v").dtype == np.float32
    with pytest.raises(InputError, match=r"\(2, 20484\)"):
        check_values(np.zeros((2, N_VERTICES)), "v")
    with pytest.raises(InputError, match="numbers"):
        check_values(np.array(["a"] * N_VERTICES), "v")
    rows = np.stack([np.full(N_VERTICES, k, np.float32) for k in range(3)])
    np.save(tmp_path / "rows.npy", rows)
    v, caption = load_map(tmp_path / "rows.npy", second=2)
    assert v[0] == 2 and caption == "rows.npy  second 2"
    assert load_map(tmp_path / "rows.npy")[0][0] == 0  # the first row by default
    assert load_map(tmp_path / "rows.npy", second=-1)[0][0] == 2  # numpy's negative index
    with pytest.raises(InputError, match="has 3 rows; --second 3"):
        load_map(tmp_path / "rows.npy", second=3)
    np.save(tmp_path / "one.npy", rows[1])
    assert load_map(tmp_path / "one.npy") == (pytest.approx(rows[1]), "one.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a plain numpy array"):
        load_map(tmp_path / "objects.npy")
    with pytest.raises(InputError, match="does not exist"):
        load_map(tmp_path / "missing.npy")


def test_view_without_a_display_says_how_to_get_one():
    r = run_cli("view", "tcp://127.0.0.1:1", env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert r.returncode == 2
    assert "xvfb-run" in r.stderr and "Traceback" not in r.stderr


def test_virtual_display_without_xvfb_says_what_to_install(monkeypatch):
    from tribe_stream.viewer.xvfb import XvfbError, virtual_display

    monkeypatch.setenv("PATH", "")
    with pytest.raises(XvfbError, match="apt-get install xvfb"):
        with virtual_display():
            pass


# -- live window logic --------------------------------------------------------------------------


def test_keys_select_every_view():
    from tribe_stream.viewer.live import VIEW_KEYS

    assert [VIEW_KEYS[str(i)] for i in range(1, 7)] == list(VIEWS)
    assert {k: VIEW_KEYS[k] for k in "lrmdvb"} == {
        "l": "left",
        "r": "right",
        "m": "medial",
        "d": "dorsal",
        "v": "ventral",
        "b": "both",
    }
    assert set(VIEW_KEYS.values()) <= set(VIEWS)
    assert not set(VIEW_KEYS) & {"c", "s", "h", "q", "[", "]"}  # those keys do other things


def test_fixed_vmax_keeps_the_threshold_below_it():
    from tribe_stream.viewer.live import _fixed_vmax

    assert _fixed_vmax(ColorLimits(-2, 2, 0.5), 4.0, True) == ColorLimits(-4.0, 4.0, 0.5)
    assert _fixed_vmax(ColorLimits(-2, 2, 3.0), 1.0, True) == ColorLimits(-1.0, 1.0, 1.0)
    assert _fixed_vmax(ColorLimits(0.5, 2, 0.5), 4.0, False) == ColorLimits(0.5, 4.0, 0.5)


def test_frame_rate_counts_the_last_second_only():
    from tribe_stream.viewer.live import FrameStats

    stats = FrameStats()
    now = time.perf_counter()
    stats.frame_times = [now - 5 + i * 0.1 for i in range(10)]  # long ago
    stats.frame_times += [now - 0.9 + i * 0.03 for i in range(30)]  # 30 in the last second
    assert stats.fps() == 30.0
    assert stats.fps(window_s=2.0) == 15.0


def test_fades_ease_in_and_out():
    from tribe_stream.viewer.compositor import Compositor, smoothstep

    xs = np.linspace(-0.5, 1.5, 81)
    ys = [smoothstep(x) for x in xs]
    assert ys[0] == 0.0 and ys[-1] == 1.0 and smoothstep(0.5) == 0.5
    assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))
    assert smoothstep(0.01) < 0.001 and smoothstep(0.99) > 0.999  # flat at both ends
    comp = Compositor(transition_s=0.5)  # builds GL programs lazily: no context needed yet
    comp.fade_start = 100.0
    assert comp.mix(100.0) == 0.0 and comp.mix(100.25) == 0.5 and comp.mix(101.0) == 1.0
    comp.transition_s = 0.0
    assert comp.mix(100.0) == 1.0  # no transition: jump
    assert not comp.busy
    comp.invalidate(fade=True)
    assert comp.busy  # a new map waits to be drawn: the viewer holds newer data meanwhile


def test_colorbar_tick_labels():
    from tribe_stream.viewer.scene import _fmt

    cases = {0.0: "0", 3.4: "3.4", -1.2: "-1.2", 12.0: "12", 12.5: "12.5", 250.4: "250"}
    cases.update({0.00022: "0.00022", -0.5: "-0.5", 1.0: "1"})
    assert {v: _fmt(v) for v in cases} == cases
