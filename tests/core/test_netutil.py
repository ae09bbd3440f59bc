"""free_port: the one way launchers, the demo and the tests pick a port."""

from __future__ import annotations

import socket

from fedledger.netutil import free_port


def test_free_port_can_be_listened_on_and_is_not_a_held_one():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = free_port()
        assert port != held.getsockname()[1]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
