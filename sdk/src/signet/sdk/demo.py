"""The whole Signet story against a running local platform (``make run``): ``make demo``.

A tenant onboards a person and an enterprise (whose operator is a second person), the CA
issues their certificates, and a PDF contract is signed in order: first by the person
(willingness code by SMS), then sealed by the enterprise (its operator's code by email).
The enterprise also authorises automatic sealing and seals a receipt unattended. Codes
and the enterprise's verification transfer are read from the local sandbox, as the people
would receive them. Then the evidence package is exported and verified offline, and the
notifications are counted: the mails in the sandbox's maildir, and the tenant's webhook
deliveries to a local receiver started here, each HMAC-verified.

:func:`run_demo` returns a :class:`DemoReport` and raises :class:`DemoFailure` at the first
thing that is not as it must be; it prints nothing itself (``say`` receives each step).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc

from signet.common.local.sandbox import SandboxInbox, mail_text
from signet.common.testing.http import HttpReceiver
from signet.identity.v1 import identity_pb2
from signet.notify.templates import BUILTIN
from signet.sdk.client import Signet
from signet.sdk.errors import SignetError
from signet.sdk.flows import (
    SIGNATURE_CREATED,
    Flows,
    Signatory,
    SignedPdf,
    verify_evidence,
    verify_webhook,
)
from signet.sdk.pdf import validate_pdf_signatures
from signet.sdk.samples import (
    contract_pdf,
    sample_credit_code,
    sample_id_number,
    sample_phone,
)
from signet.signer.v1 import signer_pb2

CERTIFICATE_ISSUED = "signet.events.v1.CertificateIssued"
WEBHOOK_EVENT_TYPES = (SIGNATURE_CREATED, CERTIFICATE_ISSUED)


class DemoFailure(SignetError):
    """A demo step whose outcome is not what the platform promises."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(grpc.StatusCode.FAILED_PRECONDITION, message, step)


@dataclass
class DemoReport:
    """What the demo made and checked."""

    tenant_id: str = ""
    transaction_id: str = ""
    accounts: dict[str, str] = field(default_factory=dict)
    certificates: dict[str, str] = field(default_factory=dict)
    signatures: list[str] = field(default_factory=list)
    pdf_signatures_valid: int = 0
    signed_pdf: Path | None = None
    evidence_package: Path | None = None
    evidence_checks: int = 0
    mails: dict[str, int] = field(default_factory=dict)
    webhook_deliveries: dict[str, int] = field(default_factory=dict)
    auto_signature: str = ""
    seconds: float = 0.0


def mails_of(inbox: SandboxInbox, address: str, template: str, marker: str = "") -> int:
    """How many mails of notify's built-in ``template`` holding ``marker`` reached ``address``.

    What "delivered exactly once" is checked against (English templates).
    """
    subject = BUILTIN[template].texts["en"].subject
    return sum(
        1 for m in inbox.mails(address) if m["Subject"] == subject and marker in mail_text(m)
    )


