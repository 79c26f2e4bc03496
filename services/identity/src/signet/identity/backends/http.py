"""Identity check providers over HTTP/JSON (one client per kind of check).

Every call is a JSON POST (or GET for a face session's result) with the provider API key
as a bearer token and a timeout; a connection failure, a timeout, a 5xx or an unreadable
body is :class:`~signet.identity.providers.ProviderUnavailable`. Personal data goes only
into request bodies over the provider connection, never into URLs or logs.

Provider API (paths under the base URL):
``POST /v1/carrier/verify`` {name, id_number, phone};
``POST /v1/bank-card/verify`` {name, id_number, card_number, phone};
``POST /v1/face/sessions`` {name, id_number, return_url} -> {session_token, url, reference};
``GET /v1/face/sessions/<token>`` -> {status, match, liveness, reference};
``POST /v1/enterprise/verify`` {name, credit_code, legal_representative_name};
``POST /v1/enterprise/transfers`` {credit_code, amount_fen} -> {reference}.
Verify calls answer {result: "match" | "mismatch", reference}.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from signet.identity.models import FailureReason
from signet.identity.providers import CheckResult, FaceSession, ProviderUnavailable

_log = logging.getLogger("signet.identity.providers")
_MAX_BODY = 64 * 1024


class HttpJsonClient:
    """POST/GET JSON to one provider base URL."""

    def __init__(self, name: str, base_url: str, api_key: str = "", timeout: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{name} provider URL must be http(s)")
        self.name = name
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; the decoded JSON object, or ProviderUnavailable."""
        data = json.dumps(body).encode() if body is not None else None
        # The base URL was checked to be http(s) when the client was built.
        request = urllib.request.Request(self._base + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._api_key:
            request.add_header("Authorization", "Bearer " + self._api_key)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                raw = response.read(_MAX_BODY + 1)
        except urllib.error.HTTPError as err:
            _log.warning(
                "provider answered an error", extra={"provider": self.name, "status": err.code}
            )
            raise ProviderUnavailable(self.name) from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            _log.warning(
                "provider unreachable", extra={"provider": self.name, "error": type(err).__name__}
            )
            raise ProviderUnavailable(self.name) from None
        try:
            decoded = json.loads(raw[:_MAX_BODY])
        except ValueError:
            raise ProviderUnavailable(self.name) from None
        if not isinstance(decoded, dict):
            raise ProviderUnavailable(self.name)
        return decoded

    def verdict(self, answer: dict[str, Any], mismatch: FailureReason) -> CheckResult:
        """A verify call's answer as a CheckResult."""
        result = answer.get("result")
        reference = str(answer.get("reference", ""))[:200]
        if result == "match":
            return CheckResult(self.name, True, reference)
        if result == "mismatch":
            return CheckResult(self.name, False, reference, mismatch)
        raise ProviderUnavailable(self.name)


class HttpCarrierCheck:
    """Carrier three-element check over HTTP."""

    def __init__(self, client: HttpJsonClient) -> None:
        self._client = client

    def check_phone(self, name: str, id_number: str, phone: str) -> CheckResult:
        """Ask whether name, ID number and phone are registered together."""
        answer = self._client.call(
            "POST", "/v1/carrier/verify", {"name": name, "id_number": id_number, "phone": phone}
        )
        return self._client.verdict(answer, FailureReason.ELEMENTS_MISMATCH)


class HttpBankCardCheck:
    """Bank card four-element check over HTTP."""

    def __init__(self, client: HttpJsonClient) -> None:
        self._client = client

    def check_bank_card(
        self, name: str, id_number: str, card_number: str, phone: str
    ) -> CheckResult:
        """Ask whether the four elements belong together."""
        answer = self._client.call(
            "POST",
            "/v1/bank-card/verify",
            {"name": name, "id_number": id_number, "card_number": card_number, "phone": phone},
        )
        return self._client.verdict(answer, FailureReason.ELEMENTS_MISMATCH)


class HttpFaceMatch:
    """Face match with liveness over HTTP."""

    def __init__(self, client: HttpJsonClient) -> None:
        self._client = client

    def start_session(self, name: str, id_number: str, return_url: str) -> FaceSession:
        """Open a capture session; the user is sent to its URL."""
        answer = self._client.call(
            "POST",
            "/v1/face/sessions",
            {"name": name, "id_number": id_number, "return_url": return_url},
        )
        token, url = answer.get("session_token"), answer.get("url")
        if not isinstance(token, str) or not token or not isinstance(url, str):
            raise ProviderUnavailable(self._client.name)
        return FaceSession(self._client.name, token[:200], url, str(answer.get("reference", "")))

    def session_result(self, session_token: str) -> CheckResult:
        """The finished session's outcome; an unfinished one is unavailable (retry later)."""
        quoted = urllib.parse.quote(session_token, safe="")
        answer = self._client.call("GET", f"/v1/face/sessions/{quoted}")
        reference = str(answer.get("reference", ""))[:200]
        if answer.get("status") != "completed":
            raise ProviderUnavailable(self._client.name)
        if answer.get("liveness") is not True:
            return CheckResult(self._client.name, False, reference, FailureReason.LIVENESS_FAILED)
        if answer.get("match") is not True:
            return CheckResult(self._client.name, False, reference, FailureReason.FACE_MISMATCH)
        return CheckResult(self._client.name, True, reference)


class HttpEnterpriseRegistry:
    """Business registry check and verification transfer over HTTP."""

    def __init__(self, client: HttpJsonClient) -> None:
        self._client = client

    def check_enterprise(
        self, enterprise_name: str, credit_code: str, legal_representative_name: str
    ) -> CheckResult:
        """Ask the registry whether the three elements match."""
        answer = self._client.call(
            "POST",
            "/v1/enterprise/verify",
            {
                "name": enterprise_name,
                "credit_code": credit_code,
                "legal_representative_name": legal_representative_name,
            },
        )
        return self._client.verdict(answer, FailureReason.ELEMENTS_MISMATCH)

    def send_verification_transfer(self, credit_code: str, amount_fen: int) -> str:
        """Have the payment provider send ``amount_fen`` to the enterprise's account."""
        answer = self._client.call(
            "POST",
            "/v1/enterprise/transfers",
            {"credit_code": credit_code, "amount_fen": amount_fen},
        )
        reference = answer.get("reference")
        if not isinstance(reference, str) or not reference:
            raise ProviderUnavailable(self._client.name)
        return reference[:200]
