"""The signing flow the chaos run drives, and the one-time set-up it needs, over the SDK.

Set-up (before any fault), with :class:`signet.sdk.flows.Flows` and the local platform's
third-party sandbox as the inbox: a tenant and its API credential, a person onboarded
(verified by ID number and a phone code, certificate issued), an automatic-signing
authorisation confirmed by a willingness check, and a webhook endpoint for
``SignatureCreated``.

The flow under load is automatic sealing: ``IssueAutoSignGrant`` (identity signs the grant
through the signer) then ``SignDigest`` with that grant, as the tenant. The SDK client
balances over every replica, fills in idempotency keys and retries UNAVAILABLE within the
flow's deadline.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from signet.common.v1 import common_pb2
from signet.identity.v1 import identity_pb2
from signet.sdk import Endpoints, Signet, SignetError
from signet.sdk.flows import Flows, Inbox
from signet.sdk.samples import sample_id_number, sample_phone
from signet.signer.v1 import signer_pb2

SHA256 = common_pb2.HASH_ALGORITHM_SHA256
SIGNATURE_CREATED = "signet.events.v1.SignatureCreated"


@dataclass(frozen=True)
class Subject:
    """What the set-up made: who signs, with which key, under which authorisation."""

    tenant_id: str
    tenant_token: str
    account_id: str
    key_id: str
    authorization_id: str
    webhook_secret: str


@dataclass(frozen=True)
class FlowOutcome:
    """One attempted flow: when it started, whether it met its deadline, and what it made."""

    started: datetime
    ok: bool
    seconds: float
    signature_id: str = ""
    error: str = ""


def _digest(value: bytes) -> common_pb2.Digest:
    return common_pb2.Digest(algorithm=SHA256, value=hashlib.sha256(value).digest())


def set_up(
    endpoints: Endpoints, admin_token: str, inbox: Inbox, webhook_url: str, max_uses: int
) -> Subject:
    """Make the tenant, person, key, authorisation and webhook endpoint (no faults yet)."""
    with Signet(endpoints, admin_token, timeout=60) as admin:
        flows = Flows(admin, inbox, code_timeout=120)
        tenant = flows.create_tenant("Chaos Seal Tenant").tenant_id
        credential = admin.identity.CreateApiCredential(
            identity_pb2.CreateApiCredentialRequest(
                tenant_id=tenant, display_name="chaos load", scopes=["sign"]
            )
        ).token
        person = flows.onboard_person(
            tenant,
            name="李四海",
            id_number=sample_id_number(),
            phone=sample_phone(),
            email=f"chaos-{secrets.token_hex(4)}@example.test",
        )
        authorization = flows.authorize_auto_sign(
            person.signatory,
            business_scope="chaos-seal",
            authorization_text="I authorise unattended sealing of chaos receipts.",
            max_uses=max_uses,
            valid_for=timedelta(days=1),
        )
        hook = flows.register_webhook(
            tenant, webhook_url, [SIGNATURE_CREATED], "chaos reconciliation"
        )
    return Subject(
        tenant,
        credential,
        person.account_id,
        person.signatory.key_id,
        authorization.authorization_id,
        hook.secret,
    )


class FlowClient:
    """Runs signing flows for one subject as its tenant; safe to share between threads."""

    def __init__(self, endpoints: Endpoints, subject: Subject, deadline_seconds: float) -> None:
        self._subject = subject
        self._deadline = deadline_seconds
        self._client = Signet(endpoints, subject.tenant_token, timeout=deadline_seconds)

    def close(self) -> None:
        """Close the client's channels."""
        self._client.close()

    def run(self) -> FlowOutcome:
        """One flow: a grant for a fresh digest, then the signature, within the deadline."""
        started = datetime.now(UTC)
        t0 = time.monotonic()
        deadline = t0 + self._deadline
        transaction = "chaos-" + uuid.uuid4().hex
        digest = _digest(transaction.encode())
        try:
            grant = self._client.identity.IssueAutoSignGrant(
                identity_pb2.IssueAutoSignGrantRequest(
                    authorization_id=self._subject.authorization_id,
                    digests=[digest],
                    transaction_id=transaction,
                    request_id=uuid.uuid4().hex,
                ),
                timeout=max(deadline - time.monotonic(), 0.001),
            ).grant
            signed = self._client.signer.SignDigest(
                signer_pb2.SignDigestRequest(
                    key_id=self._subject.key_id,
                    digest=digest,
                    grant=grant.token,
                    transaction_id=transaction,
                ),
                timeout=max(deadline - time.monotonic(), 0.001),
            )
        except SignetError as err:
            return FlowOutcome(started, False, time.monotonic() - t0, error=str(err))
        seconds = time.monotonic() - t0
        if seconds > self._deadline:
            return FlowOutcome(started, False, seconds, signed.signature_id, "deadline exceeded")
        return FlowOutcome(started, True, seconds, signed.signature_id)
