"""Make `tests/fixtures/subcortical/`: a small synthetic Harvard-Oxford subcortical atlas, the
voxel order the official code takes from it, and a small subcortical checkpoint built by the
official classes with random weights.

Run with the python of the official environment (tribev2, neuralset, neuraltrain; nilearn is
taken from our venv when that environment lacks it):

    /work/parity/venv/bin/python tools/make_subcortical_fixture.py tests/fixtures/subcortical \
        --nilearn-from /work/main/.venv/lib/python3.11/site-packages

It writes:

- `fsl/data/atlases/HarvardOxford/HarvardOxford-sub-maxprob-thr50-2mm.nii.gz` and
  `fsl/data/atlases/HarvardOxford-Subcortical.xml`: a (11, 13, 9) label volume in the FSL layout
  (also nilearn's: `NILEARN_DATA/fsl/...`), with FSL's radiological affine (x flipped, as the
  real file), every one of the 21 labels present, and FSL's label names (its "Ventrical" typo
  included, which nilearn corrects);
- `official_order.npz`: `ijk` (N, 3), the voxels of neuralset's `MaskProjector(mask="subcortical")`
  mask in the order of `mask_data[mask_data > 0]`, `label` (N,) each voxel's atlas value, `affine`
  and `shape` of that mask, and `labels`, the atlas names nilearn returns;
- `model/best.ckpt` + `model/config.yaml`: tribev2's `FmriEncoder` built with N outputs (the
  mask's voxel count), random weights, in the released checkpoint layout; `config.yaml` names the
  projection as the official subcortical grid does (`MaskProjector`, `mask: subcortical`);
- `model/cases.npz`: one input window (`text`, `audio`, `video`, (2, 8, 200)) and the official
  model's pooled output for it (`expected`, (N, 100)).

Nothing of the official code is copied here: it is imported and called.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SHAPE = (11, 13, 9)
AFFINE = np.array(
    [[-2.0, 0, 0, 10.0], [0, 2.0, 0, -12.0], [0, 0, 2.0, -8.0], [0, 0, 0, 1]]
)  # FSL's MNI152 2 mm files are radiological (x decreasing), as this one
FSL_NAMES = [  # FSL's HarvardOxford-Subcortical.xml, index 0..20 (image values 1..21)
    "Left Cerebral White Matter", "Left Cerebral Cortex ", "Left Lateral Ventrical",
    "Left Thalamus", "Left Caudate", "Left Putamen", "Left Pallidum", "Brain-Stem",
    "Left Hippocampus", "Left Amygdala", "Left Accumbens", "Right Cerebral White Matter",
    "Right Cerebral Cortex ", "Right Lateral Ventricle", "Right Thalamus", "Right Caudate",
    "Right Putamen", "Right Pallidum", "Right Hippocampus", "Right Amygdala", "Right Accumbens",
]  # fmt: skip
DIMS = {"text": (2, 8), "audio": (2, 8), "video": (2, 8)}
BRAIN = {  # a reduced TRIBE v2 brain model (the released one: hidden 1152, depth 8)
    "name": "FmriEncoder",
    "hidden": 96,
    "low_rank_head": 16,
    "max_seq_len": 1024,
    "extractor_aggregation": "cat",
    "layer_aggregation": "cat",
    "combiner": None,
    "encoder": {"depth": 1, "heads": 2},
    "subject_layers": {"subject_dropout": 0.1, "n_subjects": 0, "average_subjects": True},
    "subject_embedding": False,
    "modality_dropout": 0.0,
}


def synthetic_atlas(seed: int = 0) -> np.ndarray:
    """Labels 0..21 in blobs (a coarse random grid, upsampled), every label present."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 22, size=(6, 7, 5))
    coarse[rng.random(coarse.shape) < 0.3] = 0
    data = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    data = data.copy()
    flat = data.reshape(-1)
    for value in range(22):  # every label somewhere
        flat[rng.integers(0, flat.size)] = value
    return data.astype(np.int16)


