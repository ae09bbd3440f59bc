"""Local networking helpers shared by the chain launcher, the demo and the tests.

One place to pick a port, so every launcher asks the OS the same way (bind to port 0 on loopback).
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it; free until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
