"""The pool's listening socket: how it is created decides the latency of every keep-alive request."""

from __future__ import annotations

import socket

from aca_kernel.emulator.cli import _bind


def test_listening_socket_is_tcp_so_asyncio_sets_nodelay():
    # asyncio sets TCP_NODELAY only on accepted sockets whose proto is IPPROTO_TCP; with proto 0 every request
    # after the first on a connection waited ~44 ms for a delayed ACK (bench/README.md has the measurement).
    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
