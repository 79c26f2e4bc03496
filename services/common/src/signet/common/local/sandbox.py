"""The local third-party sandbox: what stands outside the platform under ``make run``.

One background process (``python -m signet.common.local.sandbox serve``) runs:

* the identity check providers' HTTP API (:class:`~signet.common.testing.http.ProviderTestDouble`:
  carrier, bank card, face match, business registry, verification transfers), answering
  "match" to every check;
* an SMS gateway (:class:`~signet.common.testing.http.HttpReceiver` at ``/sms``) that
  accepts every text;
* a real SMTP server (aiosmtpd, :class:`~signet.common.testing.smtp.SmtpTestServer`).

What reaches them lands under ``<state>/sandbox/`` as a person or an enterprise would
receive it: mail in the ``maildir/`` Maildir, texts in ``sms.jsonl``, verification transfers
(the amount an enterprise reads on its bank statement) in ``transfers.jsonl``.
:class:`SandboxInbox` reads them back, e.g. to pick up a one-time code. The files hold
one-time codes in clear, like a phone would: they are local development data, mode 0600.

Ports: provider 18080, SMS gateway 18081, SMTP 2525, each shifted by the platform's port
offset. :func:`service_env` points identity and notify at them unless the environment
already names other providers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

from signet.common.local.processes import alive, read_pid
from signet.common.testing.http import HttpReceiver, ProviderTestDouble, read_json_lines

PROVIDER_PORT = 18080
SMS_PORT = 18081
SMTP_PORT = 2525

_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


@dataclass(frozen=True)
class SandboxPorts:
    """The sandbox's three ports."""

    provider: int
    sms: int
    smtp: int

    @classmethod
    def shifted(cls, offset: int) -> SandboxPorts:
        """The default ports moved by ``offset`` (``SIGNET_LOCAL_PORT_OFFSET``)."""
        return cls(PROVIDER_PORT + offset, SMS_PORT + offset, SMTP_PORT + offset)

    def all(self) -> list[int]:
        """Every port, for checks that they are free."""
        return [self.provider, self.sms, self.smtp]


def sandbox_dir(state_dir: Path) -> Path:
    """Where the sandbox keeps what it received."""
    return state_dir / "sandbox"


def service_env(package: str, ports: SandboxPorts, environ: Mapping[str, str]) -> dict[str, str]:
    """Settings pointing service ``package`` at the sandbox (those ``environ`` lacks)."""
    values: dict[str, str] = {}
    if package == "identity":
        values["SIGNET_IDENTITY_PROVIDER_URL"] = f"http://127.0.0.1:{ports.provider}"
    elif package == "notify":
        values.update(
            {
                "SIGNET_NOTIFY_SMTP_HOST": "127.0.0.1",
                "SIGNET_NOTIFY_SMTP_PORT": str(ports.smtp),
                "SIGNET_NOTIFY_SMTP_SECURITY": "none",
                "SIGNET_NOTIFY_SMS_PROVIDER_URL": f"http://127.0.0.1:{ports.sms}/sms",
                # The demo's webhook receiver is a plain-http local server.
                "SIGNET_NOTIFY_WEBHOOK_ALLOW_HTTP": "true",
            }
        )
    return {name: value for name, value in values.items() if not environ.get(name)}


# ---- the process --------------------------------------------------------------------------


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "run" / "sandbox.pid"


