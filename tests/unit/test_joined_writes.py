"""An answer's head and body leave in one socket write (api/joined_writes.py).

First the transport on its own, on a real event loop; then uvicorn's protocol behind it,
serving over a real socket, with every write that reaches the socket recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from api.joined_writes import MAX_HELD_BYTES, JoinedWritesProtocol, JoinedWritesTransport
from tests.served_uvicorn import served


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.eof = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


def run_turns(steps) -> FakeTransport:
    """Runs `steps(joined, fake)` in one turn of a fresh event loop, then lets the loop
    finish the turns after it; returns the fake transport."""
    fake = FakeTransport()

    async def main() -> None:
        joined = JoinedWritesTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        steps(joined, fake)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    return fake


def test_writes_in_one_turn_reach_the_transport_as_one_write_in_order():
    seen_during_turn: list[list[bytes]] = []

    def steps(joined, fake):
        joined.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
        joined.write(b"{}")
        seen_during_turn.append(list(fake.writes))

    fake = run_turns(steps)
    assert seen_during_turn == [[]], "nothing is written before the turn ends"
    assert fake.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]


def test_writes_in_separate_turns_stay_separate():
    fake = FakeTransport()

    async def main() -> None:
        joined = JoinedWritesTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        joined.write(b"first")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        joined.write(b"second")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert fake.writes == [b"first", b"second"]


def test_closing_writes_what_is_held_first():
    events: list[str] = []

    def steps(joined, fake):
        joined.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        joined.close()
        events.extend(["written" if fake.writes else "not written", f"closed={fake.closed}"])

    fake = run_turns(steps)
    assert events == ["written", "closed=True"]
    assert fake.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]


def test_write_eof_writes_what_is_held_first():
    def steps(joined, fake):
        joined.write(b"last bytes")
        joined.write_eof()

    fake = run_turns(steps)
    assert fake.writes == [b"last bytes"] and fake.eof


def test_a_large_streamed_body_is_not_held_past_the_limit():
    chunk = b"x" * (MAX_HELD_BYTES // 2 + 1)
    during: list[int] = []

    def steps(joined, fake):
        joined.write(chunk)
        during.append(len(fake.writes))
        joined.write(chunk)  # now over the limit: out at once
        during.append(len(fake.writes))

    fake = run_turns(steps)
    assert during == [0, 1]
    assert fake.writes == [chunk + chunk]


def test_empty_writes_and_a_closed_connection_write_nothing():
    def steps(joined, fake):
        joined.write(b"")
        joined.write(b"for a peer that left")
        fake.closed = True  # the connection was lost before the turn ended

    fake = run_turns(steps)
    assert fake.writes == []


def test_everything_else_is_the_wrapped_transports():
    def steps(joined, fake):
        assert joined.get_extra_info("peername") == "extra:peername"
        assert joined.is_closing() is False

    run_turns(steps)


# --- uvicorn's protocol behind it, over a real socket -------------------------------------

RECORDED: list[bytes] = []


class RecordingTransport:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        RECORDED.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class RecordingProtocol(JoinedWritesProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(RecordingTransport(transport))  # type: ignore[arg-type]


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)  # a body produced over several turns
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"lot_code":"RAW-1"}'
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def base_url() -> Iterator[str]:
    with served(app, http=RecordingProtocol, lifespan="off") as url:
        yield url


def test_each_answer_on_a_kept_alive_connection_is_one_write(base_url):
    RECORDED.clear()
    with httpx.Client(base_url=base_url) as client:
        answers = [client.post("/api/lots", json={}) for _ in range(3)]
    assert [(a.status_code, a.text) for a in answers] == [(201, '{"lot_code":"RAW-1"}')] * 3
    assert len(RECORDED) == 3, RECORDED
    for write in RECORDED:
        head, _, body = write.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 201 Created") and body == b'{"lot_code":"RAW-1"}'


def test_a_body_streamed_over_several_turns_arrives_whole_and_in_order(base_url):
    RECORDED.clear()
    answer = httpx.get(f"{base_url}/stream")
    assert (answer.status_code, answer.text) == (200, "one,two,three")
    assert len(RECORDED) >= 3, "parts written in different turns are not held for each other"
    assert RECORDED[0].startswith(b"HTTP/1.1 200 OK") and b"one," in RECORDED[0]
