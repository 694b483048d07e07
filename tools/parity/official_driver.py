"""The official side of the parity harness. Runs INSIDE the official venv (never imports
tribe_stream): `python official_driver.py JOB.json`, writing the job's `out` .npz.

Modes:
- `full`: tribev2's own `TribeModel.from_pretrained` / `get_events_dataframe` / `predict`; the
  features are taken from the batches its data loader hands the brain model.
- `pypi`: no tribev2 (CI reaches only PyPI): neuralset's event transforms and extractors with
  the settings of the checkpoint's `config.yaml`, batched by neuralset's SegmentDataset in 100 s
  segments, and neuraltrain's TransformerEncoder (x_transformers) for the brain model's trunk.

Both: spaCy's large English model cannot be downloaded, so neuralset's sentence splitter gets
`spacy.blank("en")` + the rule-based `sentencizer`.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _torchvision_shim() -> None:
    """PyPI's torchvision is linked to CUDA torch; beside the CPU torch its C ops do not load and
    its import fails registering fake kernels for them. Define the two op schemas it registers
    unconditionally (never called here) so that `import torchvision` succeeds."""
    import torch

    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # the real ops loaded
    _torchvision_shim.lib = lib  # type: ignore[attr-defined]


def _blank_spacy() -> None:
    """neuralset loads `en_core_web_lg` (a download); use a blank English pipeline with the
    rule-based sentencizer instead."""
    import neuralset.utils as nsu
    import spacy

    @functools.lru_cache(maxsize=3)
    def blank(model: str) -> Any:
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp

    nsu._get_model = blank


def _words_table(events: Any) -> list[list]:
    words = events[events.type == "Word"].sort_values("start")
    ctx = words["context"] if "context" in words.columns else [""] * len(words)
    return [
        [str(t), float(s), float(d), str(c)]
        for t, s, d, c in zip(words.text, words.start, words.duration, ctx, strict=False)
    ]


def _stack_features(batches: list[Any], modalities: list[str]) -> dict[str, np.ndarray]:
    """`{modality: (L, D, T)}` over consecutive 100 s segments, and `segment_starts`."""
    out: dict[str, np.ndarray] = {}
    starts = [float(s.start) for b in batches for s in b.segments]
    out["segment_starts"] = np.array(starts, dtype=np.float64)
    for m in modalities:
        parts = [b.data[m].detach().cpu().float().numpy() for b in batches if m in b.data]
        if not parts:
            continue
        x = np.concatenate(parts)  # (n_segments, L, D, T) or (n_segments, D, T)
        if x.ndim == 3:
            x = x[:, None]
        out[f"feat_{m}"] = np.concatenate(list(x), axis=-1)  # (L, D, n_segments * T)
    return out


def run_full(job: dict) -> dict[str, Any]:
    from tribev2.demo_utils import TribeModel

    t0 = time.perf_counter()
    model = TribeModel.from_pretrained(
        job["checkpoint"],
        cache_folder=job["cache"],
        device="cpu",
        config_update={"data.num_workers": 0},
    )
    kind = job["kind"]
    events = model.get_events_dataframe(**{f"{kind}_path": job["clip"]})
    t_events = time.perf_counter() - t0
    batches: list[Any] = []
    model._model.register_forward_pre_hook(lambda mod, args: batches.append(args[0]))
    preds, segments = model.predict(events, verbose=False)
    arrays = _stack_features(batches, list(model.data.features_to_use))
    arrays["preds"] = np.asarray(preds, dtype=np.float32)
    arrays["row_starts"] = np.array([float(s.start) for s in segments], dtype=np.float64)
    info = {
        "words": _words_table(events),
        "events_s": t_events,
        "seconds": time.perf_counter() - t0,
    }
    return {"arrays": arrays, "info": info}


def _extractor(cfg: dict, data: dict, cache: str) -> Any:
    """A neuralset extractor from its config section, with the experiment-level layer settings
    applied as the official Data does (`layers_to_use`, `layer_aggregation`, `frequency`)."""
    import neuralset as ns

    cfg = json.loads(json.dumps(cfg))
    cls = getattr(ns.extractors, cfg.pop("name"))
    cfg["infra"] = {**cfg.get("infra", {}), "folder": cache, "cluster": None}
    if "image" in cfg:
        image = dict(cfg.pop("image"))
        image_cls = getattr(ns.extractors, image.pop("name"))
        cfg["image"] = image_cls(**image)
    ex = cls(**cfg)
    for target in (ex, getattr(ex, "image", None)):
        if target is not None and hasattr(target, "layers"):
            target.layer_aggregation = data.get("layer_aggregation", "group_mean")
            if data.get("layers_to_use") is not None:
                target.layers = data["layers_to_use"]
    if data.get("frequency") is not None and hasattr(ex, "frequency"):
        ex.frequency = data["frequency"]
    return ex


def run_pypi(job: dict) -> dict[str, Any]:
    import neuralset as ns
    import pandas as pd
    import torch
    import yaml
    from neuralset.events.transforms import (
        AddContextToWords,
        AddSentenceToWords,
        AddText,
        ChunkEvents,
        ExtractAudioFromVideo,
        RemoveMissing,
    )
    from neuralset.events.utils import standardize_events

    t0 = time.perf_counter()
    config = yaml.safe_load(Path(job["checkpoint"], "config.yaml").read_text())
    data = config["data"]
    kind = job["kind"]
    event = {"type": kind.capitalize(), "filepath": job["clip"], "start": 0}
    events = standardize_events(
        pd.DataFrame([{**event, "timeline": "default", "subject": "default"}])
    )
    for tr in (
        ExtractAudioFromVideo(),
        ChunkEvents(event_type_to_chunk="Audio", max_duration=60, min_duration=30),
        ChunkEvents(event_type_to_chunk="Video", max_duration=60, min_duration=30),
    ):
        events = tr(events)
    words = pd.read_csv(job["tsv"], sep="\t")
    words = words.assign(type="Word", language="english", timeline="default", subject="default")
    events = standardize_events(pd.concat([events, words], ignore_index=True))
    for tr in (
        AddText(),
        AddSentenceToWords(max_unmatched_ratio=0.05),
        AddContextToWords(sentence_only=False, max_context_len=1024, split_field=""),
        RemoveMissing(),
    ):
        events = tr(events)
    events = standardize_events(events)
    t_events = time.perf_counter() - t0
    modalities = [m for m in data["features_to_use"] if m in job["modalities"]]
    extractors = {m: _extractor(data[f"{m}_feature"], data, job["cache"]) for m in modalities}
    dummy = {
        "type": "CategoricalEvent",
        "timeline": "default",
        "subject": "default",
        "start": events.start.min(),
        "duration": events.stop.max() - events.start.min(),
    }
    events = standardize_events(pd.concat([events, pd.DataFrame([dummy])], ignore_index=True))
    for ex in extractors.values():
        ex.prepare(events)
    tr_s = 1.0 / data["neuro"]["frequency"]
    segments = ns.segments.list_segments(
        events,
        triggers=events.type == "CategoricalEvent",
        stride=data["duration_trs"] * tr_s,
        duration=data["duration_trs"] * tr_s,
        stride_drop_incomplete=False,
    )
    dataset = ns.dataloader.SegmentDataset(
        extractors=extractors, segments=segments, remove_incomplete_segments=False
    )
    loader = dataset.build_dataloader(shuffle=False, num_workers=0, batch_size=data["batch_size"])
    batches = list(loader)
    arrays = _stack_features(batches, modalities)

    # the brain model's trunk: neuraltrain's TransformerEncoder (x_transformers) with the
    # checkpoint's encoder weights, on the input our harness computed (`encoder_in`)
    if job.get("encoder_in"):
        from neuraltrain.models.transformer import TransformerEncoder

        bm = config["brain_model_config"]
        enc = TransformerEncoder(**bm.get("encoder", {})).build(dim=bm["hidden"])
        state = torch.load(
            Path(job["checkpoint"], "best.ckpt"), map_location="cpu", weights_only=True
        )
        prefix = "model.encoder."
        enc.load_state_dict(
            {k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)},
            strict=True,
        )
        enc.eval()
        with np.load(job["encoder_in"]) as z:
            x = torch.from_numpy(z["x"])
        with torch.inference_mode():
            arrays["encoder_out"] = enc(x).numpy()
    info = {
        "words": _words_table(events),
        "events_s": t_events,
        "seconds": time.perf_counter() - t0,
    }
    return {"arrays": arrays, "info": info}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    _torchvision_shim()
    _blank_spacy()
    import torch

    torch.manual_seed(0)
    result = run_full(job) if job["mode"] == "full" else run_pypi(job)
    out = Path(job["out"])
    np.savez(out, **result["arrays"])
    out.with_suffix(".json").write_text(json.dumps(result["info"]))


if __name__ == "__main__":
    main()