def running_pid(state_dir: Path) -> int | None:
    """The sandbox process's id, when it runs."""
    return read_pid(_pid_file(state_dir))


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(state_dir: Path, offset: int, timeout: float = 30.0) -> int:
    """Start the sandbox process (idempotent); returns its pid once every port answers."""
    ports = SandboxPorts.shifted(offset)
    pid = running_pid(state_dir)
    if pid is None:
        for sub in ("run", "logs"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True)
        with (state_dir / "logs" / "sandbox.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "signet.common.local.sandbox",
                    "serve",
                    "--dir",
                    str(sandbox_dir(state_dir)),
                    "--offset",
                    str(offset),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pid = proc.pid
        _pid_file(state_dir).write_text(str(pid))
    deadline = time.monotonic() + timeout
    while not all(_listening(p) for p in ports.all()):
        if not alive(pid) or time.monotonic() > deadline:
            stop(state_dir)
            raise RuntimeError(
                f"the sandbox did not start; see {state_dir / 'logs' / 'sandbox.log'}"
            )
        time.sleep(0.1)
    return pid


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the sandbox process (SIGTERM, then SIGKILL); True when one was running."""
    pid = running_pid(state_dir)
    _pid_file(state_dir).unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return True


def serve(directory: Path, ports: SandboxPorts, stop_event: threading.Event) -> None:
    """Run the three servers until ``stop_event`` is set."""
    from signet.common.testing.smtp import SmtpTestServer  # aiosmtpd: development only

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    provider = ProviderTestDouble(
        port=ports.provider, transfers_journal=directory / "transfers.jsonl"
    )
    sms = HttpReceiver(port=ports.sms, journal=directory / "sms.jsonl")
    smtp = SmtpTestServer(
        directory, host="127.0.0.1", port=ports.smtp, maildir=directory / "maildir"
    )
    provider.start()
    sms.start()
    smtp.start()
    print(
        f"sandbox: providers :{ports.provider}, SMS gateway :{ports.sms}, SMTP :{ports.smtp}",
        flush=True,
    )
    try:
        stop_event.wait()
    finally:
        smtp.stop()
        sms.stop()
        provider.stop()


# ---- reading what arrived -------------------------------------------------------------------


@dataclass(frozen=True)
class SmsMessage:
    """A text the SMS gateway accepted."""

    to: str
    text: str
    received_at: float


@dataclass(frozen=True)
class Transfer:
    """A verification transfer the payment provider was asked to make."""

    credit_code: str
    amount_fen: int
    received_at: float


def find_code(text: str) -> str | None:
    """The six-digit one-time code in a message's text, if there is one."""
    found = _CODE.search(text)
    return found.group(1) if found else None


def mail_text(message: EmailMessage) -> str:
    """The readable text of a mail (plain part preferred)."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    content = body.get_content()
    return content if isinstance(content, str) else ""


def mail_recipients(message: EmailMessage) -> list[str]:
    """The addresses in a mail's To header, lower-cased."""
    return [address.lower() for _, address in getaddresses(message.get_all("To", []))]


class SandboxInbox:
    """What the sandbox received, read back from its directory (any process may read it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> SandboxInbox:
        """The inbox of the sandbox of the platform whose state is in ``state_dir``."""
        return cls(sandbox_dir(state_dir))

    def sms(self, to: str | None = None) -> list[SmsMessage]:
        """Texts accepted so far (to ``to`` only, when given), oldest first."""
        found = []
        for record in read_json_lines(self.directory / "sms.jsonl"):
            try:
                body = json.loads(record.get("body", ""))
            except ValueError:
                continue
            message = SmsMessage(
                str(body.get("to", "")), str(body.get("text", "")), float(record["received_at"])
            )
            if to is None or message.to == to:
                found.append(message)
        return found

    def mails(self, to: str | None = None) -> list[EmailMessage]:
        """Mails accepted so far (to ``to`` only, when given), oldest first."""
        from signet.common.testing.smtp import read_maildir

        every = read_maildir(self.directory / "maildir")
        if to is None:
            return every
        return [m for m in every if to.lower() in mail_recipients(m)]

    def transfers(self, credit_code: str | None = None) -> list[Transfer]:
        """Verification transfers so far (to ``credit_code`` only, when given)."""
        found = []
        for record in read_json_lines(self.directory / "transfers.jsonl"):
            transfer = Transfer(
                str(record.get("credit_code", "")),
                int(record.get("amount_fen", 0)),
                float(record.get("received_at", 0.0)),
            )
            if credit_code is None or transfer.credit_code == credit_code:
                found.append(transfer)
        return found

    def _texts(self, channel: str, destination: str) -> list[str]:
        if channel == "sms":
            return [m.text for m in self.sms(destination)]
        if channel == "email":
            return [mail_text(m) for m in self.mails(destination)]
        raise ValueError("channel must be 'sms' or 'email'")

    def expect_code(self, channel: str, destination: str) -> Callable[[float], str]:
        """Call before a code is sent: returns a wait(timeout) for the next code to arrive.

        Only messages arriving after this call count, so an older code to the same
        destination is never picked up. ``wait`` raises TimeoutError when none arrives.
        """
        seen = len(self._texts(channel, destination))

        def wait(timeout: float) -> str:
            deadline = time.monotonic() + timeout
            while True:
                fresh = self._texts(channel, destination)[seen:]
                for text in reversed(fresh):
                    code = find_code(text)
                    if code is not None:
                        return code
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no one-time code arrived by {channel} in {timeout:.0f}s")
                time.sleep(0.1)

        return wait

    def expect_transfer(self, credit_code: str) -> Callable[[float], int]:
        """Call before a verification transfer: returns a wait(timeout) for its amount (fen)."""
        seen = len(self.transfers(credit_code))

        def wait(timeout: float) -> int:
            deadline = time.monotonic() + timeout
            while True:
                fresh = self.transfers(credit_code)[seen:]
                if fresh:
                    return fresh[-1].amount_fen
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no verification transfer arrived in {timeout:.0f}s")
                time.sleep(0.1)

        return wait


def main(argv: list[str] | None = None) -> int:
    """``python -m signet.common.local.sandbox serve --dir DIR --offset N``."""
    parser = argparse.ArgumentParser(prog="signet-sandbox", description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--dir", type=Path, required=True, help="where received data is kept")
    parser.add_argument("--offset", type=int, default=0, help="port offset")
    args = parser.parse_args(argv)
    stop_event = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve(args.dir, SandboxPorts.shifted(args.offset), stop_event)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
