"""Each HTTP answer leaves in one socket write, not two.

uvicorn writes an answer's head and its body separately: two system calls and two TCP
segments per answer, and on loopback the sender's call also does the receiver's network
work. Here the writes made in one turn of the event loop are held and go out together at
its end, in order, so an answer built in one turn (every JSON answer) is one write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# What a turn writes beyond this (a large streamed body) goes out at once: bytes held
# here are invisible to the transport's flow control.
MAX_HELD_BYTES = 64 * 1024


class JoinedWritesTransport:
    """Wraps a transport: writes within one event-loop turn reach it as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > MAX_HELD_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        # A connection closed under us (the peer left) has no one to read this.
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a `JoinedWritesTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWritesTransport(transport, self.loop))  # type: ignore[arg-type]
