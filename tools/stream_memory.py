"""GPU memory that streams leave behind: rounds of live streams through one set of models, the
memory still allocated after each round ends, and where the survivors were allocated.

A server that runs for days sees streams come and go; each one that ends must give its memory
back. This runs `--rounds` rounds of `--streams` streams (`tribe_stream.bench.run_streams`, the
bench's own path), frees what Python can (gc, CUDA cache) after each, and prints the allocated
memory. With torch's allocation history on, it then groups the blocks still allocated that were
made during the rounds by the Python stack that made them (the deepest project frames first),
with the memory pool they sit in (a nonzero pool is a CUDA graph's private one).

    python tools/stream_memory.py [--checkpoint SRC] [--streams 2] [--rounds 3] [--seconds 8]
        [--text-steps graphs|compiled|eager]

No `--checkpoint`: full-size random weights, as `tribe-stream bench` builds them. `--text-steps`
picks how each stream's text steps run (to tell which of them keeps memory): `graphs` (the
default: CUDA graphs of the compiled layer pieces), `compiled` (compiled pieces, no graphs),
`eager`. It also looks for Python tensors on the surviving blocks and names what holds them.

The verdict line says whether memory stayed flat from the first round's end to the last's (the
text extractor keeps the decoders of ended streams for the next ones, `TextExtractor.keep_idle`,
so round 1 may add memory, later rounds must not); exit status 1 when it grew.
"""

from __future__ import annotations

import argparse
import collections
import gc
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def allocated_gib() -> float:
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**30


def allocated_blocks(snapshot: dict):
    """(address, size, pool, frames) of every allocated block in a `_snapshot()`."""
    for seg in snapshot["segments"]:
        pool = str(tuple(seg.get("segment_pool_id", (0, 0))))
        addr = seg["address"]
        for block in seg["blocks"]:
            if block["state"] == "active_allocated":
                yield addr, block["size"], pool, block.get("frames", [])
            addr += block["size"]


def survivors(snapshot: dict, before: set[int]) -> list[tuple[int, str, tuple]]:
    """(bytes, pool, stack) of each allocated block that was not allocated in `before`."""
    return [
        (size, pool, tuple(
            (f["filename"], f"{Path(f['filename']).name}:{f['line']} {f['name']}")
            for f in frames if f["filename"].endswith(".py")
        ))
        for addr, size, pool, frames in allocated_blocks(snapshot)
        if addr not in before
    ]  # fmt: skip


def allocated_addresses(snapshot: dict) -> set[int]:
    return {addr for addr, *_ in allocated_blocks(snapshot)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="random", help="default: full-size random weights")
    ap.add_argument("--streams", type=int, default=2, help="streams per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="each round's length")
    ap.add_argument("--top", type=int, default=8, help="stacks to print")
    ap.add_argument("--text-steps", choices=("graphs", "compiled", "eager"), default="graphs")
    ap.add_argument("--tolerance-gib", type=float, default=0.05, help="growth still called flat")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("stream_memory: needs a CUDA GPU (it measures GPU memory)")

    from tribe_stream import bench
    from tribe_stream.extractors import text
    from tribe_stream.sources.clip import make_clip
    from tribe_stream.stream.producer import warm_up

    if args.text_steps != "graphs":  # every stream's LiveText made with these steps
        live = text.TextExtractor.live
        fuse = args.text_steps == "compiled"
        text.TextExtractor.live = lambda self, overflow="exact", token_steps=None, _f=None: live(
            self, overflow, token_steps=False, fuse=fuse
        )
    o = bench.BenchOptions(
        checkpoint=args.checkpoint, seconds=args.seconds, warmup_s=2.0, device="cuda"
    ).validate()
    models = bench.build_models(o)
    words, _ = bench.bench_words(o, args.seconds + 5, False)
    clip = make_clip(Path(tempfile.mkdtemp()) / "clip.mp4", args.seconds + 2, speech=True)
    warm_up(models.extractors, models.engine, 30.0, streams=args.streams)
    models.models.warmed_for = args.streams  # every round's Stream reuses it
    bench._release("cuda")
    print(f"{models.description}; models and warm-up: {allocated_gib():.2f} GiB", flush=True)
    torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="python")
    before = allocated_addresses(torch.cuda.memory._snapshot())
    after = []
    for r in range(1, args.rounds + 1):
        report = bench.run_streams(models, clip, args.streams, o, words)
        del report
        bench._release("cuda")
        after.append(allocated_gib())
        print(f"after round {r} ({args.streams} streams ended): {after[-1]:.2f} GiB", flush=True)
    growth = after[-1] - after[0]
    flat = growth <= args.tolerance_gib
    per = f", {growth / (len(after) - 1):+.2f} GiB a round" if len(after) > 1 else ""
    print(
        f"verdict: {'flat' if flat else 'NOT flat'} ({growth:+.2f} GiB from round 1's end to "
        f"round {len(after)}'s{per})"
    )
    tx = models.extractors.text
    if tx is not None and hasattr(tx, "release_idle"):
        n = tx.release_idle()
        bench._release("cuda")
        print(f"{n} idle text decoders released: {allocated_gib():.2f} GiB", flush=True)
    gc.collect()
    left = survivors(torch.cuda.memory._snapshot(), before)
    torch.cuda.memory._record_memory_history(enabled=None)
    total = sum(size for size, _, _ in left)
    print(
        f"\n{len(left)} blocks made during the rounds are still allocated: {total / 2**30:.2f} GiB"
    )
    groups: dict[tuple, int] = collections.Counter()
    for size, pool, frames in left:
        ours = [where for path, where in frames if "/tribe_stream/" in path or "/engines/" in path]
        groups[(pool, tuple(ours[:6] or [where for _, where in frames[:6]]))] += size
    for (pool, frames), size in groups.most_common(args.top):
        print(f"\n{size / 2**20:.1f} MiB in pool {pool}, allocated at:")
        for f in frames:
            print(f"    {f}")
    holders(left_ranges(torch.cuda.memory._snapshot(), before))
    return 0 if flat else 1


def left_ranges(snapshot: dict, before: set[int]) -> list[tuple[int, int]]:
    """(start, end) of each allocated block not allocated in `before`."""
    return sorted((a, a + size) for a, size, _, _ in allocated_blocks(snapshot) if a not in before)


def holders(ranges: list[tuple[int, int]], show: int = 5) -> None:
    """Python tensors whose storage lies in `ranges`, and the types that refer to them."""
    import bisect

    starts = [a for a, _ in ranges]
    found = []
    for obj in gc.get_objects():
        try:
            if not (issubclass(type(obj), torch.Tensor) and obj.is_cuda):
                continue
            ptr = obj.untyped_storage().data_ptr()
        except Exception:  # noqa: BLE001 - fake or odd tensors: not what we look for
            continue
        i = bisect.bisect_right(starts, ptr) - 1
        if i >= 0 and ranges[i][0] <= ptr < ranges[i][1]:
            found.append(obj)
    print(f"\nPython tensors on those blocks: {len(found)}")
    for t in found[:show]:
        refs = [type(r).__name__ for r in gc.get_referrers(t) if r is not found]
        print(f"    {tuple(t.shape)} {t.dtype}: referred to by {refs[:6]}")


if __name__ == "__main__":
    sys.exit(main())
