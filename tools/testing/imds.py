"""A loopback stand-in for EC2's instance metadata service, IMDSv2 only.

It refuses a metadata read without the session token it handed out, as IMDSv2
with `http_tokens=required` does, so a script that skips the token step fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "AQAEAFake-session-token=="
INSTANCE = {
    "instance-id": "i-0123456789abcdef0",
    "placement/availability-zone": "us-east-1b",
    "placement/region": "us-east-1",
    "instance-type": "t3.large",
}


def _handler(metadata: Mapping[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._reply(400, "")
            else:
                self._reply(200, TOKEN)

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._reply(401, "")
                return
            key = self.path.removeprefix("/latest/meta-data/")
            self._reply(200, metadata[key]) if key in metadata else self._reply(404, "")

        def _reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fake_imds(metadata: Mapping[str, str] = INSTANCE) -> Iterator[str]:
    """Serve `metadata` on 127.0.0.1 (a free port) and yield the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(metadata))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
