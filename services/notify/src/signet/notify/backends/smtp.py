"""E-mail over SMTP, plain, STARTTLS or implicit TLS, with optional login.

SMTP reply codes decide the outcome: 4xx is transient, 5xx permanent; a refused or
dropped connection and timeouts are transient. Only the code is kept.
"""

from __future__ import annotations

import email.message
import email.utils
import smtplib
import ssl

from signet.notify.domain import ChannelKind, EmailMessage, OutboundMessage, SendResult


class SmtpEmailSender:
    """Sends one message per connection (deliveries are few and independent)."""

    kind = ChannelKind.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        security: str = "none",
        username: str = "",
        password: str = "",
        ca_file: str = "",
        timeout: float = 10.0,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError("security must be none, starttls or tls")
        self._host = host
        self._port = port
        self._sender = sender
        self._security = security
        self._username = username
        self._password = password
        self._ca_file = ca_file
        self._timeout = timeout

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._ca_file or None)

    def _connect(self) -> smtplib.SMTP:
        if self._security == "tls":
            return smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout, context=self._tls_context()
            )
        client = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        if self._security == "starttls":
            client.ehlo()
            client.starttls(context=self._tls_context())
            client.ehlo()
        return client

    def build(self, message: EmailMessage) -> email.message.EmailMessage:
        """The MIME message for ``message`` (UTF-8 plain text)."""
        mime = email.message.EmailMessage()
        mime["From"] = self._sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        mime["Message-ID"] = f"<{message.notification_id}@signet.notify>"
        mime["X-Signet-Notification-Id"] = message.notification_id
        mime.set_content(message.body)
        return mime

    def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one e-mail to the SMTP server."""
        if not isinstance(message, EmailMessage):
            return SendResult.permanent("wrong_channel")
        try:
            client = self._connect()
        except smtplib.SMTPResponseException as err:
            return _by_code(err.smtp_code)
        except TimeoutError:
            return SendResult.transient("timeout")
        except ssl.SSLError:
            return SendResult.transient("tls_error")
        except (smtplib.SMTPException, OSError):
            return SendResult.transient("connection_error")
        try:
            if self._username:
                client.login(self._username, self._password)
            refused = client.send_message(self.build(message))
            if refused:
                code = next(iter(refused.values()))[0]
                return _by_code(code)
            return SendResult.ok(250)
        except smtplib.SMTPRecipientsRefused as err:
            code = next(iter(err.recipients.values()))[0]
            return _by_code(code)
        except smtplib.SMTPResponseException as err:
            return _by_code(err.smtp_code)
        except TimeoutError:
            return SendResult.transient("timeout")
        except (smtplib.SMTPException, OSError):
            return SendResult.transient("connection_error")
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


def _by_code(code: int) -> SendResult:
    if 400 <= code < 500:
        return SendResult.transient(f"smtp_{code}", code)
    if code >= 500:
        return SendResult.permanent(f"smtp_{code}", code)
    return SendResult.transient(f"smtp_{code}", code)
