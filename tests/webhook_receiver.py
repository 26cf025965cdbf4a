"""A real HTTP receiver for webhook tests and bench/webhooks.py: an asyncio HTTP/1.1 server on a
free port that records every request and answers what the test tells it to (keep-alive, no
framework, so a test can also make it hang or answer slowly)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request was read


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


Responder = Callable[[Received], Awaitable[Answer]]

REASONS = {200: "OK", 204: "No Content", 302: "Found", 404: "Not Found", 410: "Gone", 429: "Too Many Requests"}


async def ok(request: Received) -> Answer:
    return Answer()


class Receiver:
    """``async with Receiver() as r:`` ... ``r.url``, ``r.requests``; set ``r.responder``."""

    def __init__(self, responder: Responder = ok, host: str = "127.0.0.1") -> None:
        self.responder = responder
        self.host = host
        self.requests: list[Received] = []
        self.arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` requests have arrived; returns them all."""
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Received(method, path, headers, body, time.monotonic())
                async with self.arrived:
                    self.requests.append(request)
                    self.arrived.notify_all()
                answer = await self.responder(request)
                reason = REASONS.get(answer.status, "Status")
                out = [f"HTTP/1.1 {answer.status} {reason}", f"content-length: {len(answer.body)}"]
                out += [f"{name}: {value}" for name, value in answer.headers.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + answer.body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
