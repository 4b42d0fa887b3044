"""The framed, size-limited channel the trusted side and a submission talk through (a socket pair): each message
is its length (8 bytes, big-endian) and its bytes, read and written before a deadline."""

from __future__ import annotations

import select
import socket
import struct
import time

FRAME = struct.Struct(">Q")


class ChannelClosed(Exception):
    """The other end of a channel closed (the submission crashed or was killed)."""


class ChannelTimeout(Exception):
    """A channel operation did not finish before its deadline."""


class ChannelOverflow(Exception):
    """The other end sent a message larger than allowed."""


class Channel:
    """Length-prefixed messages over a socket. The trusted side uses deadlines and a size limit on every
    read, so that a peer that stalls mid-message or sends a flood cannot hang it or fill its memory."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.setblocking(False)

    def send(self, data: bytes, deadline: float | None = None) -> None:
        view = memoryview(FRAME.pack(len(data)) + data)
        while view:
            self._wait(select.POLLOUT, deadline)
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed() from None
            view = view[sent:]

    def recv(self, deadline: float | None = None, limit: int = 2**30) -> bytes:
        size = FRAME.unpack(self._read(FRAME.size, deadline))[0]
        if size > limit:
            raise ChannelOverflow(size)
        return self._read(size, deadline)

    def _read(self, n: int, deadline: float | None) -> bytes:
        chunks, left = [], n
        while left:
            self._wait(select.POLLIN, deadline)
            try:
                chunk = self.sock.recv(min(left, 1 << 20))
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ChannelClosed()
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _wait(self, event: int, deadline: float | None) -> None:
        poller = select.poll()
        poller.register(self.sock, event)
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            if poller.poll(None if timeout is None else timeout * 1000):
                return
            if deadline is not None and time.time() >= deadline:
                raise ChannelTimeout()

    def close(self) -> None:
        self.sock.close()
