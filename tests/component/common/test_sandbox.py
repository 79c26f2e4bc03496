"""The local sandbox's servers and its inbox: what arrives is read back as a person would.

The servers run in process here (the sandbox process runs the same ones); messages are
sent the way notify and identity's providers send them: SMS as a JSON POST, mail over
SMTP, verification transfers as a provider API call.
"""

from __future__ import annotations

import json
import smtplib
import threading
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from signet.common.local.sandbox import SandboxInbox, SandboxPorts, find_code, service_env
from signet.common.testing.http import HttpReceiver, ProviderTestDouble
from signet.common.testing.smtp import SmtpTestServer


class Sandbox:
    """The three servers writing into one sandbox directory."""

    def __init__(self, directory: Path) -> None:
        self.smtp = SmtpTestServer(directory, host="127.0.0.1", maildir=directory / "maildir")
        self.sms = HttpReceiver(journal=directory / "sms.jsonl")
        self.provider = ProviderTestDouble(transfers_journal=directory / "transfers.jsonl")
        self.inbox = SandboxInbox(directory)

    def send_sms(self, to: str, text: str) -> None:
        body = json.dumps({"to": to, "text": text, "reference": "n-1"}).encode()
        request = urllib.request.Request(
            self.sms.url + "/sms", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 200

    def send_mail(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = "Signet <no-reply@signet.invalid>"
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        with smtplib.SMTP("127.0.0.1", self.smtp.port, timeout=5) as client:
            client.send_message(message)

    def transfer(self, credit_code: str, amount: int) -> None:
        body = json.dumps({"credit_code": credit_code, "amount_fen": amount}).encode()
        request = urllib.request.Request(
            self.provider.url + "/v1/enterprise/transfers",
            body,
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 200


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    running = Sandbox(tmp_path / "sandbox")
    running.smtp.start()
    running.sms.start()
    running.provider.start()
    try:
        yield running
    finally:
        running.smtp.stop()
        running.sms.stop()
        running.provider.stop()


def test_a_code_is_read_from_the_next_sms_only(sandbox: Sandbox) -> None:
    sandbox.send_sms("13800000001", "【Signet】Your signing code is 111111, valid for 5 min.")
    wait = sandbox.inbox.expect_code("sms", "13800000001")
    sandbox.send_sms("13800000002", "【Signet】Your signing code is 222222, valid for 5 min.")
    with pytest.raises(TimeoutError):
        wait(0.3)  # the old code and another phone's code do not count
    chinese = "【Signet】您的签署验证码为333333，5分钟内有效，请勿泄露。"  # noqa: RUF001
    sandbox.send_sms("13800000001", chinese)
    assert wait(5) == "333333"


def test_a_code_is_read_from_the_next_mail_to_the_address(sandbox: Sandbox) -> None:
    wait = sandbox.inbox.expect_code("email", "Zhang@Example.com")
    threading.Timer(
        0.2,
        sandbox.send_mail,
        ("zhang@example.com", "Your signing code", "Your signing code is 654321."),
    ).start()
    assert wait(5) == "654321"
    mails = sandbox.inbox.mails("zhang@example.com")
    assert [m["Subject"] for m in mails] == ["Your signing code"]
    assert sandbox.smtp.to("zhang@example.com")


def test_a_transfer_amount_is_read_for_its_enterprise(sandbox: Sandbox) -> None:
    wait = sandbox.inbox.expect_transfer("91330106MA2AB12345")
    sandbox.transfer("91330100000000000X", 12)
    sandbox.transfer("91330106MA2AB12345", 37)
    assert wait(5) == 37
    assert [t.amount_fen for t in sandbox.inbox.transfers()] == [12, 37]


def test_journal_files_are_private(sandbox: Sandbox) -> None:
    sandbox.send_sms("13800000001", "code 123456")
    sandbox.transfer("91330106MA2AB12345", 5)
    for name in ("sms.jsonl", "transfers.jsonl"):
        assert (sandbox.inbox.directory / name).stat().st_mode & 0o077 == 0


def test_find_code_takes_six_digits_not_longer_numbers() -> None:
    assert find_code("Your code is 123456, valid for 5 minutes") == "123456"
    assert find_code("Order 1234567 shipped") is None


def test_services_are_pointed_at_the_sandbox_unless_configured() -> None:
    ports = SandboxPorts.shifted(1000)
    identity = service_env("identity", ports, {})
    assert identity == {"SIGNET_IDENTITY_PROVIDER_URL": "http://127.0.0.1:19080"}
    notify = service_env("notify", ports, {"SIGNET_NOTIFY_SMTP_HOST": "mail.example"})
    assert "SIGNET_NOTIFY_SMTP_HOST" not in notify
    assert notify["SIGNET_NOTIFY_SMTP_PORT"] == "3525"
    assert notify["SIGNET_NOTIFY_SMS_PROVIDER_URL"] == "http://127.0.0.1:19081/sms"
    assert service_env("signer", ports, {}) == {}
