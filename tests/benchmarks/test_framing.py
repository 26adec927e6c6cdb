"""Benchmark: tieline.kit.framing.LineFramer, against the inline line loop it replaced.

The simulator's codec and the driver and API templates used to split lines with their own
loop (the baseline below, copied from the simulator codec before the change: one
``bytearray`` with its prefix deleted per line, and a scan offset). They now use
:class:`tieline.kit.framing.LineFramer`. Each case feeds the same stream of ``TALLY`` lines,
as a router's state dump sends them, and counts lines per second, best of several runs:

* **whole**: 200,000 lines in one chunk (a large dump read at once);
* **segments**: the same in 1,460-byte pieces (one TCP segment each);
* **byte by byte**: 20,000 lines, one byte per call (the worst case, a serial line).

Run: ``python -m pytest tests/benchmarks/test_framing.py -s`` or
``python tests/benchmarks/test_framing.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable

from tieline.errors import RemoteProtocolError
from tieline.kit.framing import LineFramer

MAX_LINE = 4096


class InlineLoop:
    """The simulator codec's line loop before LineFramer (the baseline)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0
        self._skipping = False

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | None:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if self._skipping:
                if end < 0:
                    buffer.clear()
                    self._scanned = 0
                    return None
                del buffer[: end + 1]
                self._scanned = 0
                self._skipping = False
                continue
            if end < 0:
                if len(buffer) >= self.max_line:
                    head = bytes(buffer[:64])
                    buffer.clear()
                    self._scanned = 0
                    self._skipping = True
                    raise RemoteProtocolError(f"line longer than {self.max_line} bytes", head)
                self._scanned = len(buffer)
                return None
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            self._scanned = 0
            if end + 1 > self.max_line:
                raise RemoteProtocolError(f"line longer than {self.max_line} bytes", line[:64])
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip(b" "):
                return line


def stream(lines: int) -> bytes:
    return b"".join(b"TALLY %d %d %d\n" % (i % 16 + 1, i % 4096 + 1, i % 977 + 1)
                    for i in range(lines))


def chunks(data: bytes, size: int) -> Iterable[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def run_once(make: Callable[[], object], pieces: list[bytes], expected: int) -> float:
    """Seconds to take every line out of ``pieces``."""
    framer = make()
    count = 0
    start = time.perf_counter()
    for piece in pieces:
        framer.receive_data(piece)  # type: ignore[attr-defined]
        while framer.next_line() is not None:  # type: ignore[attr-defined]
            count += 1
    elapsed = time.perf_counter() - start
    assert count == expected
    return elapsed


CASES = [("whole", 200_000, None), ("segments", 200_000, 1460), ("byte by byte", 20_000, 1)]


def measure(runs: int = 15) -> list[tuple[str, float, float]]:
    """Lines per second of each, best of ``runs``, the two taking turns (so that a busy
    moment of the machine does not fall on one of them only)."""
    rows = []
    for name, lines, size in CASES:
        data = stream(lines)
        pieces = [data] if size is None else list(chunks(data, size))
        best = {"framer": float("inf"), "inline": float("inf")}
        for _ in range(runs):
            best["framer"] = min(best["framer"], run_once(
                lambda: LineFramer(MAX_LINE, head=64), pieces, lines))
            best["inline"] = min(best["inline"], run_once(InlineLoop, pieces, lines))
        rows.append((name, lines / best["framer"], lines / best["inline"]))
    return rows


def report(rows: list[tuple[str, float, float]]) -> str:
    out = ["| case | LineFramer (lines/s) | inline loop before (lines/s) | ratio |",
           "|---|---|---|---|"]
    for name, framer, inline in rows:
        out.append(f"| {name} | {framer:,.0f} | {inline:,.0f} | {framer / inline:.2f} |")
    return "\n".join(out)


def test_framing_throughput():
    rows = measure()
    print()
    print(report(rows))


if __name__ == "__main__":
    print(report(measure()))
    sys.exit(0)
