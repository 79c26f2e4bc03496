"""A contract signed across all five services, as processes, through the SDK.

The module starts the whole platform with the local platform code (``make run``'s): a real
SoftHSM token, a real Kafka broker, the third-party sandbox (provider and SMS gateway test
doubles, a real SMTP server) and the five services, in a temporary state dir on a free
block of ports. One story runs through the SDK flows: a tenant with a webhook receiver,
a person, an operator and an enterprise onboarded and certified, a PDF signed by the
person then sealed by the enterprise, each after a willingness check whose code is read
from the sandbox as the person receives it. The tests then check every artefact: both
PDF signatures (pyHanko, against the root from GetCaCertificates), the evidence package
(offline verifier, library and CLI), each notification delivered exactly once (mails in
the maildir, texts at the SMS gateway, webhook deliveries by event id, HMAC-verified),
and error cases as the SDK reports them. Tear-down leaves no process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signet.common.local import platform
from signet.common.local.processes import alive
from signet.common.local.sandbox import SandboxInbox
from signet.common.testing.http import HttpReceiver
from signet.identity.v1 import identity_pb2
from signet.notify.templates import BUILTIN
from signet.sdk import Signet, SignetError
from signet.sdk.demo import mails_of
from signet.sdk.flows import (
    SIGNATURE_CREATED,
    EvidenceBundle,
    Flows,
    Person,
    SignedPdf,
    Webhook,
    sha256,
    verify_evidence,
    verify_webhook,
)
from signet.sdk.pdf import validate_pdf_signatures
from signet.sdk.samples import contract_pdf, sample_credit_code, sample_id_number, sample_phone
from signet.signer.v1 import signer_pb2
from tests.fixtures.platform import pick_port_offset, platform_cli, running_processes

pytestmark = [pytest.mark.kafka, pytest.mark.softhsm, pytest.mark.slow]

WAIT = 90.0


@dataclass
class Platform:
    """The running platform and a client of it."""

    state_dir: Path
    env: dict[str, str]
    client: Signet
    inbox: SandboxInbox
    flows: Flows


@pytest.fixture(scope="module")
def local_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state = tmp_path_factory.mktemp("e2e") / "state"
    with pytest.MonkeyPatch.context() as mp:
        offset = pick_port_offset(mp, range(5250, 9500, 500))
        mp.setenv("SIGNET_STATE_DIR", str(state))
        env = dict(os.environ)
        env["SIGNET_STATE_DIR"] = str(state)
        env["SIGNET_LOCAL_PORT_OFFSET"] = str(offset)
        for name in list(env):
            if name.startswith("SIGNET_SDK_"):
                mp.delenv(name)
                del env[name]
        pids: dict[str, int] = {}
        try:
            started = platform_cli("start", env)
            assert started.returncode == 0, started.stdout + started.stderr
            pids = running_processes(state)
            assert {"signer", "identity", "ca-gateway", "evidence", "notify", "sandbox"} <= set(
                pids
            )
            inbox = SandboxInbox.for_state_dir(state)
            with Signet.local(timeout=20.0) as client:
                yield Platform(state, env, client, inbox, Flows(client, inbox, code_timeout=WAIT))
        finally:
            stopped = platform_cli("stop", env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        assert not left, f"processes left behind: {left}"
        assert not platform._broker().is_running(), "the Kafka broker was left running"


@dataclass
class Story:
    """What the signing story made."""

    tenant_id: str
    transaction_id: str
    person: Person
    operator: Person
    enterprise_email: str
    enterprise_serial: str
    contract: bytes
    first: SignedPdf
    second: SignedPdf
    hook: Webhook
    receiver: HttpReceiver
    bundle: EvidenceBundle
    sms_to_person: int


@pytest.fixture(scope="module")
def story(local_platform: Platform) -> Iterator[Story]:
    flows = local_platform.flows
    receiver = HttpReceiver()
    receiver.start()
    try:
        tenant = flows.create_tenant("E2E Contracts")
        hook = flows.register_webhook(tenant.tenant_id, f"{receiver.url}/hooks")
        person = flows.onboard_person(
            tenant.tenant_id,
            name="Zhang Wei",
            id_number=sample_id_number(),
            phone=sample_phone(),
            email="zhang.wei@e2e.example",
        )
        operator = flows.onboard_person(
            tenant.tenant_id,
            name="Li Na",
            id_number=sample_id_number(),
            phone=sample_phone(),
            email="li.na@e2e.example",
        )
        enterprise = flows.onboard_enterprise(
            tenant.tenant_id,
            operator,
            name="E2E Trading Co., Ltd.",
            credit_code=sample_credit_code(),
            legal_representative_name="Wang Fang",
            contact_phone=sample_phone(),
            contact_email="legal@e2e.example",
        )
        transaction = "tx-e2e-contract"
        contract = contract_pdf("E2E contract", ["Both parties agree."])
        first = flows.sign_pdf(
            person.signatory, contract, transaction_id=transaction, field_name="Buyer"
        )
        second = flows.sign_pdf(
            enterprise.signatory,
            first.pdf,
            transaction_id=transaction,
            field_name="Seller",
            method=identity_pb2.WILLINGNESS_METHOD_EMAIL_CODE,
        )
        flows.wait_for_evidence(transaction, signatures=2, timeout=WAIT)
        bundle = flows.export_evidence(transaction, tenant.tenant_id)
        yield Story(
            tenant_id=tenant.tenant_id,
            transaction_id=transaction,
            person=person,
            operator=operator,
            enterprise_email="legal@e2e.example",
            enterprise_serial=enterprise.certificate.serial,
            contract=contract,
            first=first,
            second=second,
            hook=hook,
            receiver=receiver,
            bundle=bundle,
            sms_to_person=len(local_platform.inbox.sms(person.phone)),
        )
    finally:
        receiver.stop()


def _settled(count: Callable[[], dict[str, int]], expected: list[str]) -> dict[str, int]:
    """``count()`` once every expected key was seen, and a second later (late duplicates)."""
    deadline = time.monotonic() + WAIT
    while not all(count().get(key, 0) >= 1 for key in expected):
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    time.sleep(1.0)
    return count()


def test_both_pdf_signatures_are_intact_valid_and_trusted(
    local_platform: Platform, story: Story
) -> None:
    roots = local_platform.flows.trust_roots()
    assert roots
    reports = validate_pdf_signatures(story.second.pdf, roots)
    assert [r.field_name for r in reports] == ["Buyer", "Seller"]
    for report in reports:
        assert report.intact and report.valid and report.trusted, report
        assert not report.modified_after, report
    assert "Zhang Wei" in reports[0].signer_subject
    assert "E2E Trading" in reports[1].signer_subject
    # The seller signed exactly what the buyer returned: an incremental update of it.
    assert story.second.pdf.startswith(story.first.pdf)
    assert story.first.pdf.startswith(story.contract)
    assert story.first.document_digest == sha256(story.contract)
    assert story.second.document_digest == sha256(story.first.pdf)


def test_a_tampered_pdf_fails_validation(local_platform: Platform, story: Story) -> None:
    tampered = story.second.pdf.replace(b"Both parties agree.", b"Both parties agree!")
    reports = validate_pdf_signatures(tampered, local_platform.flows.trust_roots())
    assert reports and not any(r.intact for r in reports)


def test_evidence_package_verifies_offline_with_both_signatures(
    local_platform: Platform, story: Story, tmp_path: Path
) -> None:
    verdict = verify_evidence(story.bundle)
    assert verdict.passed, verdict.failures
    items = {c.item for c in verdict.checks}
    for signed in (story.first, story.second):
        assert f"signature {signed.signature_id}" in items
        assert f"signature {signed.signature_id} willingness" in items
        assert f"signature {signed.signature_id} real-name" in items
        assert f"signature {signed.signature_id} certificate" in items
    entries = local_platform.flows.evidence_entries(story.transaction_id, SIGNATURE_CREATED)
    assert len(entries) == 2
    # The same package passes the offline CLI a court would run, with only public files.
    package = tmp_path / "evidence.zip"
    package.write_bytes(story.bundle.package)
    key = tmp_path / "log.pem"
    key.write_text(story.bundle.log_public_key_pem)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(
        b"".join(
            x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM)
            for d in story.bundle.ca_certificates_der
        )
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "signet.evidence.cli",
            str(package),
            "--log-key",
            str(key),
            "--ca-cert",
            str(roots),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "RESULT: PASS" in run.stdout


def test_a_modified_evidence_package_fails_verification(story: Story) -> None:
    damaged = bytearray(story.bundle.package)
    middle = len(damaged) // 2
    damaged[middle] ^= 0xFF
    bundle = EvidenceBundle(
        package=bytes(damaged),
        file_name=story.bundle.file_name,
        package_sha256=story.bundle.package_sha256,
        entry_count=story.bundle.entry_count,
        log_public_key_spki=story.bundle.log_public_key_spki,
        log_public_key_pem=story.bundle.log_public_key_pem,
        ca_certificates_der=story.bundle.ca_certificates_der,
    )
    assert not verify_evidence(bundle).passed


def test_each_mail_is_delivered_exactly_once(local_platform: Platform, story: Story) -> None:
    inbox = local_platform.inbox
    expected = {
        "signed-person": (story.person.email, "contract-completed", story.first.signature_id),
        "signed-enterprise": (
            story.enterprise_email,
            "contract-completed",
            story.second.signature_id,
        ),
        "cert-person": (story.person.email, "certificate-issued", story.person.certificate.serial),
        "cert-operator": (
            story.operator.email,
            "certificate-issued",
            story.operator.certificate.serial,
        ),
        "cert-enterprise": (story.enterprise_email, "certificate-issued", story.enterprise_serial),
        "verified-person": (story.person.email, "real-name-verified", ""),
        "operator-authorized": (story.operator.email, "operator-authorized", ""),
    }

    def count() -> dict[str, int]:
        return {key: mails_of(inbox, *mail) for key, mail in expected.items()}

    assert _settled(count, list(expected)) == dict.fromkeys(expected, 1)
    # The enterprise's willingness code went by email to its operator, once.
    codes = BUILTIN["willingness-code"].texts["en"].subject
    assert sum(1 for m in inbox.mails(story.operator.email) if m["Subject"] == codes) == 1


def test_codes_reach_the_phone_once_each(story: Story) -> None:
    # Real-name verification code, then the willingness code for the contract.
    assert story.sms_to_person == 2


def test_each_webhook_event_is_delivered_once_and_signed(
    local_platform: Platform, story: Story
) -> None:
    entries = local_platform.flows.evidence_entries(story.transaction_id, SIGNATURE_CREATED)
    signature_events = [e.event_id for e in entries]
    assert len(signature_events) == 2

    def count() -> dict[str, int]:
        seen: Counter[str] = Counter()
        for request in story.receiver.accepted("/hooks"):
            delivery_id = verify_webhook(story.hook.secret, request.body, request.headers)
            assert delivery_id
            seen[str(json.loads(request.body)["id"])] += 1
        return dict(seen)

    delivered = _settled(count, signature_events)
    for event_id in signature_events:
        assert delivered.get(event_id) == 1, delivered
    assert all(n == 1 for n in delivered.values()), delivered
    request = story.receiver.accepted("/hooks")[0]
    with pytest.raises(SignetError) as forged:
        verify_webhook("not-the-secret", request.body, request.headers)
    assert forged.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_wrong_willingness_code_is_refused_with_a_clear_status(
    story: Story, local_platform: Platform
) -> None:
    signatory = story.person.signatory
    sent = local_platform.inbox.expect_code("sms", signatory.phone)
    with pytest.raises(SignetError) as wrong:
        local_platform.flows.confirm_willingness(
            signatory, [sha256(b"another document")], code="000000"
        )
    assert wrong.value.code is grpc.StatusCode.PERMISSION_DENIED, wrong.value
    assert wrong.value.method == "ConfirmWillingness"
    assert "code" in wrong.value.message
    assert "Traceback" not in wrong.value.message
    # The real code did arrive; read it so the next check does not take it for its own.
    assert sent(WAIT) != "000000"


def test_replayed_grant_is_permission_denied(story: Story, local_platform: Platform) -> None:
    flows = local_platform.flows
    signatory = story.person.signatory
    document = contract_pdf("Replay check")
    grant = flows.confirm_willingness(signatory, [sha256(document)], transaction_id="tx-e2e-replay")
    signed = flows.sign_pdf_with_grant(
        signatory, document, grant.grant, transaction_id="tx-e2e-replay", field_name="Buyer"
    )
    assert signed.signature_id
    with pytest.raises(SignetError) as replay:
        flows.sign_pdf_with_grant(
            signatory, document, grant.grant, transaction_id="tx-e2e-replay", field_name="Buyer"
        )
    assert replay.value.code is grpc.StatusCode.PERMISSION_DENIED, replay.value
    assert replay.value.method == "SignDocument"


def test_signing_with_another_accounts_grant_is_refused(
    story: Story, local_platform: Platform
) -> None:
    flows = local_platform.flows
    document = contract_pdf("Cross-account check")
    grant = flows.confirm_willingness(story.operator.signatory, [sha256(document)])
    with pytest.raises(SignetError) as refused:
        local_platform.client.signer.SignDocument(
            signer_pb2.SignDocumentRequest(
                key_id=story.person.signatory.key_id,
                grant=grant.grant.token,
                format=signer_pb2.DOCUMENT_FORMAT_PADES,
                document=document,
                certificate_chain_der=list(story.person.signatory.certificate_chain_der),
            )
        )
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED, refused.value


def test_the_demo_command_passes_against_this_platform(local_platform: Platform) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "signet.sdk.cli",
            "demo",
            "--out",
            str(local_platform.state_dir / "demo"),
        ],
        env=local_platform.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "RESULT: PASS" in run.stdout
    assert list((local_platform.state_dir / "demo").glob("evidence-*.zip"))
