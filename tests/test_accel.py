"""`accel.sdpa_context`: torch's attention-kernel choice is process-wide, so extractors running
side by side (the sound's features beside the video, `extractors/offline.py`) take turns; so do
calls of compiled blocks, which must never run while another thread compiles."""

from __future__ import annotations

import threading
import time

import torch

from tribe_stream.extractors.accel import compile_blocks, sdpa_context


def priority() -> list[int]:
    """torch's current SDPA backend order (what `sdpa_kernel(..., set_priority=True)` sets)."""
    return list(torch._C._get_sdp_priority_order())


def test_attention_choices_of_two_threads_take_turns_and_leave_torch_as_it_was():
    before = priority()
    inside, release = threading.Event(), threading.Event()
    seen: list[tuple[str, list[int]]] = []

    def first():
        with sdpa_context(("math",)):
            seen.append(("first", priority()))
            inside.set()
            release.wait(10)

    def second():
        inside.wait(10)
        with sdpa_context(("flash",)):
            seen.append(("second", priority()))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    inside.wait(10)
    time.sleep(0.3)  # time enough for the second to enter, were it not made to wait
    assert [who for who, _ in seen] == ["first"]
    release.set()
    for t in threads:
        t.join(10)
    assert [who for who, _ in seen] == ["first", "second"]
    assert seen[0][1] != seen[1][1]  # each block had its own choice...
    assert priority() == before  # ...and torch's is as it was after both


class Block(torch.nn.Module):
    """A layer of our own (torch's own modules called directly are not traced by dynamo)."""

    def __init__(self, n_out: int):
        super().__init__()
        self.lin = torch.nn.Linear(8, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * torch.relu(self.lin(x))


def test_a_compile_holds_off_other_threads_compiled_calls():
    """A compile traces with process-wide state set (torch.fx's tracing flag, which
    torch.compile's entry refuses: "Detected that you are using FX to symbolically trace a
    dynamo-optimized function", seen on fresh GPUs with the sound's features compiling beside
    the video's compiled layers). While one thread compiles a block, another thread's call of an
    already compiled block waits, and runs once the compile ends."""
    from torch._dynamo.callback import callback_handler

    torch.manual_seed(0)
    warm, cold = Block(8), Block(4)
    assert compile_blocks([warm, cold]) == 2
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = warm(x)  # compiled now: the other thread's call below compiles nothing
        entered, done = threading.Event(), threading.Event()
        during: list[bool] = []
        other: list[torch.Tensor] = []

        def call_warm() -> None:
            entered.set()
            with torch.no_grad():  # grad mode is per thread: as warm's first call, no recompile
                other.append(warm(x))
            done.set()

        def on_compile_start(*_args) -> None:  # in the compiling thread, inside the compile
            if during:
                return
            thread = threading.Thread(target=call_warm)
            thread.start()
            entered.wait(10)
            during.append(done.wait(1.0))  # did the other call finish inside the compile?

        callback_handler.register_start_callback(on_compile_start)
        try:
            out = cold(x)  # first call: compiles
        finally:
            callback_handler.remove_start_callback(on_compile_start)
        assert done.wait(30)
    assert during == [False]  # held off while the compile ran...
    torch.testing.assert_close(other[0], expected)  # ...and ran after it, with the same result
    torch.testing.assert_close(out, 2 * torch.relu(cold.lin(x)))
