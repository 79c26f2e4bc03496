"""The evidence service's HTTP face for standard tools and relying parties.

* ``POST /tsa`` (``application/timestamp-query``): RFC 3161 over HTTP (RFC 3161 section
  3.4), answering ``application/timestamp-reply``; what ``openssl ts`` and PDF/CAdES
  signers speak.
* ``GET /log/public-key``: the log's public key (PEM), for verifiers and witnesses.
* ``GET /log/tree-head``: the latest signed tree head (JSON).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from signet.common.errors import ServiceError
from signet.evidence.service import EvidenceLog
from signet.evidence.tsa import TimestampAuthority, rejection

MAX_QUERY_BYTES = 16 * 1024
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
_log = logging.getLogger("signet.evidence.http")


class EvidenceHttpServer:
    """A small threaded HTTP server; a :class:`~signet.common.server.Background` task."""

    def __init__(
        self, host: str, port: int, log: EvidenceLog, tsa: TimestampAuthority | None
    ) -> None:
        handler = type("Handler", (_Handler,), {"log": log, "tsa": tsa})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL."""
        host = self._server.server_address[0]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{text}:{self.port}"

    def start(self) -> None:
        """Serve in a background thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), name="evidence-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    log: EvidenceLog
    tsa: TimestampAuthority | None
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.path.split("?")[0].rstrip("/") != "/tsa":
            self._send(404, "text/plain", b"not found\n")
            return
        if self.tsa is None:
            self._send(503, "text/plain", b"no time-stamping authority configured\n")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != QUERY_TYPE:
            self._send(415, "text/plain", b"send application/timestamp-query\n")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 < length <= MAX_QUERY_BYTES:
            self._send(400, "text/plain", b"a TimeStampReq of at most 16 KiB is required\n")
            return
        body = self.rfile.read(length)
        try:
            response = self.tsa.timestamp(body).response_der
        except ServiceError as err:
            _log.warning("timestamp failed", extra={"error": type(err).__name__})
            response = rejection("system_failure", "the TSA is temporarily unavailable")
        self._send(200, REPLY_TYPE, response)

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        try:
            if path == "/log/public-key":
                self._send(200, "application/x-pem-file", self.log.public_key().pem.encode())
            elif path == "/log/tree-head":
                head = self.log.tree_head().to_json()
                self._send(200, "application/json", json.dumps(head).encode())
            else:
                self._send(404, "text/plain", b"not found\n")
        except ServiceError as err:
            self._send(503, "text/plain", (err.message + "\n").encode())

    def log_message(self, format: str, *args: object) -> None:
        return
