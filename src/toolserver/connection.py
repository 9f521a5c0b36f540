"""websockets' server connection with a bound on how long a send may wait.

``send()`` writes a frame into the transport's buffer and then, once the buffer is
over its high-water mark (the server's ``write_limit``), waits until the peer has read
enough of it. A peer that never reads (a zero receive window) makes that wait last
forever: its handler, its in-flight calls, its queued frames, its keepalive ping (which
waits in the same place) and its ``--max-connections`` slot are held for good.

The transport tells its protocol when writing is blocked (``pause_writing``) and when
it is not any more (``resume_writing``); that is exactly the time every send on the
connection waits. :class:`SendTimeoutConnection` starts a timer on the first and cancels
it on the second, so the check costs nothing per message. When the timer fires, the
connection is failed with close code 1008 and its TCP connection aborted: the close
frame could only be queued behind data the peer is not reading, so it is recorded as
sent (``ConnectionClosed.sent``) but the socket is not held open to deliver it.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode
from websockets.protocol import State

__all__ = ["SEND_TIMEOUT_CODE", "SendTimeoutConnection", "connection_class"]

#: Close code recorded for a connection whose peer stopped reading (policy violation).
SEND_TIMEOUT_CODE = CloseCode.POLICY_VIOLATION


class SendTimeoutConnection(ServerConnection):
    """A ``ServerConnection`` failed with 1008 once writing stays blocked ``send_timeout`` s."""

    #: Seconds writing may stay blocked; ``None`` waits forever (websockets' behaviour).
    send_timeout: float | None = None
    _stall: asyncio.TimerHandle | None = None
    #: True once this connection was closed because its peer stopped reading.
    send_timed_out = False

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.send_timeout is not None and self._stall is None:
            self._stall = self.loop.call_later(self.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall()
        super().connection_lost(exc)

    def _cancel_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _send_timed_out(self) -> None:
        self._stall = None
        self.send_timed_out = True
        if self.protocol.state is State.OPEN:
            self.protocol.fail(SEND_TIMEOUT_CODE, "send timeout: the client is not reading")
        # connection_lost() follows and wakes every send waiting on the buffer.
        self.transport.abort()


def connection_class(send_timeout: float | None) -> type[SendTimeoutConnection]:
    """A connection class for ``serve(create_connection=...)`` with this send timeout."""

    class Connection(SendTimeoutConnection):
        pass

    Connection.send_timeout = send_timeout
    return Connection
