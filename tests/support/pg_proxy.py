"""A threaded TCP proxy in front of PostgreSQL that a test switches between refusing and forwarding connections."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Listens on a free 127.0.0.1 port. Refusing (the default): a new connection is accepted and closed at once,
    as a database that is not there. Forwarding: bytes are copied both ways to the upstream. `refused` counts the
    connections turned away. Connections forwarded before `refuse()` are cut too (`refuse(cut=True)`)."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432), *, forwarding: bool = False) -> None:
        self.upstream = upstream
        self.forwarding = forwarding
        self.refused = 0
        self.forwarded = 0
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self.port = self._server.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, name=f"pg-proxy-{self.port}", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def allow(self) -> None:
        self.forwarding = True

    def refuse(self, *, cut: bool = False) -> None:
        self.forwarding = False
        if cut:
            with self._lock:
                sockets, self._open = list(self._open), set()
            for sock in sockets:
                _close(sock)

    def stop(self) -> None:
        self._stopped = True
        _close(self._server)
        self.refuse(cut=True)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self.forwarding:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self.refused += 1
                _close(client)
                continue
            upstream.settimeout(None)
            self.forwarded += 1
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with self._lock:
                    self._open.discard(sock)
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