def _count_until(
    count: Callable[[], dict[str, int]], expected: Sequence[str], timeout: float
) -> dict[str, int]:
    """Poll ``count`` until every expected key is seen, then once more after a short settle.

    The second look catches a duplicate delivered right after the first.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = count()
        if all(seen.get(key, 0) >= 1 for key in expected):
            break
        if time.monotonic() > deadline:
            return seen
        time.sleep(0.25)
    time.sleep(1.0)
    return count()


def run_demo(
    client: Signet,
    inbox: SandboxInbox,
    out_dir: Path,
    say: Callable[[str], None],
    *,
    timeout: float = 90.0,
) -> DemoReport:
    """Run the story; every artefact goes to ``out_dir``. Raises DemoFailure or SignetError."""
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    flows = Flows(client, inbox, code_timeout=timeout)
    report = DemoReport()
    receiver = HttpReceiver()
    receiver.start()
    try:
        _story(flows, inbox, receiver, out_dir, say, report, timeout)
    finally:
        receiver.stop()
    report.seconds = time.monotonic() - started
    return report


def _story(
    flows: Flows,
    inbox: SandboxInbox,
    receiver: HttpReceiver,
    out_dir: Path,
    say: Callable[[str], None],
    report: DemoReport,
    timeout: float,
) -> None:
    run = time.strftime("%Y%m%d-%H%M%S")
    tenant = flows.create_tenant(f"Demo Contracts {run}")
    report.tenant_id = tenant.tenant_id
    say(f"tenant created: {tenant.tenant_id}")
    hook = flows.register_webhook(
        tenant.tenant_id,
        f"{receiver.url}/signet/events",
        WEBHOOK_EVENT_TYPES,
        description="demo receiver",
    )
    say(f"webhook registered: {hook.endpoint.endpoint_id} -> {hook.endpoint.url}")

    suffix = run.replace("-", "")
    alice = flows.onboard_person(
        tenant.tenant_id,
        name="Zhang Wei",
        id_number=sample_id_number(),
        phone=sample_phone(),
        email=f"zhang.wei.{suffix}@example.com",
    )
    say(
        f"person onboarded: {alice.account_id} (verified by ID + SMS code), "
        f"certificate {alice.certificate.serial}"
    )
    operator = flows.onboard_person(
        tenant.tenant_id,
        name="Li Na",
        id_number=sample_id_number(),
        phone=sample_phone(),
        email=f"li.na.{suffix}@example.com",
    )
    say(f"operator onboarded: {operator.account_id}, certificate {operator.certificate.serial}")
    enterprise = flows.onboard_enterprise(
        tenant.tenant_id,
        operator,
        name="Hangzhou Example Trading Co., Ltd.",
        credit_code=sample_credit_code(),
        legal_representative_name="Wang Fang",
        contact_phone=sample_phone(),
        contact_email=f"legal.{suffix}@example.com",
    )
    enterprise_email = f"legal.{suffix}@example.com"
    say(
        f"enterprise onboarded: {enterprise.account_id} (registry check + transfer amount, "
        f"operator authorisation {enterprise.authorization.authorization_id}), "
        f"seal certificate {enterprise.certificate.serial}"
    )
    report.accounts = {
        "person": alice.account_id,
        "operator": operator.account_id,
        "enterprise": enterprise.account_id,
    }
    report.certificates = {
        "person": alice.certificate.serial,
        "operator": operator.certificate.serial,
        "enterprise": enterprise.certificate.serial,
    }

    transaction = f"tx-demo-{run}"
    report.transaction_id = transaction
    contract = contract_pdf(
        "Sales Contract " + transaction,
        [
            f"Buyer: Zhang Wei (account {alice.account_id})",
            f"Seller: Hangzhou Example Trading Co., Ltd. (account {enterprise.account_id})",
            "The seller delivers 100 units; the buyer pays within 30 days.",
        ],
    )
    first = flows.sign_pdf(
        alice.signatory,
        contract,
        transaction_id=transaction,
        field_name="Buyer",
        reason="I agree to this contract",
    )
    say(f"signed by the person (SMS willingness code): {first.signature_id}")
    second = flows.sign_pdf(
        enterprise.signatory,
        first.pdf,
        transaction_id=transaction,
        field_name="Seller",
        method=identity_pb2.WILLINGNESS_METHOD_EMAIL_CODE,
        level=signer_pb2.SIGNATURE_LEVEL_B_T,
        reason="Sealed by the seller",
    )
    say(
        "sealed by the enterprise (operator's email code, PAdES B-T with the platform TSA's"
        f" timestamp): {second.signature_id}"
    )
    report.signatures = [first.signature_id, second.signature_id]
    signed_path = out_dir / f"contract-{transaction}.pdf"
    signed_path.write_bytes(second.pdf)
    report.signed_pdf = signed_path

    roots = flows.trust_roots()
    checks = validate_pdf_signatures(second.pdf, roots)
    if [c.field_name for c in checks] != ["Buyer", "Seller"] or not all(c.ok for c in checks):
        raise DemoFailure("validate PDF", f"PDF signatures not all valid: {checks}")
    if checks[1].timestamped_at is None or not checks[1].timestamp_trusted:
        raise DemoFailure("validate PDF", "the seal's signature timestamp is missing or untrusted")
    report.pdf_signatures_valid = len(checks)
    say(f"both PDF signatures intact, valid and trusted (pyHanko, root CA): {signed_path}")

    auto = _auto_seal(flows, enterprise.signatory, run)
    report.auto_signature = auto.signature_id
    say(f"receipt sealed unattended under an auto-sign authorisation: {auto.signature_id}")

    flows.wait_for_evidence(transaction, signatures=2, timeout=timeout)
    bundle = flows.export_evidence(transaction, tenant.tenant_id)
    package_path = out_dir / bundle.file_name
    package_path.write_bytes(bundle.package)
    (out_dir / "log-public-key.pem").write_text(bundle.log_public_key_pem)
    verdict = verify_evidence(bundle)
    if not verdict.passed:
        failed = "; ".join(f"{c.item}: {c.detail}" for c in verdict.failures)
        raise DemoFailure("verify evidence", f"evidence package failed: {failed}")
    signed_ids = {c.item.split()[1] for c in verdict.checks if c.item.startswith("signature ")}
    if not set(report.signatures) <= signed_ids:
        raise DemoFailure("verify evidence", "the package lacks one of the contract signatures")
    report.evidence_package = package_path
    report.evidence_checks = len(verdict.checks)
    say(
        f"evidence package exported ({bundle.entry_count} entries) and verified offline: "
        f"{len(verdict.checks)} checks passed -> {package_path}"
    )

    # (address, template, text the mail must contain): each must arrive exactly once.
    expected_mails = {
        f"contract-completed {first.signature_id}": (
            alice.email,
            "contract-completed",
            first.signature_id,
        ),
        f"contract-completed {second.signature_id}": (
            enterprise_email,
            "contract-completed",
            second.signature_id,
        ),
        f"certificate-issued {alice.certificate.serial}": (
            alice.email,
            "certificate-issued",
            alice.certificate.serial,
        ),
        f"certificate-issued {enterprise.certificate.serial}": (
            enterprise_email,
            "certificate-issued",
            enterprise.certificate.serial,
        ),
    }

    def count_mails() -> dict[str, int]:
        return {key: mails_of(inbox, *expected) for key, expected in expected_mails.items()}

    mails = _count_until(count_mails, list(expected_mails), timeout)
    report.mails = mails
    if any(n != 1 for n in mails.values()):
        raise DemoFailure("notifications", f"mails not delivered exactly once: {mails}")
    say(f"mails delivered once each through SMTP: {len(mails)} checked")

    signature_events = [
        e.event_id for e in flows.evidence_entries(transaction, SIGNATURE_CREATED, tenant.tenant_id)
    ]

    def count_hooks() -> dict[str, int]:
        counts: Counter[str] = Counter()
        for request in receiver.accepted():
            verify_webhook(hook.secret, request.body, request.headers)
            counts[str(json.loads(request.body)["id"])] += 1
        return dict(counts)

    hooks = _count_until(count_hooks, signature_events, timeout)
    report.webhook_deliveries = hooks
    if any(hooks.get(event, 0) != 1 for event in signature_events) or any(
        n != 1 for n in hooks.values()
    ):
        raise DemoFailure("notifications", f"webhooks not delivered exactly once: {hooks}")
    say(
        f"webhook deliveries HMAC-verified, once per event: {len(hooks)} events "
        f"(incl. {len(signature_events)} contract signatures)"
    )


def _auto_seal(flows: Flows, signatory: Signatory, run: str) -> SignedPdf:
    authorization = flows.authorize_auto_sign(
        signatory,
        business_scope="receipts",
        authorization_text="I authorise Signet to seal our receipts automatically for 30 days.",
        max_uses=10,
        valid_for=timedelta(days=30),
        method=identity_pb2.WILLINGNESS_METHOD_EMAIL_CODE,
    )
    receipt = contract_pdf("Receipt " + run, ["Received with thanks."])
    return flows.auto_sign_pdf(
        signatory,
        authorization.authorization_id,
        receipt,
        transaction_id=f"tx-receipt-{run}",
        field_name="Seal",
    )
