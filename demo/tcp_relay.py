"""A real TCP relay in front of a server that counts the bytes through it and can be cut.

The scale benchmark puts one in front of an institution to measure what it sends and receives;
tests cut it (drop every live connection, refuse new ones for a while) as a flaky network would.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from fedledger.netutil import free_port


class TcpRelay:
    """Relays 127.0.0.1:``port`` to ``target_port``; ``cut()`` kills the connections, ``refusing`` blocks new ones.

    ``sent`` counts bytes from clients to the server, ``received`` bytes from the server to clients.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.refusing = threading.Event()
        self.accepted = 0
        self.sent = 0
        self.received = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.refusing.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server is not up (yet): the client sees a closed connection
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
                self.accepted += 1
            for a, b, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, outbound), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
                with self._lock:
                    if outbound:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Kill every live connection at once (both directions)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._server.close()
        self.cut()
