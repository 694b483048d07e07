"""Words with their times as a live source (`bench --transcript`, `Media(words=)`)."""

from __future__ import annotations

from tribe_stream.types import Chunk, Word


class WordSource:
    """Words of a transcript handed over as `words` chunks when the stream clock passes each
    word's end (as a recogniser would hear them, without its delay)."""

    def __init__(self, words: list[Word], clock):
        self.words = sorted(words, key=lambda w: w.onset)
        self.clock = clock
        self.counters: dict[str, int] = {"words_fed": 0}
        self._i = 0
        self._stopped = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._stopped = True

    @property
    def ended(self) -> bool:
        return self._stopped or self._i >= len(self.words)

    def poll(self) -> list[Chunk]:
        now = self.clock.now()
        out = []
        while self._i < len(self.words) and self._end(self.words[self._i]) <= now:
            w = self.words[self._i]
            out.append(Chunk("words", [w], w.onset, self._end(w), now))
            self._i += 1
        self.counters["words_fed"] = self._i
        return out

    @staticmethod
    def _end(w: Word) -> float:
        return w.onset + w.duration