def write_atlas(root: Path, data: np.ndarray) -> None:
    import nibabel as nib

    folder = root / "fsl" / "data" / "atlases"
    (folder / "HarvardOxford").mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_qform(AFFINE, code=4)
    img.header.set_sform(AFFINE, code=4)
    nib.save(img, str(folder / "HarvardOxford" / "HarvardOxford-sub-maxprob-thr50-2mm.nii.gz"))
    labels = "\n".join(
        f'    <label index="{i}" x="0" y="0" z="0">{name}</label>'
        for i, name in enumerate(FSL_NAMES)
    )
    (folder / "HarvardOxford-Subcortical.xml").write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<atlas version="1.0">\n  <header>\n'
        "    <name>Harvard-Oxford Subcortical Structural Atlas (synthetic test copy)</name>\n"
        "    <type>Label</type>\n  </header>\n  <data>\n" + labels + "\n  </data>\n</atlas>\n"
    )


def official_order(root: Path) -> dict[str, np.ndarray]:
    """The official mask, through neuralset's MaskProjector (nilearn reading `root` as its data)."""
    from neuralset.extractors.neuro import MaskProjector

    os.environ["NILEARN_DATA"] = str(root)
    from nilearn import datasets

    mask = MaskProjector(mask="subcortical").get_mask()
    data = mask.get_fdata()
    selected = data > 0
    ijk = np.stack(np.nonzero(selected), axis=1)  # the order of data[data > 0]
    atlas = datasets.fetch_atlas_harvard_oxford("sub-maxprob-thr50-2mm", verbose=0)
    return {
        "ijk": ijk.astype(np.int32),
        "label": data[selected].astype(np.int32),
        "affine": np.asarray(mask.affine, np.float64),
        "shape": np.asarray(data.shape, np.int32),
        "labels": np.asarray(list(atlas.labels)),
    }


def make_model(out: Path, n_outputs: int) -> None:
    import torch
    import yaml
    from tribev2.model import FmriEncoder

    torch.manual_seed(0)
    config = FmriEncoder(**{k: v for k, v in BRAIN.items() if k != "name"})
    model = config.build(feature_dims=DIMS, n_outputs=n_outputs, n_output_timesteps=100).eval()
    with torch.no_grad():  # perturb what starts as ones or zeros, so every weight matters
        for name, p in model.named_parameters():
            if name.endswith(".g") or "residual_scale" in name:
                p.uniform_(0.5, 1.5)
            elif "bias" in name:
                p.normal_(0, 0.1)
    g = torch.Generator().manual_seed(1)
    inputs = {m: torch.randn(1, *d, 200, generator=g) for m, d in DIMS.items()}
    with torch.inference_mode():
        expected = model(SimpleNamespace(data=dict(inputs)), pool_outputs=True)[0]
    out.mkdir(parents=True, exist_ok=True)
    state = {"model." + k: v.detach().clone() for k, v in model.state_dict().items()}
    build_args = {"feature_dims": DIMS, "n_outputs": n_outputs, "n_output_timesteps": 100}
    torch.save({"state_dict": state, "model_build_args": build_args}, out / "best.ckpt")
    experiment = {
        "brain_model_config": {k: v for k, v in BRAIN.items() if k != "subject_layers"},
        "data": {
            "frequency": 2,
            "duration_trs": 100,
            "features_to_use": ["text", "audio", "video"],
            "neuro": {
                "name": "FmriExtractor",
                "offset": 5,
                "frequency": 1,
                "projection": {"name": "MaskProjector", "mask": "subcortical"},
                "fwhm": 6.0,
            },
        },
    }
    (out / "config.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False))
    np.savez_compressed(
        out / "cases.npz",
        **{m: x[0].numpy() for m, x in inputs.items()},
        expected=expected.numpy(),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--nilearn-from", help="a site-packages holding nilearn, if this venv lacks it")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from parity.official_driver import _torchvision_shim

    _torchvision_shim()
    import neuralset.extractors.neuro  # noqa: F401 - before any path is added

    if args.nilearn_from:
        sys.path.append(args.nilearn_from)
    out = Path(args.out)
    data = synthetic_atlas()
    write_atlas(out, data)
    with tempfile.TemporaryDirectory() as tmp:  # nilearn reads a copy (it may write a README)
        write_atlas(Path(tmp), data)
        order = official_order(Path(tmp))
    np.savez_compressed(out / "official_order.npz", **order)
    make_model(out / "model", len(order["ijk"]))
    print(json.dumps({"voxels": len(order["ijk"]), "labels": order["labels"].tolist()}))


if __name__ == "__main__":
    main()
