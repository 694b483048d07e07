"""The harness's numbers (pure NumPy): per-bin / per-row relative errors, Pearson r, the markdown
table and the verdict against a tolerance and the documented divergences."""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DIVERGENCES = Path(__file__).with_name("divergences.json")


def relative_errors(ours: np.ndarray, official: np.ndarray) -> np.ndarray:
    """`||ours_i - official_i|| / ||official_i||` for each row i (first axis). A row zero on both
    sides is 0; a row zero only officially is inf."""
    a = np.asarray(ours, dtype=np.float64).reshape(len(ours), -1)
    b = np.asarray(official, dtype=np.float64).reshape(len(official), -1)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    diff = np.linalg.norm(a - b, axis=1)
    ref = np.linalg.norm(b, axis=1)
    out = np.full(len(a), np.inf)
    np.divide(diff, ref, out=out, where=ref > 0)
    out[(ref == 0) & (diff == 0)] = 0.0
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of the flattened arrays (nan when either is constant)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size != y.size or x.size < 2:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else math.nan


@dataclass
class Row:
    """One line of the report: a modality's features or the end-to-end predictions of one clip."""

    clip: str
    what: str
    """`text`, `audio`, `video`, `encoder` or `end to end`."""
    shape_ours: tuple[int, ...] | None
    shape_official: tuple[int, ...] | None
    compared: int = 0
    """bins (features) or rows (predictions) compared."""
    rel_median: float = math.nan
    rel_max: float = math.nan
    r: float = math.nan
    seconds_ours: float | None = None
    seconds_official: float | None = None
    note: str = ""
    divergence: str = ""
    """the documented divergence that covers this row, if any."""
    failed: bool = False

    def to_json(self) -> dict:
        d = asdict(self)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }


def _summary(rel: np.ndarray) -> tuple[float, float]:
    if rel.size == 0:
        return math.nan, math.nan
    return float(np.median(rel)), float(np.max(rel))


def compare_features(
    clip: str, modality: str, ours: np.ndarray | None, official: np.ndarray | None
) -> Row:
    """Features `(L, D, T)` on both sides, bin by bin over the bins both have (the official
    side's trailing bins are the zero padding of its last 100 s segment)."""
    row = Row(
        clip,
        modality,
        None if ours is None else tuple(ours.shape),
        None if official is None else tuple(official.shape),
    )
    if ours is None or official is None:
        row.note = f"absent {'on our side' if ours is None else 'officially'}"
        row.failed = (ours is None) != (official is None)
        return row
    if ours.shape[:2] != official.shape[:2]:
        row.note = "layer/feature shapes differ"
        row.failed = True
        return row
    t = min(ours.shape[-1], official.shape[-1])
    extra = official[..., t:]
    if ours.shape[-1] > official.shape[-1]:
        row.note = f"{ours.shape[-1] - t} bins more on our side"
    elif np.any(extra):
        row.note = f"{int(np.any(extra != 0, axis=(0, 1)).sum())} non-zero official bins past ours"
    a = np.moveaxis(ours[..., :t], -1, 0)
    b = np.moveaxis(official[..., :t], -1, 0)
    rel = relative_errors(a, b)
    row.compared = t
    row.rel_median, row.rel_max = _summary(rel)
    row.r = pearson(a, b)
    return row


def compare_predictions(
    clip: str,
    ours: np.ndarray,
    official: np.ndarray,
    official_seconds: np.ndarray,
    seconds_ours: float | None = None,
    seconds_official: float | None = None,
) -> Row:
    """End to end: our rows (row i = stimulus second i) against the official rows, matched by the
    official segments' start seconds."""
    row = Row(
        clip,
        "end to end",
        tuple(ours.shape),
        tuple(official.shape),
        seconds_ours=seconds_ours,
        seconds_official=seconds_official,
    )
    secs = np.round(np.asarray(official_seconds, dtype=np.float64)).astype(int)
    both = [(int(s), k) for k, s in enumerate(secs) if 0 <= s < len(ours)]
    notes = []
    if len(ours) != len(official):
        notes.append(f"rows: ours {len(ours)}, official {len(official)}")
    missing = [int(s) for s in secs if not 0 <= s < len(ours)]
    if missing:
        notes.append(
            f"official seconds not in ours: {missing[:5]}{' …' if len(missing) > 5 else ''}"
        )
    row.note = "; ".join(notes)
    if not both:
        row.failed = True
        return row
    a = ours[[s for s, _ in both]]
    b = official[[k for _, k in both]]
    rel = relative_errors(a, b)
    row.compared = len(both)
    row.rel_median, row.rel_max = _summary(rel)
    row.r = pearson(a, b)
    return row


@dataclass
class Divergence:
    """A known, documented difference: rows matching `clips`/`what`/`mode` may reach `max_rel`."""

    id: str
    what: str
    max_rel: float
    why: str
    clips: str = "*"
    mode: str = "*"
    doc: str = "docs/PARITY.md"
    extra: dict = field(default_factory=dict)

    def covers(self, row: Row, mode: str) -> bool:
        return (
            fnmatch.fnmatch(row.clip, self.clips)
            and fnmatch.fnmatch(row.what, self.what)
            and fnmatch.fnmatch(mode, self.mode)
        )


def load_divergences(path: Path = DIVERGENCES) -> list[Divergence]:
    if not path.is_file():
        return []
    return [Divergence(**d) for d in json.loads(path.read_text())]


def judge(rows: list[Row], tolerance: float, divergences: list[Divergence], mode: str) -> list[Row]:
    """Mark each row failed when its largest relative error passes `tolerance` (or is not a
    number) and no documented divergence allows it; returns the failed rows."""
    for row in rows:
        if row.failed:
            continue
        if math.isnan(row.rel_max):
            row.failed = row.compared == 0 and row.shape_ours is not None
            continue
        if row.rel_max <= tolerance:
            continue
        for d in divergences:
            if d.covers(row, mode) and row.rel_max <= d.max_rel:
                row.divergence = d.id
                break
        else:
            row.failed = True
    return [r for r in rows if r.failed]


def _fmt(x: float | None, spec: str = ".2e") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, spec)


def _shape(s: tuple[int, ...] | None) -> str:
    return "absent" if s is None else "×".join(str(v) for v in s)


def markdown(rows: list[Row], tolerance: float) -> str:
    """The report: one table per clip."""
    out = []
    for clip in dict.fromkeys(r.clip for r in rows):
        out.append(f"#### {clip}\n")
        out.append(
            "| what | ours | official | compared | rel. err. median | rel. err. max | r | "
            "seconds ours / official | verdict | note |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in [r for r in rows if r.clip == clip]:
            secs = (
                f"{_fmt(r.seconds_ours, '.1f')} / {_fmt(r.seconds_official, '.1f')}"
                if r.seconds_ours is not None or r.seconds_official is not None
                else ""
            )
            verdict = (
                "FAIL" if r.failed else f"divergence `{r.divergence}`" if r.divergence else "ok"
            )
            out.append(
                f"| {r.what} | {_shape(r.shape_ours)} | {_shape(r.shape_official)} | {r.compared} "
                f"| {_fmt(r.rel_median)} | {_fmt(r.rel_max)} | {_fmt(r.r, '.6f')} | {secs} "
                f"| {verdict} | {r.note} |"
            )
        out.append("")
    out.append(f"Tolerance: relative error {tolerance:g} per bin / row (max over the clip).")
    return "\n".join(out)
