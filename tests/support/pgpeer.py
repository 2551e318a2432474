"""Tiny loopback peers speaking just enough of the PostgreSQL wire protocol for error paths.

The local server trusts every login, so a wrong password cannot be provoked there; this peer
asks for a password and answers with the server's real error (SQLSTATE 28P01). The silent
peer accepts connections and never answers, which is how a firewalled host behaves.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _serve_password_failure(conn: socket.socket) -> None:
    with conn:
        try:
            while True:
                length = struct.unpack("!I", _read_exact(conn, 4))[0]
                body = _read_exact(conn, length - 4)
                code = struct.unpack("!I", body[:4])[0]
                if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest: not offered
                    conn.sendall(b"N")
                    continue
                break
            conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
            kind = _read_exact(conn, 1)
            length = struct.unpack("!I", _read_exact(conn, 4))[0]
            _read_exact(conn, length - 4)
            if kind != b"p":
                return
            fields = (
                b"SFATAL\x00VFATAL\x00C28P01\x00"
                b'Mpassword authentication failed for user "app"\x00\x00'
            )
            conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)
        except (ConnectionError, OSError):
            return


@contextmanager
def peer(kind: str) -> Iterator[int]:
    """Run a peer on 127.0.0.1; yield its port. kind: 'password-fails' or 'silent'."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            if kind == "silent":
                held.append(conn)
            else:
                threading.Thread(target=_serve_password_failure, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


def free_port() -> int:
    """A loopback port with nothing listening (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
