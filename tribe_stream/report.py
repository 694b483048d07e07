"""One self-contained HTML page of a prediction, aligned to its stimulus.

    write_report("clip.npy", "clip.html", stimulus="clip.mp4", atlas=atlas)

The page holds, everything inlined (pictures as `data:` URIs, plots as inline SVG, no script, no
external address): a row per shown second (the stimulus frame in the middle of that second,
PyAV; the cortex, rendered offscreen by `viewer/`, colour limits fixed over the whole file;
the words spoken from that second until the next row, from `NAME.words.tsv`), the time courses
of the regions of an atlas (the `REGIONS_SHOWN` most active; without an atlas, each hemisphere's
mean), and, when `predict --contributions` wrote them, the modalities' contributions (their RGB
map and how closely each alone follows the full map, second by second).

Rendering stays cheap: small pictures (`FRAME_SIZE`), at most `max_frames` rows (24 by
default); the rows shown are `stride` rows apart (seconds at 1 Hz; volumes of a file resampled to
a scan), `ceil(rows / max_frames)` unless given, so a long file is shown over its whole length. Predictions of untrained demo weights say so on the
page and on every picture (`untrained.py`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tribe_stream.errors import InputError
from tribe_stream.untrained import UNTRAINED_LABEL, UNTRAINED_TAG, is_untrained, tagged

FRAME_SIZE = (360, 270)
"""Each stimulus frame and cortex picture, pixels (width, height)."""
REGIONS_SHOWN = 8
COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


@dataclass
class Report:
    """What `write_report` put on the page."""

    out: Path
    seconds: int  # rows of the prediction file
    shown: list[float] = field(default_factory=list)  # the seconds shown, one row each
    stride: int = 1  # rows
    step: float = 1.0  # seconds between the rows shown
    frames: int = 0  # stimulus frames shown
    plots: int = 0  # inline SVG plots
    contributions: list[str] = field(default_factory=list)
    words: int = 0
    untrained: bool = False


def shown_rows(n: int, max_frames: int = 24, stride: int | None = None) -> tuple[list[int], int]:
    """The rows a report shows of `n`: every `stride`-th (default `ceil(n / max_frames)`), at
    most `max_frames`; and the stride."""
    if max_frames < 1 or (stride is not None and stride < 1):
        raise InputError("--max-frames and --stride must be 1 or more")
    stride = stride or max(1, math.ceil(n / max_frames))
    return list(range(0, n, stride))[:max_frames], stride


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_uri(image: np.ndarray) -> str:
    """An RGB(A) picture as a PNG `data:` URI (256 colours: a fraction of the bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    picture.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, format="PNG", optimize=True)
    return data_uri(buf.getvalue(), "image/png")


