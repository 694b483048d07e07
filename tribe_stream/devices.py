"""Where models run and in what precision: the one place that picks a device and a dtype.

Defaults: a CUDA GPU when torch sees one, else the CPU; half precision on a GPU (float16, or
the caller's preferred half type, e.g. bfloat16 for Llama), float32 on a CPU. Asking for CUDA on
a machine without it is a one-line error, raised before any model loads.
"""

from __future__ import annotations

from typing import Any

from tribe_stream.errors import InputError

DTYPE_NAMES = ("float32", "float16", "bfloat16")


def torch_dtype(dtype: Any) -> Any:
    """A `torch.dtype` from its name (`float32`, `float16`, `bfloat16`) or a torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    try:
        return table[str(dtype)]
    except KeyError:
        raise InputError(
            f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_NAMES)}"
        ) from None


def dtype_name(dtype: Any) -> str:
    """The name of a dtype given as a name or a torch dtype (`torch.float16` -> `float16`)."""
    return str(dtype).removeprefix("torch.")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_device(device: str | None = None) -> str:
    """`None`/`auto` -> `cuda` when a GPU is there, else `cpu`; `cuda[:N]` only if it exists."""
    if device in (None, "", "auto"):
        return "cuda" if cuda_available() else "cpu"
    name = str(device)
    if name.startswith("cuda"):
        if not cuda_available():
            raise InputError(
                f"device {name!r} asked for, but torch sees no CUDA GPU here; use --device cpu "
                "(or install a CUDA build of torch)"
            )
        return name
    if name == "cpu" or name.startswith("mps"):
        return name
    raise InputError(f"unknown device {name!r}; use auto, cpu or cuda (cuda:N for GPU N)")


def pick_dtype(device: str, dtype: Any = None, half: Any = None) -> Any:
    """The torch dtype to run in: `dtype` when given, else `half` (default float16) on a GPU and
    float32 on a CPU."""
    import torch

    if dtype is not None:
        return torch_dtype(dtype)
    if str(device).startswith("cuda"):
        return torch_dtype(half) if half is not None else torch.float16
    return torch.float32


def upload(x: Any, device: Any) -> Any:
    """A CPU tensor onto `device` without waiting: to a GPU through pinned memory, so the copy
    neither waits for the work queued on the stream (as one from pageable memory does) nor
    holds the caller; the pinned buffer is kept until the copy is done (torch's host cache)."""
    import torch

    if torch.device(device).type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)
