"""The signing flow the chaos run drives, and the one-time set-up it needs.

Set-up (before any fault): a tenant and its API credential, a person verified by ID number
and a phone code (the code read from the SMS the platform really sent to the local SMS
receiver), a subscriber key in the signer, an automatic-signing authorisation confirmed by
a willingness check (again a real code), and a webhook endpoint for ``SignatureCreated``.

The flow under load is enterprise-style automatic sealing: ``IssueAutoSignGrant`` (identity
signs the grant through the signer) then ``SignDigest`` with that grant. Both calls go
through :func:`signet.common.channels.create_channel`: round robin over every replica,
UNAVAILABLE retried within the flow's deadline. The grant request carries an idempotency
key, so a retried grant counts one use.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.channels import create_channel
from signet.common.v1 import common_pb2
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.notify.v1 import notify_pb2, notify_pb2_grpc
from signet.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.fixtures.identity import make_id_number
from tests.fixtures.notify import HttpReceiver

SHA256 = common_pb2.HASH_ALGORITHM_SHA256
SIGNATURE_CREATED = "signet.events.v1.SignatureCreated"
PHONE = "13912345678"
_CODE = re.compile(r"(\d{4,8})")


@dataclass(frozen=True)
class Targets:
    """Comma-separated addresses of every replica of the services the flow calls."""

    identity: str
    signer: str
    notify: str


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


class CodeReader:
    """Reads one-time codes from the SMS messages the local SMS receiver got."""

    def __init__(self, sms: HttpReceiver) -> None:
        self._sms = sms

    def count(self) -> int:
        """How many SMS messages arrived so far."""
        return len(self._sms.received())

    def wait_code(self, after: int, timeout: float = 60.0) -> str:
        """The code in the first SMS after the ``after``-th one, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self._sms.received()
            if len(received) > after:
                text = str(_json_field(received[after].body, "text"))
                found = _CODE.search(text)
                if found is None:
                    raise RuntimeError("an SMS without a code arrived")
                return found.group(1)
            time.sleep(0.2)
        raise TimeoutError("no SMS with a one-time code arrived")


def _json_field(body: bytes, name: str) -> object:
    import json

    return json.loads(body)[name]


def _digest(value: bytes) -> common_pb2.Digest:
    return common_pb2.Digest(algorithm=SHA256, value=hashlib.sha256(value).digest())


