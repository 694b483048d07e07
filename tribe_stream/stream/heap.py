"""The C heap of a long-running server: how many glibc arenas it may keep, and what it holds.

glibc gives a thread that meets a locked arena a new one (up to 8 per core) and never frees an
arena: a server whose streams each bring short-lived threads (a file's decoder, a speech
recogniser) spreads its ever-varying blocks over many arenas, each fragmented on its own.
`limit_arenas` caps them (as `MALLOC_ARENA_MAX` does); `heap_stats` says where resident memory
is (glibc's own totals, and `/proc/self/smaps` grouped: main heap, arena heaps, other anonymous
maps, files). Linux and glibc only; elsewhere both are no-ops.
"""

from __future__ import annotations

import ctypes
import os

_M_ARENA_MAX = -8  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_ARENA_ALIGN = 64 << 20  # a secondary arena's heap: HEAP_MAX_SIZE-aligned (64 MB, 64-bit)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_arenas(n: int | None = None) -> int | None:
    """Cap glibc's malloc arenas at `n` (default: `MALLOC_ARENA_MAX` if set, else 2); returns
    the cap set, or None off glibc. Call early: arenas made before stay."""
    if n is None:
        n = int(os.environ.get("MALLOC_ARENA_MAX") or 2)
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return None
    return n if libc.mallopt(_M_ARENA_MAX, int(n)) == 1 else None


def fix_mmap_threshold(nbytes: int = 1 << 20) -> int | None:
    """Blocks of `nbytes` and more from their own mmap, given back whole when freed; this also
    stops glibc raising the threshold (up to 32 MB) each time such a block is freed, after which
    frames and tensors of MBs land in the arenas and fragment them. Returns it, None off glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return None
    return nbytes if libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1 else None


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (k, ctypes.c_size_t)
        for k in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


def heap_stats() -> dict[str, float]:
    """MB: glibc's heap obtained from the system (`malloc_arena`, all arenas), in use and free
    in it, in mmapped blocks; resident memory of the main heap (`rss_brk`), of arena heaps
    (`rss_arenas`, with their count), of other anonymous maps and of file maps."""
    out: dict[str, float] = {}
    libc = _libc()
    if libc is not None and hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
        m = libc.mallinfo2()
        for key, field in (("malloc_arena", "arena"), ("malloc_used", "uordblks"),
                           ("malloc_free", "fordblks"), ("malloc_mmap", "hblkhd")):  # fmt: skip
            out[key] = round(getattr(m, field) / 2**20, 1)
    groups = {"rss_brk": 0, "rss_arenas": 0, "rss_anon": 0, "rss_files": 0}
    arenas = 0
    try:
        with open("/proc/self/smaps") as f:
            key = None
            for line in f:
                head = line.split(maxsplit=6)
                if "-" in head[0] and len(head) >= 5:  # a map's first line
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    name = head[5].strip() if len(head) > 5 else ""
                    if name == "[heap]":
                        key = "rss_brk"
                    elif name.startswith("/"):
                        key = "rss_files"
                    elif name:
                        key = None  # stacks, vdso
                    elif lo % _ARENA_ALIGN == 0 and hi - lo <= _ARENA_ALIGN:
                        key, arenas = "rss_arenas", arenas + 1
                    else:
                        key = "rss_anon"
                elif head[0] == "Rss:" and key is not None:
                    groups[key] += int(head[1])
    except OSError:
        return out
    out.update({k: round(v / 1024, 1) for k, v in groups.items()})
    out["arenas"] = arenas
    return out
