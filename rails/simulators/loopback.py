"""What every simulator does with its HTTP server: serve on 127.0.0.1 in a daemon thread, say
where, stop; and, run as a process (``manage.py run_*_simulator``), serve until SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast


class LoopbackServer:
    _server: ThreadingHTTPServer | None = None

    def _start(self, handler: type[BaseHTTPRequestHandler], port: int) -> str:
        """Answer on 127.0.0.1:``port`` (0: any free port) in a daemon thread; returns the URL."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator is not serving")
        # an AF_INET server: (host, port) with a str host
        host, port = cast(tuple[str, int], self._server.server_address[:2])
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve(self, port: int = 0) -> str:
        raise NotImplementedError

    def serve_until_stopped(self, *, port: int, label: str, stdout: Any) -> None:
        """Serve, print where, and block until SIGTERM or Ctrl-C (a simulator as a process)."""
        url = self.serve(port)
        stdout.write(f"{label} on {url}", ending="\n")
        stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        self.stop()
