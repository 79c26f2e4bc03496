"""One HTTP POST and the classification of its outcome, for the SMS provider and webhooks.

2xx is delivered; 408, 429 and 5xx, timeouts and connection failures are worth retrying;
any other status is permanent. Only the status code is kept, never the response body.
"""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping

from signet.notify.domain import SendResult

_RETRYABLE_STATUS = frozenset({408, 425, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: a signed body must go to the registered URL only."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def classify_status(status: int) -> SendResult:
    """The outcome an HTTP status means."""
    if 200 <= status < 300:
        return SendResult.ok(status)
    if status in _RETRYABLE_STATUS or status >= 500:
        return SendResult.transient(f"http_{status}", status)
    return SendResult.permanent(f"http_{status}", status)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> SendResult:
    """POST ``body`` to ``url`` and classify what came back."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310  (http(s) only, checked at registration)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(1024)
            return classify_status(int(response.status))
    except urllib.error.HTTPError as err:
        return classify_status(int(err.code))
    except TimeoutError:
        return SendResult.transient("timeout")
    except ssl.SSLError:
        return SendResult.transient("tls_error")
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError | socket.timeout):
            return SendResult.transient("timeout")
        if isinstance(err.reason, ssl.SSLError):
            return SendResult.transient("tls_error")
        return SendResult.transient("connection_error")
    except (ConnectionError, OSError):
        return SendResult.transient("connection_error")
