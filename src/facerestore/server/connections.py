"""Connections, below the ASGI app: each request's headers have a deadline, and open connections are bounded
so that idle sockets cannot use up the process's file descriptors (uvicorn's h11 protocol does neither: a
socket that never sends a request is held for ever, and at the open-file limit accepting fails in a loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import resource
import time
from dataclasses import dataclass, field
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("facerestore.server")
# asyncio accepts up to this many connections at one wake-up (uvicorn passes it on as the listen backlog),
# and each holds a descriptor for a few loop turns before the limit below can close it.
ACCEPT_BURST = 16
ACCEPT_TURNS = 4
RESERVED_FILES = 64  # descriptors the process keeps for itself: libraries, models being read, the log
WARN_EVERY_SECONDS = 60.0  # at the limit, one log line a minute, not one a connection


def _busy_response() -> bytes:
    body = json.dumps({"error": "the server has too many connections open; retry later"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


BUSY_RESPONSE = _busy_response()


def open_file_limit() -> float:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return math.inf if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int, file_limit: float) -> int:
    """``configured``, or fewer when the open-file limit leaves less room for sockets."""
    room = file_limit - RESERVED_FILES - ACCEPT_BURST * ACCEPT_TURNS
    return max(1, int(min(configured, room)))


@dataclass
class ConnectionPool:
    """What one server's connections share: the limits, and the connections waiting for a request."""

    max_connections: int
    header_seconds: float
    idle: dict[BoundedH11Protocol, None] = field(default_factory=dict)  # oldest first
    warned_at: float = -math.inf

    def warn(self, message: str) -> None:
        if time.monotonic() - self.warned_at >= WARN_EVERY_SECONDS:
            self.warned_at = time.monotonic()
            log.warning("%s (said at most once a minute)", message)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's headers and at most ``max_connections``
    connections: beyond that, the longest-idle connection (no request in progress) makes room for the new
    one, or, when every connection is busy with a request, the new one is answered 503 and closed."""

    pool: ClassVar[ConnectionPool]
    _deadline: asyncio.TimerHandle | None = None

    @classmethod
    def limited(cls, max_connections: int, header_seconds: float) -> type[BoundedH11Protocol]:
        """A protocol class for one server: uvicorn builds each connection's protocol from a class."""
        pool = ConnectionPool(max_connections, header_seconds)
        return type("LimitedH11Protocol", (cls,), {"pool": pool})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.pool.max_connections and not self._close_longest_idle():
            self.pool.warn(f"{self.pool.max_connections} connections, all busy: refusing new ones")
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._await_headers()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request's headers arrived (or the request was bad)
            self._stop_waiting()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._await_headers()  # before the base class handles a pipelined request that may be waiting
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._stop_waiting()
        self.pool.idle[self] = None
        self._deadline = self.loop.call_later(self.pool.header_seconds, self.transport.close)

    def _stop_waiting(self) -> None:
        self.pool.idle.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close_longest_idle(self) -> bool:
        if not self.pool.idle:
            return False
        oldest = next(iter(self.pool.idle))
        oldest._stop_waiting()
        oldest.transport.close()
        self.pool.warn(f"{self.pool.max_connections} connections: closing the longest idle ones")
        return True
