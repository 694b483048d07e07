"""GPU speed-ups shared by the extractors: regional compilation, fused projections, attention
kernel choice, CUDA graphs.

Each keeps the model's own modules and numbers; only how they are launched changes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)

SDPA_BACKENDS = ("cudnn", "flash", "efficient", "math")

_captures = 0  # CudaGraphStep captures made in this process


def compile_events() -> dict[str, int]:
    """How many graphs `torch.compile` has compiled and CUDA graphs `CudaGraphStep` has captured
    in this process so far: a change while a stream runs means a shape the warm-up missed
    (seconds of compiling, or tens of ms of capture, inside a live second)."""
    compiles = 0
    if "torch._dynamo" in sys.modules:  # never imported: nothing was compiled
        from torch._dynamo.utils import counters

        compiles = int(counters["stats"]["unique_graphs"])
    return {"compiles": compiles, "graph_captures": _captures}


def compile_blocks(
    blocks: Iterable[nn.Module], mode: str | None = None, dynamic: bool | None = False
) -> int:
    """`torch.compile` each repeated block in place (regional compilation: the identical layers
    share one compiled graph, so compiling a 40-layer model costs about one layer). Returns the count.

    `dynamic=None` lets a length that changes (a live audio context that grows) become a
    symbolic size after its first change instead of one recompile per length. Calls of compiled
    blocks from several threads take turns (`_COMPILED_CALLS`), so none runs during a compile."""
    # transformers' layers share one checkpointing wrapper: every model and shape counts against
    # the same recompile budget, so give it room (a new shape must not silently fall back to eager)
    dyn = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dyn, name):
            setattr(dyn, name, max(getattr(dyn, name), 64))
    n = 0
    for block in blocks:
        block.compile(dynamic=dynamic, mode=mode)
        block._compiled_call_impl = _in_turn(block._compiled_call_impl)
        n += 1
    return n


# A compile sets process-wide state while it traces (torch.fx's "symbolic tracing" flag, which
# torch.compile's entry checks; in newer torch also `torch.compiler.is_compiling()`): a compiled
# block that another thread calls meanwhile fails with "Detected that you are using FX to
# symbolically trace a dynamo-optimized function" (seen on fresh H100s: the sound's features,
# `offline.extract_media`, compiling beside the video's compiled layers). So calls of compiled
# blocks take turns, and a call that compiles holds the turn for its whole compile. On a GPU a
# turn only queues one block's kernels (no wait for them), so warm threads still overlap.
_COMPILED_CALLS = threading.RLock()


def _in_turn(call: Callable) -> Callable:
    """`call` (a block's compiled `__call__`), run while holding the compiled-calls lock."""

    @functools.wraps(call)
    def in_turn(*args, **kwargs):
        with _COMPILED_CALLS:
            return call(*args, **kwargs)

    return in_turn


def fused_linear(*linears: nn.Linear) -> nn.Linear:
    """Several `nn.Linear` of one input stacked into one (e.g. query, key and value: one product)."""
    first = linears[0]
    out = nn.Linear(
        first.in_features,
        sum(lin.out_features for lin in linears),
        bias=first.bias is not None,
        device=first.weight.device,
        dtype=first.weight.dtype,
    )
    with torch.no_grad():
        out.weight.copy_(torch.cat([lin.weight for lin in linears]))
        if first.bias is not None:
            out.bias.copy_(torch.cat([lin.bias for lin in linears]))
    return out.requires_grad_(False)


# torch's SDPA kernel choice is process-wide, not per thread: extractors that run side by side
# (the file's sound beside its video, `offline.extract_media`) take turns with their choices
_SDPA_CHOICE = threading.RLock()


def sdpa_context(preference: Sequence[str] | None) -> contextlib.AbstractContextManager:
    """Prefer these scaled-dot-product-attention kernels, in order (e.g. `("cudnn", "flash")`);
    the rest stay allowed after them. None: torch's own choice. The choice holds for the
    `with` block; another thread's block with a choice waits until this one ends (on a GPU a
    block only queues work, so the wait is short; on a CPU it computes)."""
    if not preference:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    unknown = [p for p in preference if p not in names]
    if unknown:
        raise ValueError(f"unknown attention kernels {unknown}; choose from {SDPA_BACKENDS}")
    order = [names[p] for p in preference] + [
        names[p] for p in SDPA_BACKENDS if p not in preference
    ]
    try:
        choice = sdpa_kernel(order, set_priority=True)
    except TypeError:  # older torch: no priority order, only an allow-list
        choice = sdpa_kernel(order)
    return _held(choice)


@contextlib.contextmanager
def _held(choice: contextlib.AbstractContextManager):
    with _SDPA_CHOICE, choice:
        yield


class CudaGraphStep:
    """Replays one CUDA-graph capture of `fn(*static_inputs)`: copy new inputs in, replay, clone out.

    For small fixed-shape steps (one token of a decoder) where kernel launches, not arithmetic,
    set the time. `fn` must not synchronise with the host or change shapes between calls.
    """

    def __init__(
        self, fn: Callable[..., torch.Tensor], example: Sequence[torch.Tensor], warmup: int = 2
    ):
        global _captures
        _captures += 1
        self.inputs = [x.clone() for x in example]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        # never with autograd: a step writing into a buffer (a KV cache) would tie it into an
        # autograd cycle no gc collects, and the graph's saved tensors with it
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.output = fn(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for dst, src in zip(self.inputs, inputs, strict=True):
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.output.clone()

    def release(self) -> None:
        """Free the graph and its private memory pool now (its static tensors too), whoever
        still refers to this object; it must not be called again."""
        self.inputs, self.output = [], None
        self.graph.reset()
