"""The w2v-BERT input features (SeamlessM4TFeatureExtractor: Kaldi-style 80-mel log filterbank,
per-mel normalisation, pairs of frames stacked) computed in torch, so they can run on the GPU.

The filters and window are taken from the processor object itself, so the numbers are its own;
`tests/test_extractors_audio.py` checks this against the processor's numpy implementation.
"""

from __future__ import annotations

import numpy as np
import torch

from tribe_stream import AUDIO_RATE

FRAME_LENGTH = 400
HOP_LENGTH = 160
FFT_LENGTH = 512
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07


def _frame_basis(window: np.ndarray) -> np.ndarray:
    """`(400, 2*257)` matrix taking a raw frame to its spectrum's (real, imaginary) parts.

    DC removal, pre-emphasis, the window and the zero-padded 512-point DFT are all linear, so
    they fold into one matrix: one matmul per chunk instead of an FFT pipeline.
    """
    n = FRAME_LENGTH
    dc = np.eye(n) - 1.0 / n
    pre = np.eye(n)
    pre[0, 0] = 1.0 - PREEMPHASIS
    pre[np.arange(n - 1), np.arange(1, n)] = -PREEMPHASIS
    k = np.arange(n)[:, None]
    f = np.arange(FFT_LENGTH // 2 + 1)[None, :]
    angle = 2.0 * np.pi * k * f / FFT_LENGTH
    dft = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
    return dc @ pre @ (window.astype(np.float64)[:, None] * dft)


class TorchFbank:
    """`__call__(wave)`: mono 16 kHz float waveform (torch) -> `(n_frames // 2, 160)` input features."""

    def __init__(self, processor, device: str | torch.device = "cpu"):
        self.stride = int(getattr(processor, "stride", 2))
        self.padding_value = float(getattr(processor, "padding_value", 0.0))
        self.sampling_rate = int(getattr(processor, "sampling_rate", AUDIO_RATE))
        self.mel = torch.as_tensor(
            np.asarray(processor.mel_filters), dtype=torch.float32, device=device
        )
        self.basis = torch.as_tensor(
            _frame_basis(np.asarray(processor.window)), dtype=torch.float32, device=device
        )
        self.device = device

    def n_frames(self, n_samples: int) -> int:
        """Number of model frames (after stacking) for `n_samples` samples."""
        raw = 1 + (n_samples - FRAME_LENGTH) // HOP_LENGTH if n_samples >= FRAME_LENGTH else 0
        return (raw + self.stride - 1) // self.stride

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.to(self.device, torch.float32).reshape(-1) * 32768.0
        if x.numel() < FRAME_LENGTH:
            raise ValueError(f"audio of {x.numel()} samples is shorter than one 25 ms frame")
        frames = x.unfold(0, FRAME_LENGTH, HOP_LENGTH)  # (n, 400)
        parts = frames @ self.basis  # (n, 2*257): real and imaginary parts of the spectrum
        n_bins = parts.shape[1] // 2
        spec = parts[:, :n_bins].square() + parts[:, n_bins:].square()  # power (n, 257)
        logmel = torch.clamp(spec @ self.mel, min=MEL_FLOOR).log()  # (n, 80)
        mean = logmel.mean(dim=0, keepdim=True)
        lone = logmel.shape[0] < 2  # the unbiased variance of one frame: 0, not NaN
        var = torch.zeros_like(mean) if lone else logmel.var(dim=0, keepdim=True, unbiased=True)
        feats = (logmel - mean) / torch.sqrt(var + 1e-7)
        rem = feats.shape[0] % self.stride
        if rem:
            pad = feats.new_full((self.stride - rem, feats.shape[1]), self.padding_value)
            feats = torch.cat([feats, pad])
        return feats.reshape(-1, feats.shape[1] * self.stride)
