"""Local HTTP servers standing in for the world outside the platform (tests, local sandbox).

* :class:`HttpReceiver`: a real HTTP server recording every POST (headers, raw body) and
  answering from a script of status codes (e.g. 503, 503, then 200): an SMS gateway, a
  tenant's webhook receiver. With a journal file it also appends each POST as a JSON line,
  so another process (the demo, a test) reads what arrived.
* :class:`ProviderTestDouble`: the identity check providers' HTTP API (carrier three
  elements, bank card four elements, face match, business registry and verification
  transfer) as :mod:`signet.identity.backends.http` calls it, answering as configured in
  its :class:`ProviderBehaviour`. Verification transfers can be journaled too: the amount
  is what an enterprise reads on its bank statement.

Both bind loopback only and never log what they receive.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Received:
    """One POST as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int


def append_json_line(path: Path, record: dict[str, Any], lock: threading.Lock) -> None:
    """Append ``record`` as one JSON line to ``path`` (created with mode 0600)."""
    line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
    with lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with path.open("a", encoding="utf-8") as out:
            out.write(line)
        if new:
            path.chmod(0o600)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (empty when the file does not exist yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(record, dict):
            records.append(record)
    return records


class HttpReceiver:
    """A real HTTP server that records POSTs and answers from a script of statuses.

    ``port`` 0 picks a free one. With ``journal``, each POST is also appended to that file
    as ``{"path", "received_at", "body"}`` (the body decoded as UTF-8 text).
    """

    def __init__(self, *, port: int = 0, journal: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._journal_lock = threading.Lock()
        self.requests: list[Received] = []
        self._script: list[int] = []
        self.default_status = 200
        self.journal = journal
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._next_status()
                receiver._record(Received(self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)
        if self.journal is not None and 200 <= received.status < 300:
            record = {
                "path": received.path,
                "received_at": time.time(),
                "body": received.body.decode("utf-8", errors="replace"),
            }
            append_json_line(self.journal, record, self._journal_lock)

    def _next_status(self) -> int:
        with self._lock:
            return self._script.pop(0) if self._script else self.default_status

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def respond(self, *statuses: int, then: int = 200) -> None:
        """Answer the next requests with ``statuses``, then always with ``then``."""
        with self._lock:
            self._script = list(statuses)
            self.default_status = then

    def received(self, path: str | None = None) -> list[Received]:
        """Requests so far (to ``path`` only, when given)."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def accepted(self, path: str | None = None) -> list[Received]:
        """Requests answered with 2xx."""
        return [r for r in self.received(path) if 200 <= r.status < 300]

    def start(self) -> None:
        """Serve in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@dataclass
class ProviderBehaviour:
    """How the provider test double answers."""

    carrier: str = "match"
    bank_card: str = "match"
    registry: str = "match"
    face_match: bool = True
    face_liveness: bool = True
    face_completed: bool = True
    down: bool = False
    transfers: list[int] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class ProviderTestDouble:
    """A local HTTP server speaking the provider API of :mod:`signet.identity.backends.http`.

    ``port`` 0 picks a free one. With ``transfers_journal``, every verification transfer
    is appended there as ``{"credit_code", "amount_fen", "reference", "received_at"}``.
    """

    def __init__(self, *, port: int = 0, transfers_journal: Path | None = None) -> None:
        self.behaviour = ProviderBehaviour()
        self.transfers_journal = transfers_journal
        self._journal_lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                b = double.behaviour
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._answer(400, {"error": "body is not JSON"})
                    return
                b.requests.append((self.path, body))
                if b.down:
                    self._answer(503, {"error": "down"})
                    return
                ref = "ref-" + uuid.uuid4().hex[:12]
                if self.path == "/v1/carrier/verify":
                    self._answer(200, {"result": b.carrier, "reference": ref})
                elif self.path == "/v1/bank-card/verify":
                    self._answer(200, {"result": b.bank_card, "reference": ref})
                elif self.path == "/v1/enterprise/verify":
                    self._answer(200, {"result": b.registry, "reference": ref})
                elif self.path == "/v1/enterprise/transfers":
                    double._transfer(str(body.get("credit_code", "")), int(body["amount_fen"]), ref)
                    self._answer(200, {"reference": ref})
                elif self.path == "/v1/face/sessions":
                    token = "fs-" + uuid.uuid4().hex
                    self._answer(
                        200,
                        {
                            "session_token": token,
                            "url": f"https://face.example/s/{token}",
                            "reference": ref,
                        },
                    )
                else:
                    self._answer(404, {"error": "no such path"})

            def do_GET(self) -> None:
                b = double.behaviour
                b.requests.append((self.path, {}))
                if b.down or not self.path.startswith("/v1/face/sessions/"):
                    self._answer(503, {"error": "down"})
                    return
                self._answer(
                    200,
                    {
                        "status": "completed" if b.face_completed else "pending",
                        "match": b.face_match,
                        "liveness": b.face_liveness,
                        "reference": "face-" + uuid.uuid4().hex[:8],
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _transfer(self, credit_code: str, amount_fen: int, reference: str) -> None:
        self.behaviour.transfers.append(amount_fen)
        if self.transfers_journal is not None:
            record = {
                "credit_code": credit_code,
                "amount_fen": amount_fen,
                "reference": reference,
                "received_at": time.time(),
            }
            append_json_line(self.transfers_journal, record, self._journal_lock)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
