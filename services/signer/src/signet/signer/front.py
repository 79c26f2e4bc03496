"""The signer's front: a compiled gRPC server in front of the Python worker processes.

CPython's gRPC server costs about half a millisecond of CPU per call before a handler
does anything (measured on the bench machine: 3,200 empty calls/s on two cores), more
than signing a digest in the HSM. One-digest-per-call traffic would spend most of the
signer on that. With ``front_binary`` set, the supervisor therefore runs the front
(``services/signer/front``, Go) on the gRPC port and the workers on private Unix sockets:

- every call passes through unchanged (metadata, deadline, status, streams), except
- ``SignDigest``: calls of one caller that arrive while the workers are busy go to a
  worker together as one ``SignerWorkerService/SignDigests`` call, signed in one HSM pass
  and recorded in one journal write; the front answers each caller with its own outcome.
  Nothing waits on a timer: a call that finds a worker free is sent at once.
- with mTLS the front verifies client certificates and passes the verified name in
  :data:`~signet.common.auth.FRONT_PEER_HEADER`, which it strips from callers' metadata.

Production images build it in the Dockerfile; locally :func:`build` compiles it with the
machine's Go toolchain into the cache.
"""

from __future__ import annotations

import http.client
import logging
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from signet.common.local.gotools import build_module
from signet.common.server import MAX_MESSAGE_BYTES, check_mtls_files
from signet.signer.config import SignerSettings

_log = logging.getLogger("signet.signer.front")

NAME = "signet-signer-front"
SOURCE = Path(__file__).resolve().parents[3] / "front"


def build() -> Path:
    """The front executable built from this checkout's sources (cached by their hash)."""
    if not (SOURCE / "go.mod").is_file():
        raise RuntimeError(f"the front's sources are not beside this package ({SOURCE})")
    return build_module(SOURCE, NAME)


def command(
    settings: SignerSettings, listen: str, workers: Sequence[str], metrics_socket: str
) -> list[str]:
    """The front's command line: serve ``listen``, pass calls to ``workers``.

    Its own /metrics go to the Unix socket ``metrics_socket`` (see :class:`FrontMetrics`).
    """
    args = [
        settings.front_binary,
        "--listen",
        listen,
        "--metrics-listen",
        f"unix://{metrics_socket}",
        "--max-batch",
        str(min(settings.front_max_batch, settings.max_batch_size)),
        "--batches-per-worker",
        str(settings.front_batches_per_worker),
        "--max-message-bytes",
        str(MAX_MESSAGE_BYTES),
        "--drain-seconds",
        str(settings.drain_seconds),
    ]
    for worker in workers:
        args += ["--worker", worker]
    check_mtls_files(settings)
    if settings.tls_cert_file and settings.tls_key_file:
        args += ["--tls-cert", settings.tls_cert_file, "--tls-key", settings.tls_key_file]
        if settings.auth_mode == "mtls":
            args += ["--tls-client-ca", settings.tls_client_ca_file]
    return args


class FrontMetrics:
    """The front's own metrics (``signet_signer_front_*``) in the supervisor's /metrics.

    A Prometheus collector that reads them from the front's Unix socket at each scrape:
    calls the front answered (also those no worker could take), SignDigest group sizes,
    time calls waited for a worker, calls waiting now, workers reachable. While the front
    restarts a scrape simply has none of them.
    """

    def __init__(self, socket_path: str, timeout: float = 2.0) -> None:
        self._path = socket_path
        self._timeout = timeout

    def collect(self) -> Iterator[Metric]:
        """The front's metric families, parsed from its text exposition."""
        try:
            text = self._fetch()
        except (OSError, http.client.HTTPException) as err:
            _log.debug("front metrics unavailable", extra={"error": type(err).__name__})
            return
        yield from text_string_to_metric_families(text)

    def _fetch(self) -> str:
        connection = _UnixHTTPConnection(self._path, self._timeout)
        try:
            connection.request("GET", "/metrics")
            reply = connection.getresponse()
            if reply.status != 200:
                raise http.client.HTTPException(f"status {reply.status}")
            return reply.read().decode("utf-8")
        finally:
            connection.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("front", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the socket file instead of a host and port."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
