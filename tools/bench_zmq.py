"""Publish -> receive latency and throughput of the tribe-stream wire format on loopback,
side by side with plain-pyzmq baselines, in one run.

    python tools/bench_zmq.py                 # all variants, defaults below
    python tools/bench_zmq.py --json out.json # also save the numbers
    python tools/bench_zmq.py --codec [OLD.py ...]  # in-process encode/decode cost only

Each run: a sender process and a receiver process (fresh, spawned), one TCP connection over
127.0.0.1, a 20,484-value prediction per message. Runs are interleaved across variants and
repeated (`--repeat`); the table gives the median over repeats and the range of p99.

- latency: `--messages` messages at `--rate` Hz (after `--warmup`), from the moment `send` is
  called (stamped in the header with time.time()) to the moment the receiver holds the decoded
  array (time.time(); both processes read the same clock). p50/p90/p99/max.
- throughput: `--burst` messages as fast as the sender can go; messages per second at the
  receiver (first to last message), and how many were lost (none, with these queue sizes).

Variants:
- raw-f32 (baseline): what one writes by hand with pyzmq: PUB/SUB, `[topic, JSON header,
  float32 bytes]`, `recv_multipart()` with copies, `np.frombuffer`; no validation, no gap
  tracking. The floor: the cost of ZeroMQ and the bytes themselves.
- pickle-f32 (baseline): `send_pyobj({"header": ..., "values": array})` / `recv_pyobj()`, the
  common shortcut (and unsafe on untrusted input).
- ours-f32: `Publisher(dtype="float32")` -> `Subscriber`: validated header, sequence tracking,
  read-only zero-copy view.
- ours-f16: the default wire format (float16 payload, half the bytes), NumPy's float16 cast.
- ours-f16-torch: the same with torch already imported in the publishing process, as it is in
  the pipeline: the publisher then casts with torch (same bits, faster).

The ratios printed at the end compare ours-f16-torch (what the pipeline runs) to raw-f32.

`--codec` times protocol.py's encoder and decoder alone, in this process (no sockets): the
installed `tribe_stream.protocol` and any other copies of the module named (e.g. an older one
from `git show HEAD~1:tribe_stream/protocol.py > /tmp/old.py`), interleaved; per operation the
best of `--repeat` (at least 5) x 20 short runs, which misses most of a shared machine's noise.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import socket
import sys
import time

import numpy as np

N = 20484
VARIANTS = ("raw-f32", "pickle-f32", "ours-f32", "ours-f16", "ours-f16-torch")


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


# -- receiver (a fresh process) -----------------------------------------------------------------


def receiver(variant: str, url: str, total: int, first_lat: int, first_burst: int, hwm: int, conn):
    import zmq

    lat: list[float] = []
    burst_times: list[float] = []
    got = 0
    if variant.startswith("ours"):
        from tribe_stream.client import Subscriber

        sub = Subscriber(url, hwm=hwm)

        def recv(timeout_ms):
            msg = sub.recv(timeout=timeout_ms / 1000)
            if msg is None:
                return None
            _ = msg.values  # (20484,) read-only view
            return msg.seq, msg.header["publish_wall"]

        close = sub.close
    else:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(url)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)

        def recv(timeout_ms):
            if not poller.poll(timeout_ms):
                return None
            if variant == "raw-f32":
                frames = sock.recv_multipart()
                header = json.loads(frames[1])
                _ = np.frombuffer(frames[2], dtype="<f4")
            else:
                obj = sock.recv_pyobj()
                header = obj["header"]
                _ = obj["values"]
            return header["seq"], header["t"]

        def close():
            sock.close(linger=0)
            ctx.term()

    conn.send("ready")
    idle_limit = 30_000
    while got < total:
        r = recv(idle_limit)
        t = time.time()
        if r is None:
            break  # nothing for a while: the rest was lost
        idle_limit = 3000
        seq, t_sent = r
        got += 1
        if first_lat <= seq < first_burst:
            lat.append(t - t_sent)
        elif seq >= first_burst:
            burst_times.append(t)
    close()
    conn.send({"lat": lat, "burst": burst_times, "got": got})


# -- sender (this process) ----------------------------------------------------------------------


class Sender:
    def __init__(self, variant: str, url: str, hwm: int):
        import zmq

        self.variant = variant
        self.pool = np.random.default_rng(0).standard_normal((8, N)).astype(np.float32)
        if variant.startswith("ours"):
            from tribe_stream.publish import Publisher

            dtype = "float32" if variant == "ours-f32" else "float16"
            self.pub = Publisher(url, dtype=dtype, hwm=hwm, model={"name": "bench"})
        else:
            self.ctx = zmq.Context()
            self.sock = self.ctx.socket(zmq.PUB)
            self.sock.setsockopt(zmq.SNDHWM, hwm)
            self.sock.bind(url)

    def wait(self) -> None:
        if self.variant.startswith("ours"):
            assert self.pub.wait_for_subscribers(1, timeout=30), "receiver never subscribed"
        time.sleep(0.5)  # PUB/SUB: let the subscription settle

    def send(self, i: int) -> None:
        values = self.pool[i % 8]
        if self.variant.startswith("ours"):
            from tribe_stream.types import Prediction

            self.pub.send(Prediction(i, values, (i, i + 1.0), i + 5.0, {"capture": float(i)}))
            return
        t = time.time()
        header = {
            "seq": i,
            "t": t,
            "second": i,
            "stimulus": [i, i + 1.0],
            "bold_time": i + 5.0,
            "dtype": "float32",
            "shape": [N],
        }
        if self.variant == "raw-f32":
            self.sock.send_multipart([b"prediction", json.dumps(header).encode(), values])
        else:
            self.sock.send_pyobj({"header": header, "values": values})

    def close(self) -> None:
        if self.variant.startswith("ours"):
            self.pub.close()
        else:
            self.sock.close(linger=1000)
            self.ctx.term()


def sender_proc(
    variant: str, url: str, warm: int, n_lat: int, n_burst: int, rate: float, hwm, conn
):
    if variant == "ours-f16-torch":
        import torch  # noqa: F401  (loaded, as in the pipeline process)
    sender = Sender(variant, url, hwm)
    conn.send("bound")
    conn.recv()  # the receiver is connected
    sender.wait()
    t0 = time.perf_counter()
    for i in range(warm + n_lat):
        target = t0 + i / rate
        while (d := target - time.perf_counter()) > 0:
            time.sleep(d)
        sender.send(i)
    t_burst = time.perf_counter()
    for i in range(warm + n_lat, warm + n_lat + n_burst):
        sender.send(i)
    conn.send(n_burst / (time.perf_counter() - t_burst))
    sender.close()


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """One measurement: sender and receiver each in a fresh process."""
    ctx = mp.get_context("spawn")
    url = free_url()
    warm, n_lat, n_burst = args.warmup, args.messages, args.burst
    total = warm + n_lat + n_burst
    hwm = n_burst + 1000  # no queue overflow: we measure the transport, not the drop policy
    s_parent, s_child = ctx.Pipe()
    r_parent, r_child = ctx.Pipe()
    sender = ctx.Process(
        target=sender_proc,
        args=(variant, url, warm, n_lat, n_burst, args.rate, hwm, s_child),
        daemon=True,
    )
    receiver_p = ctx.Process(
        target=receiver, args=(variant, url, total, warm, warm + n_lat, hwm, r_child), daemon=True
    )
    sender.start()
    try:
        if not s_parent.poll(60):
            raise RuntimeError(f"{variant}: sender did not start")
        s_parent.recv()
        receiver_p.start()
        if not r_parent.poll(60):
            raise RuntimeError(f"{variant}: receiver did not start")
        r_parent.recv()
        s_parent.send("go")
        if not s_parent.poll(300) or not r_parent.poll(120):
            raise RuntimeError(f"{variant}: no result")
        send_rate = s_parent.recv()
        res = r_parent.recv()
    finally:
        sender.join(10)
        receiver_p.join(10)
    lat = np.array(res["lat"]) * 1e6
    burst = res["burst"]
    rate = (len(burst) - 1) / (burst[-1] - burst[0]) if len(burst) > 1 else float("nan")
    payload = N * (2 if "f16" in variant else 4)
    return {
        "variant": variant,
        "payload_bytes": payload,
        "lat_n": int(lat.size),
        "p50_us": float(np.percentile(lat, 50)),
        "p90_us": float(np.percentile(lat, 90)),
        "p99_us": float(np.percentile(lat, 99)),
        "max_us": float(lat.max()),
        "lost": (n_lat - int(lat.size)) + (n_burst - len(burst)),
        "msgs_per_s": float(rate),
        "send_msgs_per_s": float(send_rate),
        "MB_per_s": float(rate * payload / 1e6),
    }


def summarize(runs: list[dict]) -> dict:
    """Median over repeats of each number; the p99 range shows how noisy the machine is."""
    out = {k: runs[0][k] for k in ("variant", "payload_bytes")}
    for k in ("p50_us", "p90_us", "p99_us", "max_us", "msgs_per_s", "MB_per_s"):
        out[k] = float(np.median([r[k] for r in runs]))
    out["p99_range_us"] = [min(r["p99_us"] for r in runs), max(r["p99_us"] for r in runs)]
    out["lost"] = sum(r["lost"] for r in runs)
    out["runs"] = runs
    return out


def codec(files: list[str], repeat: int) -> None:
    """Microseconds per call of each codec operation, per protocol module (see the docstring)."""
    import importlib.util
    import timeit
    from functools import partial

    from tribe_stream import protocol
    from tribe_stream.types import Prediction

    modules = {"tribe_stream.protocol": protocol}
    for i, path in enumerate(files):
        spec = importlib.util.spec_from_file_location(f"_bench_protocol_{i}", path)
        assert spec is not None and spec.loader is not None, path
        modules[path] = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[path])
    values = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    p = Prediction(41, values, (41.0, 42.0), 46.0, {"capture": 41.98, "engine": 42.4}, {"d": 0})
    ids = {"stream_id": "cam0", "session": "3f9c2a1b7d4e8f60", "publish_wall": 1.79e9}
    cases = {}
    for name, m in modules.items():
        enc = m.PredictionEncoder(
            stream_id="cam0", session=ids["session"], model={"name": "bench"}, t0_wall=1.79e9
        )
        pred = enc.encode(p, seq=3, publish_wall=1.79e9)
        meta = m.stream_metadata(stream_id="cam0", dtype="float16", model={"name": "bench"})
        frames = {
            "decode prediction": pred,
            "decode status": m.encode_status({"lag_s": 0.1}, **ids, seq=1, next_seq=4),
            "decode metadata": m.encode_metadata(meta, **ids, seq=1, next_seq=4),
            "decode roi": m.encode_roi(values[:50], p, atlas="a", **ids, seq=1, prediction_seq=3),
            "reject bad seq": [pred[0], pred[1].replace(b'"seq":3', b'"seq":-3'), pred[2]],
        }
        ops = {"encode prediction": partial(enc.encode, p, seq=3, publish_wall=1.79e9)}
        ops.update({op: partial(_decode, m, f) for op, f in frames.items()})
        cases[name] = ops
    best: dict[tuple[str, str], float] = {}
    for _ in range(repeat):  # interleaved, so drifts of a shared machine hit every module alike
        for name, ops in cases.items():
            for op, fn in ops.items():  # short runs (~10 ms): the best one missed the neighbours
                t = min(timeit.Timer(fn).repeat(20, 10 if op.startswith("encode") else 500))
                t = t / (10 if op.startswith("encode") else 500)
                best[name, op] = min(best.get((name, op), float("inf")), t * 1e6)
    names = list(cases)
    print(
        f"{'us per call, best of ' + str(repeat * 20):24s}"
        + "".join(f"{n[-28:]:>30s}" for n in names)
    )
    for op in cases[names[0]]:
        print(f"{op:24s}" + "".join(f"{best[n, op]:30.2f}" for n in names))


def _decode(module, frames) -> None:
    try:
        module.decode(frames)
    except module.MessageRejected:
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000, help="latency-phase messages")
    p.add_argument("--rate", type=float, default=1000.0, help="latency-phase rate (Hz)")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--burst", type=int, default=3000, help="throughput-phase messages")
    p.add_argument("--repeat", type=int, default=3, help="runs per variant (median reported)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--json", help="write the results here")
    p.add_argument("--codec", nargs="*", metavar="OLD.py", help="time the codec alone (above)")
    args = p.parse_args()
    if args.codec is not None:
        codec(args.codec, max(args.repeat, 5))
        return 0

    import zmq

    print(
        f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, numpy {np.__version__}, "
        f"Python {platform.python_version()}, {mp.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    print(
        f"latency: {args.messages} messages at {args.rate:g} Hz after {args.warmup} warm-up; "
        f"throughput: {args.burst} messages unpaced; loopback TCP\n"
    )
    raw: dict[str, list[dict]] = {v: [] for v in args.variants}
    for rep in range(args.repeat):  # interleaved, so slow drifts of the machine hit all alike
        for variant in args.variants:
            r = run_variant(variant, args)
            raw[variant].append(r)
            print(
                f"  run {rep + 1}/{args.repeat} {variant:15s} p50 {r['p50_us']:7.1f} us  "
                f"p99 {r['p99_us']:7.1f} us  {r['msgs_per_s']:7.0f} msg/s  lost {r['lost']}",
                flush=True,
            )
    results = [summarize(raw[v]) for v in args.variants]
    print(f"\nmedian of {args.repeat} runs:")
    print(
        f"{'variant':15s} {'payload':>8s} {'p50 us':>8s} {'p90 us':>8s} {'p99 us':>8s} "
        f"{'p99 range':>15s} {'msg/s':>8s} {'MB/s':>7s} lost"
    )
    for r in results:
        lo, hi = r["p99_range_us"]
        print(
            f"{r['variant']:15s} {r['payload_bytes']:8d} {r['p50_us']:8.1f} {r['p90_us']:8.1f} "
            f"{r['p99_us']:8.1f} {f'{lo:.0f}-{hi:.0f}':>15s} {r['msgs_per_s']:8.0f} "
            f"{r['MB_per_s']:7.1f} {r['lost']}"
        )
    by = {r["variant"]: r for r in results}
    ours = by.get("ours-f16-torch") or by.get("ours-f16")
    base = by.get("raw-f32")
    if ours and base:
        print(f"\n{ours['variant']} vs raw-f32 (ratio ours/baseline):")
        for key in ("p50_us", "p99_us", "msgs_per_s", "payload_bytes"):
            print(
                f"  {key:14s} {ours[key]:10.1f} / {base[key]:10.1f} = {ours[key] / base[key]:.2f}"
            )
        print(f"  p99 under 1 ms: {'yes' if ours['p99_us'] < 1000 else 'NO'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
