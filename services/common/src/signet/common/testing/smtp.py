"""A real SMTP server for tests and the local sandbox: aiosmtpd on a loopback port.

:class:`SmtpTestServer` accepts every message (optionally over STARTTLS or implicit TLS,
with a self-signed certificate from :func:`self_signed_tls`), keeps it in memory, and,
when given a maildir, also stores it there as a mail client would find it. It can refuse
the next N recipients with a 4xx or 5xx reply, to exercise a sender's retries.

aiosmtpd comes with the development tools (the root project's ``dev`` extra), not with the
services' runtime dependencies: only tests and the local platform import this module.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signet.common.local.kafka import free_port


def self_signed_tls(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed server certificate (and key) for ``host``, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class _SmtpHandler:
    """Collects messages; refuses the next ``failures`` RCPTs with ``failure_reply``."""

    messages: list[EmailMessage] = field(default_factory=list)
    maildir: mailbox.Maildir | None = None
    failures: int = 0
    failure_reply: str = "451 4.3.0 try again later"
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if self.failures > 0:
                self.failures -= 1
                self.refused += 1
                return self.failure_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
            if self.maildir is not None:
                self.maildir.add(raw)
        return "250 Message accepted"


class SmtpTestServer:
    """aiosmtpd on a loopback port; ``security`` none, starttls or tls.

    ``port`` 0 picks a free one. With ``maildir``, every accepted message is also stored
    in that Maildir (created when missing), where :func:`read_maildir` finds it.
    """

    def __init__(
        self,
        directory: Path,
        security: str = "none",
        *,
        host: str = "localhost",
        port: int = 0,
        maildir: Path | None = None,
    ) -> None:
        box = None
        if maildir is not None:
            maildir.parent.mkdir(parents=True, exist_ok=True)
            box = mailbox.Maildir(maildir, create=True)
        self.handler = _SmtpHandler(maildir=box)
        self.security = security
        self.cert_file = ""
        kwargs: dict[str, Any] = {}
        if security != "none":
            cert, key = self_signed_tls(directory)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            self.cert_file = str(cert)
            if security == "starttls":
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = True
            else:
                kwargs["ssl_context"] = context
        self._controller = Controller(
            self.handler, hostname=host, port=port or free_port(), **kwargs
        )
        self.port = int(self._controller.port)

    def start(self) -> None:
        """Serve in aiosmtpd's thread."""
        self._controller.start()

    def stop(self) -> None:
        """Stop serving."""
        self._controller.stop()

    def fail_next(self, count: int, reply: str = "451 4.3.0 try again later") -> None:
        """Refuse the next ``count`` recipients with ``reply``."""
        with self.handler.lock:
            self.handler.failures = count
            self.handler.failure_reply = reply

    @property
    def messages(self) -> list[EmailMessage]:
        """Every message accepted so far."""
        with self.handler.lock:
            return list(self.handler.messages)

    def to(self, address: str) -> list[EmailMessage]:
        """Messages accepted for ``address``."""
        return [m for m in self.messages if m["To"] == address]


def read_maildir(directory: Path) -> list[EmailMessage]:
    """Every message in the Maildir at ``directory``, oldest first (empty when none)."""
    found: list[tuple[int, str, EmailMessage]] = []
    for sub in ("new", "cur"):
        folder = directory / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                stamp = path.stat().st_mtime_ns
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # moved from new/ to cur/ while we listed
            parsed = message_from_bytes(raw, policy=policy.default)
            if isinstance(parsed, EmailMessage):
                found.append((stamp, path.name, parsed))
    found.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in found]