def jpeg_uri(image: np.ndarray, stamp: str = "") -> str:
    """An RGB picture as a JPEG `data:` URI, `stamp` written in a dark strip along its foot."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    if stamp:
        draw = ImageDraw.Draw(picture)
        draw.rectangle((0, picture.height - 16, picture.width, picture.height), fill=(0, 0, 0))
        draw.text(
            (4, picture.height - 15), stamp, fill=(255, 90, 90), font=ImageFont.load_default(12)
        )
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=80)
    return data_uri(buf.getvalue(), "image/jpeg")


def svg_plot(
    x: np.ndarray,
    series: dict[str, np.ndarray],
    title: str,
    ylabel: str,
    stamp: str = "",
    size: tuple[int, int] = (760, 260),
) -> str:
    """A line plot as inline SVG: one polyline per series (NaN breaks nothing: left out), a
    legend, the y range and the x range marked; `stamp` in red at the top right."""
    w, h = size
    left, right, top, bottom = 56, 170, 28, 34
    pw, ph = w - left - right, h - top - bottom
    x = np.asarray(x, np.float64)
    ys = np.concatenate([np.asarray(v, np.float64) for v in series.values()] or [np.zeros(1)])
    ys = ys[np.isfinite(ys)]
    lo, hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    lo, hi = (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)
    x0, x1 = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    x1 = x1 if x1 > x0 else x0 + 1

    def px(t: float) -> float:
        return left + (t - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return top + (hi - v) / (hi - lo) * ph

    esc = html.escape
    parts = [
        f'<svg class="plot" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
        f'<text x="{left}" y="18" class="t">{esc(title)}</text>',
        f'<text x="{left - 6}" y="{top + 10}" class="a" text-anchor="end">{hi:.3g}</text>',
        f'<text x="{left - 6}" y="{top + ph}" class="a" text-anchor="end">{lo:.3g}</text>',
        f'<text x="{left}" y="{h - 12}" class="a">{x0:g} s</text>',
        f'<text x="{left + pw}" y="{h - 12}" class="a" text-anchor="end">{x1:g} s</text>',
        f'<text x="{left + pw / 2}" y="{h - 12}" class="a" text-anchor="middle">'
        f"stimulus second; {esc(ylabel)}</text>",
    ]
    if lo < 0 < hi:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(0):.1f}" y2="{py(0):.1f}" '
                     'stroke="#ccc"/>')  # fmt: skip
    for i, (name, y) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = " ".join(
            f"{px(t):.1f},{py(v):.1f}"
            for t, v in zip(x, np.asarray(y, float), strict=True)
            if np.isfinite(v)
        )
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        ly = top + 12 + 16 * i
        parts.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 26}" y1="{ly - 4}" '
                     f'y2="{ly - 4}" stroke="{color}" stroke-width="3"/>')  # fmt: skip
        parts.append(f'<text x="{left + pw + 30}" y="{ly}" class="a">{esc(name[:22])}</text>')
    if stamp:
        parts.append(
            f'<text x="{w - 4}" y="14" class="stamp" text-anchor="end">{esc(stamp)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def cortex_pictures(values: np.ndarray, seconds: np.ndarray, rows: list[int], meta: dict):
    """PNG `data:` URIs of the rows' maps on the cortex, one offscreen scene for all of them,
    colour limits fixed over every row of the file (as `movie`)."""
    from tribe_stream.surface.colors import get_colormap, robust_limits
    from tribe_stream.viewer.backend import use_offscreen_backend

    use_offscreen_backend()
    from tribe_stream.viewer.scene import BrainScene, Layout

    limits = robust_limits(values, get_colormap("cold_hot").diverging, threshold_percentile=50)
    scene = BrainScene(size=FRAME_SIZE, layout=Layout(hud=22, colorbar=44))
    try:
        uris = []
        for i in rows:
            scene.show_map(values[i], limits)
            k = float(seconds[i])
            scene.set_hud(tagged(f"second {k:g}, BOLD {k + 5:g} s", meta))
            uris.append(png_uri(scene.render()))
        return uris
    finally:
        scene.close()


def stimulus_frames(path: Path, times: list[float], stamp: str) -> list[str] | None:
    """JPEG `data:` URIs of the stimulus at `times` (s), None when it has no pictures."""
    from tribe_stream.media import probe
    from tribe_stream.viewer.movie import StimulusFrames

    if not probe(path).has_video:
        return None
    frames = StimulusFrames(path, *FRAME_SIZE)
    try:
        return [jpeg_uri(frames.at(t), stamp) for t in times]
    finally:
        frames.close()


def region_plot(values, seconds, atlas, stamp: str) -> str:
    """The time courses of the `REGIONS_SHOWN` regions most active over the file (mean over
    time), or of each hemisphere without an atlas."""
    from tribe_stream import N_VERTICES_HEMI

    if atlas is None:
        series = {
            "left hemisphere": values[:, :N_VERTICES_HEMI].mean(axis=1),
            "right hemisphere": values[:, N_VERTICES_HEMI:].mean(axis=1),
        }
        title = "mean predicted BOLD of each hemisphere"
    else:
        means = atlas.means(values)
        order = np.argsort(-means.mean(axis=0))[:REGIONS_SHOWN]
        series = {atlas.names[i]: means[:, i] for i in order}
        title = f"the {len(order)} most active of {len(atlas.names)} regions"
    return svg_plot(seconds, series, title, "region mean", stamp)


def contribution_parts(pred: Path, values, seconds, meta: dict) -> tuple[list[str], str, str]:
    """The modalities found, their RGB map (mean over time) and an SVG of each one's spatial r
    with the full map at each second; `([], "", "")` when `predict --contributions` made none."""
    from tribe_stream.offline_outputs import find_contributions, read_prediction_file
    from tribe_stream.viewer.render import load_contributions, render_rgb_image

    files = find_contributions(pred)
    if not files:
        return [], "", ""
    channels, caption, found = load_contributions([pred])
    image = render_rgb_image(channels, size=(480, 360), title=tagged(caption, meta))
    series = {}
    for m in found:
        part = read_prediction_file(files[m]).values
        if part.shape != values.shape:
            continue
        a = part - part.mean(axis=1, keepdims=True)
        b = values - values.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            series[m] = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    stamp = UNTRAINED_TAG if is_untrained(meta) else ""
    plot = svg_plot(seconds, series, "each modality alone vs the full map", "spatial r", stamp)
    return found, png_uri(image), plot


def read_words(pred: Path) -> list:
    """The words beside the prediction (`NAME.words.tsv`), [] when none were used."""
    from tribe_stream.offline_outputs import words_path
    from tribe_stream.transcripts import read_transcript

    path = words_path(pred)
    if not path.is_file():
        return []
    try:
        return read_transcript(path)
    except InputError:  # the header alone: no word was used
        return []


CSS = """
body{font:14px system-ui,sans-serif;margin:20px;background:#f4f4f6;color:#222}
.untrained{background:#b00020;color:#fff;font-weight:bold;padding:8px 12px;margin:10px 0}
table.rows{border-collapse:collapse}table.rows td{padding:4px;vertical-align:top}
table.rows tr{border-top:1px solid #ddd}.words{max-width:280px;font-size:13px}
.meta td{padding:1px 10px 1px 0}.t{font-size:13px;font-weight:bold}.a{font-size:11px}
.stamp{font-size:11px;fill:#b00020;font-weight:bold}img{display:block}
"""


def write_report(
    pred: str | os.PathLike,
    out: str | os.PathLike,
    *,
    stimulus: str | os.PathLike | None = None,
    atlas=None,
    max_frames: int = 24,
    stride: int | None = None,
) -> Report:
    """Write the page (module docs) for the prediction file `pred` to `out` (`.html`),
    atomically; `atlas` a `regions.Atlas`. Inputs and output are checked before any rendering."""
    from tribe_stream.offline_outputs import read_prediction_file
    from tribe_stream.outputs import atomic_write, check_output

    out_path = check_output(out, (".html", ".htm"))
    pred = Path(pred).expanduser()
    stim = Path(stimulus).expanduser() if stimulus is not None else None
    if stim is not None and not stim.is_file():
        raise InputError(f"--stimulus {stim} does not exist")
    values, seconds, meta = preds = read_prediction_file(pred)
    if len(values) == 0:
        raise InputError(f"{pred} holds no predictions")
    rows, stride = shown_rows(len(values), max_frames, stride)
    untrained = is_untrained(meta)
    stamp = UNTRAINED_TAG if untrained else ""
    report = Report(out_path, len(values), [float(seconds[i]) for i in rows], stride)
    report.step = stride * preds.tr
    report.untrained = untrained
    frames = stimulus_frames(stim, [float(seconds[i]) + 0.5 for i in rows], stamp) if stim else None
    report.frames = len(frames or [])
    brains = cortex_pictures(values, seconds, rows, meta)
    words = read_words(pred)
    report.words = len(words)
    plots = [region_plot(values, seconds, atlas, stamp)]
    found, rgb, contribution_plot = contribution_parts(pred, values, seconds, meta)
    report.contributions = found
    plots += [contribution_plot] if contribution_plot else []
    report.plots = len(plots)
    page = _page(pred, stim, meta, report, rows, seconds, brains, frames, words, plots, rgb)
    atomic_write(out_path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return report


def _page(pred, stim, meta, report, rows, seconds, brains, frames, words, plots, rgb) -> str:
    from tribe_stream.offline_outputs import words_path

    esc = html.escape
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    facts = {
        "prediction": str(pred),
        "stimulus": str(stim or meta.get("stimulus") or "not given"),
        "rows": f"{report.seconds} (stimulus seconds {seconds[0]:g} to {seconds[-1]:g})",
        "shown": f"{len(rows)} rows, every {report.step:g} s"
        + ("" if len(rows) * report.stride >= report.seconds else " (capped: --max-frames)"),
        "model": str(model.get("source") or model.get("checkpoint") or "not recorded"),
        "words": f"{len(words)} (from {words_path(pred).name})" if words else "none",
    }
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(tagged(f'tribe-stream report: {pred.name}', meta))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(pred.name)}</h1>",
    ]
    if report.untrained:
        out.append(f'<div class="untrained" id="untrained">{esc(UNTRAINED_LABEL)}</div>')
    out.append('<table class="meta">')
    out += [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in facts.items()]
    out.append("</table>")
    out.append("<h2>Time courses</h2>")
    out += plots[:1]
    if rgb:
        out.append("<h2>Modality contributions</h2>")
        out.append("<p>Text red, audio green, video blue (mean over time).</p>")
        out.append(f'<img class="rgb" alt="contributions" src="{rgb}">')
        out += plots[1:]
    out.append("<h2>Second by second</h2>")
    out.append("<p>Stimulus in the middle of each second; predicted BOLD 5 s later.</p>")
    out.append('<table class="rows">')
    for j, i in enumerate(rows):
        k = float(seconds[i])
        spoken = " ".join(w.text for w in words if k <= w.onset < k + report.step)
        cells = [f"<td><b>{k:g} s</b></td>"]
        if frames is not None:
            cells.append(f'<td><img class="frame" alt="stimulus at {k + 0.5:g} s" '
                         f'src="{frames[j]}"></td>')  # fmt: skip
        cells.append(f'<td><img class="cortex" alt="cortex, second {k:g}" src="{brains[j]}"></td>')
        cells.append(f'<td class="words">{esc(spoken)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    if stim is not None and frames is None:
        out.append(f"<p>{esc(str(stim))} has no video stream: no frames shown.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
