"""`tribe-stream score`: predictions against measured BOLD (real files on disk: CIFTI-2, GIfTI and
MGH pairs written by nibabel), the noise ceiling, the one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError

# -- CIFTI-2 ------------------------------------------------------------------------------------


def test_cifti_dense_series_round_trips_with_a_medial_wall(tmp_path):
    import nibabel as nib

    from tribe_stream.cifti import read_dtseries, write_dtseries

    rng = np.random.default_rng(0)
    values = rng.standard_normal((6, N_VERTICES)).astype(np.float32)
    present = np.ones(N_VERTICES, bool)
    present[10:400] = False  # a left medial wall
    present[N_VERTICES_HEMI + 5 : N_VERTICES_HEMI + 90] = False
    path = write_dtseries(tmp_path / "run.dtseries.nii", values, tr=1.5, start=2.0, present=present)
    img = nib.load(str(path))
    assert img.nifti_header.get_intent()[0] == "ConnDenseSeries"
    assert img.shape == (6, int(present.sum()))
    names = [name for name, _, _ in img.header.get_axis(1).iter_structures()]
    assert names == ["CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT"]
    back = read_dtseries(path)
    assert (back.tr, back.start) == (1.5, 2.0)
    np.testing.assert_array_equal(back.present, present)
    np.testing.assert_array_equal(back.values[:, present], values[:, present])
    assert np.isnan(back.values[:, ~present]).all()
    np.testing.assert_allclose(back.times, 2.0 + 1.5 * np.arange(6))


def _cifti(path, models, n=4):
    from nibabel import cifti2

    axis = models[0]
    for m in models[1:]:
        axis = axis + m
    series = cifti2.SeriesAxis(0.0, 1.0, n, unit="SECOND")
    img = cifti2.Cifti2Image(np.zeros((n, len(axis)), np.float32), header=(series, axis))
    img.to_filename(str(path))
    return path


def test_cifti_refuses_volumes_and_other_meshes_in_one_line(tmp_path):
    from nibabel import cifti2

    from tribe_stream.cifti import read_dtseries

    left = cifti2.BrainModelAxis.from_mask(np.ones(N_VERTICES_HEMI, bool), name="CortexLeft")
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    volume = cifti2.BrainModelAxis.from_mask(mask, affine=np.eye(4), name="ThalamusLeft")
    with pytest.raises(InputError, match="volume model CIFTI_STRUCTURE_THALAMUS_LEFT") as e:
        read_dtseries(_cifti(tmp_path / "sub.dtseries.nii", [left, volume]))
    assert "\n" not in str(e.value)
    big = cifti2.BrainModelAxis.from_mask(np.ones(32492, bool), name="CortexLeft")
    with pytest.raises(InputError, match="32492 vertices, not fsaverage5's 10242"):
        read_dtseries(_cifti(tmp_path / "fslr.dtseries.nii", [big]))
    (tmp_path / "junk.dtseries.nii").write_bytes(b"not a nifti file at all" * 20)
    with pytest.raises(InputError, match="cannot read .* as CIFTI-2"):
        read_dtseries(tmp_path / "junk.dtseries.nii")
