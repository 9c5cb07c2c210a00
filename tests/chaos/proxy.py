"""A loopback TCP proxy that can refuse connections for a while: a database outage without touching
the shared PostgreSQL server.

`TcpProxy(upstream_port).start()` listens on a free port and pipes every connection to the upstream.
`refuse()` cuts every open connection and closes the listening socket, so new connections are
refused (ECONNREFUSED) as they would be by a stopped server; `accept()` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading

BUFFER = 65536


class TcpProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream_port>, one thread per direction per connection."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        """Set up the proxy; `start()` picks its port and begins accepting."""
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()

    def start(self) -> TcpProxy:
        """Listen (on a free port the first time, on the same port after `refuse()`); returns self."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    accept = start

    def refuse(self) -> None:
        """Stop listening and cut every open connection, as a database that went away would."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._open = set(self._open), set()
        if listener is not None:
            _close(listener)
        for connection in connections:
            _close(connection)

    def stop(self) -> None:
        """Refuse for good."""
        self.refuse()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refuse() closed the listener
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # refused meanwhile
                    _close(client)
                    _close(server)
                    continue
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    # shutdown() first: it wakes a thread blocked in recv() on this socket, which close() alone may not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
