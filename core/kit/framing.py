"""Line framing for text protocols, sans-I/O: bytes in, whole lines out, bounded.

Many router and control protocols are lines of ASCII text (Extron SIS, the Videohub
protocol, tieline's simulator, the plugin templates). :class:`LineFramer` is the part of
their codecs that finds the lines, so that each codec only parses them::

    framer = LineFramer(max_line=256)
    framer.receive_data(b"XPT 1 2 3\\r\\nPI")
    framer.next_line()   # b"XPT 1 2 3"
    framer.next_line()   # None: "PI" waits for its line end

It never holds more than one line: a line longer than ``max_line`` raises
:class:`~tieline.errors.RemoteProtocolError` once, and the rest of that line is skipped up
to its line end, so the framer (and the connection) can be used further. It does no I/O,
keeps no clock and raises nothing else.
"""

from __future__ import annotations

from ..errors import RemoteProtocolError

__all__ = ["LineFramer"]


class LineFramer:
    """Splits a byte stream into lines ending in LF.

    :param max_line: the longest line accepted, in bytes, LF included.
    :param strip_cr: drop a CR just before the LF (telnet and Windows line ends).
    :param skip_blank: skip lines that are empty or hold only spaces.
    :param head: how many bytes of a refused line :class:`RemoteProtocolError` carries.
    """

    def __init__(self, max_line: int, *, strip_cr: bool = True, skip_blank: bool = True,
                 head: int = 32) -> None:
        if max_line < 2:
            raise ValueError("max_line must leave room for a character and the LF")
        self.max_line = max_line
        self.strip_cr = strip_cr
        self.skip_blank = skip_blank
        self.head = head
        self._buffer = bytearray()  # CPython deletes a bytearray's prefix in O(1)
        self._scanned = 0  #: bytes at the buffer's start known to hold no LF
        self._skipping = False  #: discarding the rest of an over-long line

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as (or skipped with) a line."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; take the lines with :meth:`next_line`."""
        self._buffer += data

    def next_line(self) -> bytes | None:
        """The next whole line, without its line end, or None until more bytes arrive.

        :raises RemoteProtocolError: for a line longer than ``max_line``. The bytes of it
            received so far are dropped, the rest is skipped up to its LF, and the framer
            may be used further.
        """
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                if self._skipping:
                    buffer.clear()
                    self._scanned = 0
                    return None
                if len(buffer) >= self.max_line:
                    head = bytes(buffer[:self.head])
                    buffer.clear()
                    self._scanned = 0
                    self._skipping = True
                    raise RemoteProtocolError(f"line longer than {self.max_line} bytes", head)
                self._scanned = len(buffer)
                return None
            line = bytes(buffer[:end])
            del buffer[:end + 1]
            self._scanned = 0
            if self._skipping:  # the end of an over-long line
                self._skipping = False
                continue
            if end + 1 > self.max_line:
                raise RemoteProtocolError(f"line longer than {self.max_line} bytes",
                                          line[:self.head])
            if self.strip_cr and line.endswith(b"\r"):
                line = line[:-1]
            if self.skip_blank and not line.strip(b" "):
                continue
            return line
