"""A deliberately minimal WebSocket client on a raw socket, for what a real client won't do.

The ``websockets`` client normalises what it sends and always reads; the ``bad_input``
scenario's attacker and the server tests need exact request targets, raw header bytes,
invalid UTF-8 in a text frame, and a client that stops reading with a tiny receive
buffer. Only the client side of RFC 6455 they use: the opening handshake, masked
frames, reading one frame; plus the kernel's view of the connection (closed by the
peer or not) without reading from it.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import Iterable

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8


def handshake(
    port: int,
    path: bytes | str = b"/",
    headers: Iterable[bytes] = (),
    *,
    upgrade: bool = True,
    rcvbuf: int | None = None,
    timeout: float = 5.0,
) -> tuple[socket.socket, bytes]:
    """Send one opening request; return the socket and the response head (status line +
    headers, up to the blank line). The caller closes the socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect(): the window scale is negotiated in the SYN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    target = path.encode() if isinstance(path, str) else path
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if upgrade:
        key = base64.b64encode(os.urandom(16))
        lines += [
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + key,
            b"Sec-WebSocket-Version: 13",
        ]
    lines += list(headers)
    sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: leave the first frame in the socket
        if not chunk:
            break
        head += chunk
    return sock, head


def status(head: bytes) -> int:
    """The status code of a response head (0 when the server sent nothing)."""
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


def frame(payload: bytes | str, opcode: int = OP_TEXT) -> bytes:
    """One final, masked client frame."""
    data = payload.encode() if isinstance(payload, str) else payload
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 4096 else _mask(data, mask)
    return head + mask + masked


def _mask(data: bytes, mask: bytes) -> bytes:
    # int XOR over the whole payload: fast enough for the MB-sized frames of the tests.
    reps = (len(data) + 3) // 4
    key = int.from_bytes(mask * reps, "big") >> (8 * (4 * reps - len(data)))
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


def _exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed mid-frame")
        out += chunk
    return out


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next server frame (servers do not mask)."""
    b0, b1 = _exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _exact(sock, 8))
    return b0 & 0x0F, _exact(sock, n)


def close_code(payload: bytes) -> int | None:
    """The code of a close frame's payload (None when it carries none)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


#: Linux TCP states (include/net/tcp_states.h) from TCP_INFO's first byte.
TCP_ESTABLISHED = 1


def peer_closed(sock: socket.socket) -> bool:
    """True once the peer closed or reset the connection, without reading from it.

    Reads the kernel's TCP state (Linux ``TCP_INFO``): anything but ESTABLISHED means
    the server sent FIN or RST. Elsewhere, falls back to a zero-byte non-blocking send.
    """
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is not None:
        try:
            return sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0] != TCP_ESTABLISHED
        except OSError:
            return True
    try:
        sock.send(b"", socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False