def set_up(
    targets: Targets, admin_token: str, codes: CodeReader, webhook_url: str, max_uses: int
) -> Subject:
    """Make the tenant, account, key, authorisation and webhook endpoint (no faults yet)."""
    with (
        create_channel(targets.identity, default_timeout=30, bearer_token=admin_token) as ich,
        create_channel(targets.signer, default_timeout=30, bearer_token=admin_token) as sch,
        create_channel(targets.notify, default_timeout=30, bearer_token=admin_token) as nch,
    ):
        identity = identity_pb2_grpc.IdentityServiceStub(ich)
        signer = signer_pb2_grpc.SignerServiceStub(sch)
        notify = notify_pb2_grpc.NotifyServiceStub(nch)
        tenant = identity.CreateTenant(
            identity_pb2.CreateTenantRequest(name="Chaos Seal Tenant")
        ).tenant.tenant_id
        credential = identity.CreateApiCredential(
            identity_pb2.CreateApiCredentialRequest(
                tenant_id=tenant, display_name="chaos load", scopes=["sign"]
            )
        ).token
        account = identity.RegisterAccount(
            identity_pb2.RegisterAccountRequest(
                tenant_id=tenant,
                person=identity_pb2.PersonRegistration(name="李四海", phone=PHONE),
                locale="zh-CN",
                request_id=uuid.uuid4().hex,
            )
        ).account.account_id
        before = codes.count()
        started = identity.StartRealNameVerification(
            identity_pb2.StartRealNameVerificationRequest(
                account_id=account,
                person_id_phone=identity_pb2.PersonIdPhoneInput(
                    name="李四海", id_number=make_id_number(), phone=PHONE
                ),
            )
        )
        done = identity.CompleteRealNameVerification(
            identity_pb2.CompleteRealNameVerificationRequest(
                verification_id=started.verification_id, one_time_code=codes.wait_code(before)
            )
        )
        if done.status != identity_pb2.VERIFICATION_STATUS_VERIFIED:
            raise RuntimeError("the chaos account could not be verified")
        key_id = signer.CreateKey(
            signer_pb2.CreateKeyRequest(
                algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
                purpose=signer_pb2.KEY_PURPOSE_SUBSCRIBER_SIGNING,
                owner=signer_pb2.KeyOwner(
                    subscriber=signer_pb2.SubscriberOwner(tenant_id=tenant, account_id=account)
                ),
            )
        ).key.key_id
        terms = _digest(b"chaos automatic sealing terms")
        before = codes.count()
        check = identity.StartWillingness(
            identity_pb2.StartWillingnessRequest(
                account_id=account,
                key_id=key_id,
                digests=[terms],
                method=identity_pb2.WILLINGNESS_METHOD_SMS_CODE,
            )
        )
        confirmation = identity.ConfirmWillingness(
            identity_pb2.ConfirmWillingnessRequest(
                willingness_id=check.willingness_id, one_time_code=codes.wait_code(before)
            )
        ).grant.token
        until = Timestamp()
        until.FromDatetime(datetime.now(UTC) + timedelta(days=1))
        authorization = identity.CreateAutoSignAuthorization(
            identity_pb2.CreateAutoSignAuthorizationRequest(
                account_id=account,
                key_id=key_id,
                business_scope="chaos-seal",
                valid_until=until,
                max_uses=max_uses,
                confirmation_grant=confirmation,
                authorization_text_digest=terms,
                request_id=uuid.uuid4().hex,
            )
        ).authorization.authorization_id
        endpoint = notify.RegisterWebhookEndpoint(
            notify_pb2.RegisterWebhookEndpointRequest(
                tenant_id=tenant,
                url=webhook_url,
                event_types=[SIGNATURE_CREATED],
                description="chaos reconciliation",
            )
        )
    return Subject(tenant, credential, account, key_id, authorization, endpoint.secret)


class FlowClient:
    """Runs signing flows for one subject; safe to share between threads."""

    def __init__(self, targets: Targets, subject: Subject, deadline_seconds: float) -> None:
        self._subject = subject
        self._deadline = deadline_seconds
        token = subject.tenant_token
        self._ich = create_channel(
            targets.identity, default_timeout=deadline_seconds, bearer_token=token
        )
        self._sch = create_channel(
            targets.signer, default_timeout=deadline_seconds, bearer_token=token
        )
        self._identity = identity_pb2_grpc.IdentityServiceStub(self._ich)
        self._signer = signer_pb2_grpc.SignerServiceStub(self._sch)

    def close(self) -> None:
        """Close both channels."""
        self._ich.close()
        self._sch.close()

    def run(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FlowOutcome:
        """One flow: a grant for a fresh digest, then the signature, within the deadline."""
        started = clock()
        t0 = time.monotonic()
        deadline = t0 + self._deadline
        transaction = "chaos-" + uuid.uuid4().hex
        digest = _digest(transaction.encode())
        try:
            grant = self._identity.IssueAutoSignGrant(
                identity_pb2.IssueAutoSignGrantRequest(
                    authorization_id=self._subject.authorization_id,
                    digests=[digest],
                    transaction_id=transaction,
                    request_id=uuid.uuid4().hex,
                ),
                timeout=max(deadline - time.monotonic(), 0.001),
            ).grant
            signed = self._signer.SignDigest(
                signer_pb2.SignDigestRequest(
                    key_id=self._subject.key_id,
                    digest=digest,
                    grant=grant.token,
                    transaction_id=transaction,
                ),
                timeout=max(deadline - time.monotonic(), 0.001),
            )
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            name = code.name if code is not None else "UNKNOWN"
            details = err.details() if isinstance(err, grpc.Call) else ""
            return FlowOutcome(started, False, time.monotonic() - t0, error=f"{name}: {details}")
        seconds = time.monotonic() - t0
        if seconds > self._deadline:
            return FlowOutcome(started, False, seconds, signed.signature_id, "deadline exceeded")
        return FlowOutcome(started, True, seconds, signed.signature_id)
