"""An HTTP server on this machine's loopback that keeps the bodies POSTed to it and the paths asked with GET:
a failure URL, or a heartbeat URL, to ping."""

from __future__ import annotations

import http.server
import threading
from types import TracebackType


class PostReceiver:
    """`with PostReceiver(port) as receiver:` serves 127.0.0.1:port (0: any free port) until the block ends;
    `receiver.received` holds each POST's body, in order; `receiver.asked` each GET's path."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[str] = []
        self.asked: list[str] = []
        received, asked = self.received, self.asked

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                asked.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def url(self, path: str = "/fail") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> PostReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
