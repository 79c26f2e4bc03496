"""The relying-party HTTP endpoints: CRLs, the OCSP responder and CA certificates.

Relying parties outside the platform (PDF readers, OpenSSL, a court's verifier) speak
HTTP, not gRPC:

- ``GET /crl/<ca_id>.crl``: the CA's newest CRL (``application/pkix-crl``, DER);
- ``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/<base64 request>``
  (RFC 6960 appendix A): ``application/ocsp-response``;
- ``GET /ca/<ca_id>.crt``: a CA certificate (``application/pkix-cert``, DER), for AIA.

A threaded standard-library server is enough: every answer is a database read, and an
OCSP answer one HSM signature.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from signet.ca_gateway.telemetry import HTTP_REQUESTS
from signet.common.errors import NotFound, ServiceError

_log = logging.getLogger("signet.ca_gateway.http")

MAX_OCSP_REQUEST = 16 * 1024


class RelyingPartyApi(Protocol):
    """What the endpoints need from the gateway."""

    def crl(self, ca_id: str) -> bytes:
        """The newest CRL DER of ``ca_id``; NotFound for an unknown CA."""
        ...

    def ocsp(self, request_der: bytes) -> bytes:
        """An OCSPResponse DER for an OCSPRequest DER."""
        ...

    def ca_certificate(self, ca_id: str) -> bytes:
        """The DER certificate of ``ca_id``; NotFound for an unknown CA."""
        ...


class _Handler(BaseHTTPRequestHandler):
    api: RelyingPartyApi
    server_version = "signet-ca-gateway"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/crl/") and path.endswith(".crl"):
            self._serve("crl", lambda: self.api.crl(path[5:-4]), "application/pkix-crl")
        elif path.startswith("/ca/") and path.endswith(".crt"):
            self._serve("ca", lambda: self.api.ca_certificate(path[4:-4]), "application/pkix-cert")
        elif path.startswith("/ocsp/"):
            encoded = urllib.parse.unquote(path[len("/ocsp/") :])
            try:
                request = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=False)
            except (binascii.Error, ValueError):
                request = b""
            self._serve("ocsp", lambda: self.api.ocsp(request), "application/ocsp-response")
        elif path == "/healthz":
            self._reply("healthz", 200, b"ok\n", "text/plain")
        else:
            self._reply("other", 404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.rstrip("/") != "/ocsp":
            self._reply("other", 404, b"not found\n", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_OCSP_REQUEST:
            self._reply(
                "ocsp", 400, b"an OCSP request of 1 to 16384 bytes is expected\n", "text/plain"
            )
            return
        body = self.rfile.read(length)
        self._serve("ocsp", lambda: self.api.ocsp(body), "application/ocsp-response")

    def _serve(self, endpoint: str, produce: object, content_type: str) -> None:
        try:
            body = produce()  # type: ignore[operator]
        except NotFound as err:
            self._reply(endpoint, 404, (err.message + "\n").encode(), "text/plain")
            return
        except ServiceError as err:
            status = 503 if err.retryable else 500
            self._reply(endpoint, status, b"try again later\n", "text/plain")
            _log.warning(
                "relying-party request failed", extra={"endpoint": endpoint, "error": err.code.name}
            )
            return
        except Exception:  # noqa: BLE001  (answer 500, never drop the connection)
            _log.exception("relying-party request crashed", extra={"endpoint": endpoint})
            self._reply(endpoint, 500, b"internal error\n", "text/plain")
            return
        self._reply(endpoint, 200, body, content_type)

    def _reply(self, endpoint: str, status: int, body: bytes, content_type: str) -> None:
        HTTP_REQUESTS.labels(endpoint, str(status)).inc()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 200 and endpoint in ("crl", "ca"):
            self.send_header("Cache-Control", "max-age=300")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Access logs would carry request paths (OCSP requests name serials); metrics suffice.
        return


class RelyingPartyServer:
    """The HTTP server as a background task of the gRPC server (start, stop on drain)."""

    def __init__(self, api: RelyingPartyApi, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"api": api})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), name="relying-party-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
