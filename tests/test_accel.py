"""`accel.sdpa_context`: torch's attention-kernel choice is process-wide, so extractors running
side by side (the sound's features beside the video, `extractors/offline.py`) take turns."""

from __future__ import annotations

import threading
import time

import torch

from tribe_stream.extractors.accel import sdpa_context


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
