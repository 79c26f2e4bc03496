"""The public API in proto/ keeps its shape: every RPC, naming rules, enums, events.

Product teams and the other services code against these descriptors, so dropping or
renaming an RPC, an enum without a zero UNSPECIFIED value, or an event payload that leaks
personal data must fail here before it ships.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from types import ModuleType

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.signer.v1 import signer_pb2

PACKAGES = ("common", "events", "identity", "ca_gateway", "signer", "evidence", "notify")

SERVICES: dict[str, tuple[str, frozenset[str]]] = {
    "identity": (
        "signet.identity.v1.IdentityService",
        frozenset(
            {
                "CreateTenant",
                "GetTenant",
                "RegisterAccount",
                "GetAccount",
                "UpdateAccount",
                "GetContactDetails",
                "GrantOperatorAuthorization",
                "RevokeOperatorAuthorization",
                "ListOperatorAuthorizations",
                "CreateApiCredential",
                "RotateApiCredential",
                "RevokeApiCredential",
                "AuthenticateApiCredential",
                "StartRealNameVerification",
                "CompleteRealNameVerification",
                "StartWillingness",
                "ConfirmWillingness",
                "GetGrantVerificationKeys",
                "CreateAutoSignAuthorization",
                "RevokeAutoSignAuthorization",
                "ListAutoSignAuthorizations",
                "IssueAutoSignGrant",
                "ExportPersonalData",
                "CorrectPersonalData",
                "RequestDeletion",
                "CancelAccount",
                "GetCancellationStatus",
            }
        ),
    ),
    "ca_gateway": (
        "signet.ca_gateway.v1.CaGatewayService",
        frozenset(
            {
                "IssueCertificate",
                "RenewCertificate",
                "RevokeCertificate",
                "GetCertificate",
                "ListCertificates",
                "GetRevocationStatus",
                "GetCaCertificates",
                "SetAutoRenewal",
            }
        ),
    ),
    "signer": (
        "signet.signer.v1.SignerService",
        frozenset(
            {
                "CreateKey",
                "GetKey",
                "GetPublicKey",
                "ListKeys",
                "DisableKey",
                "DestroyKey",
                "SignDigest",
                "SignBatch",
                "SignDocument",
            }
        ),
    ),
    "evidence": (
        "signet.evidence.v1.EvidenceService",
        frozenset(
            {
                "Append",
                "GetSignedTreeHead",
                "GetInclusionProof",
                "GetConsistencyProof",
                "GetEntries",
                "Timestamp",
                "ExportEvidencePackage",
                "GetLogPublicKey",
            }
        ),
    ),
    "notify": (
        "signet.notify.v1.NotifyService",
        frozenset(
            {
                "SendNotification",
                "GetDeliveryStatus",
                "RegisterWebhookEndpoint",
                "RotateWebhookSecret",
                "ListWebhookEndpoints",
                "ReplayDeadLetters",
                "DeclareIncident",
                "SetNotificationPreferences",
                "GetNotificationPreferences",
            }
        ),
    ),
}

EVENT_PAYLOADS = frozenset(
    {
        "TenantCreated",
        "AccountRegistered",
        "AccountUpdated",
        "RealNameVerified",
        "RealNameFailed",
        "WillingnessConfirmed",
        "WillingnessFailed",
        "OperatorAuthorizationGranted",
        "OperatorAuthorizationRevoked",
        "ApiCredentialCreated",
        "ApiCredentialRotated",
        "ApiCredentialRevoked",
        "AutoSignAuthorized",
        "AutoSignRevoked",
        "AutoSignGrantIssued",
        "PersonalDataExported",
        "PersonalDataCorrected",
        "DeletionRequested",
        "DeletionCompleted",
        "PersonalDataPurged",
        "AccountCancellationRequested",
        "AccountCancelled",
        "CertificateIssued",
        "CertificateRenewed",
        "CertificateRevoked",
        "CertificateExpiring",
        "CrlPublished",
        "KeyCreated",
        "KeyDisabled",
        "KeyDestroyed",
        "SignatureCreated",
        "EvidenceAppended",
        "TreeHeadSigned",
        "TimestampIssued",
        "EvidencePackageExported",
        "NotificationSent",
        "NotificationFailed",
        "NotificationDeadLettered",
        "NotificationReplayed",
        "IncidentDeclared",
        "WebhookEndpointRegistered",
        "WebhookSecretRotated",
    }
)

# Field names that would carry personal data, secrets or documents in clear. Events may
# only carry masked_* values, hashes and digests.
FORBIDDEN_EVENT_FIELDS = frozenset(
    {
        "name",
        "phone",
        "email",
        "id_number",
        "card_number",
        "credit_code",
        "one_time_code",
        "code",
        "secret",
        "token",
        "document",
        "content",
        "face_image",
        "device_fingerprint",
        "params",
    }
)


def _pb2(package: str) -> ModuleType:
    return importlib.import_module(f"signet.{package}.v1.{package}_pb2")


def _grpc(package: str) -> ModuleType:
    return importlib.import_module(f"signet.{package}.v1.{package}_pb2_grpc")


def _file(package: str) -> FileDescriptor:
    descriptor = _pb2(package).DESCRIPTOR
    assert isinstance(descriptor, FileDescriptor)
    return descriptor


def _messages(descriptors: list[Descriptor]) -> Iterator[Descriptor]:
    for message in descriptors:
        yield message
        yield from _messages(list(message.nested_types))


def _enums(file: FileDescriptor) -> Iterator[EnumDescriptor]:
    yield from file.enum_types_by_name.values()
    for message in _messages(list(file.message_types_by_name.values())):
        yield from message.enum_types


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


@pytest.mark.parametrize("package", PACKAGES)
def test_generated_modules_import_and_declare_their_package(package: str) -> None:
    file = _file(package)
    assert file.package == f"signet.{package}.v1"
    assert file.name == f"signet/{package}/v1/{package}.proto"
    _grpc(package)


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_service_has_exactly_the_documented_rpcs(package: str) -> None:
    full_name, expected = SERVICES[package]
    services = _file(package).services_by_name
    assert len(services) == 1
    service = next(iter(services.values()))
    assert service.full_name == full_name
    assert {method.name for method in service.methods} == expected


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_every_rpc_has_its_own_request_and_response(package: str) -> None:
    service = next(iter(_file(package).services_by_name.values()))
    seen: set[str] = set()
    for method in service.methods:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", method.name)
        assert method.input_type.full_name == f"signet.{package}.v1.{method.name}Request"
        assert method.output_type.full_name == f"signet.{package}.v1.{method.name}Response"
        assert not method.client_streaming
        assert not method.server_streaming
        for message in (method.input_type.full_name, method.output_type.full_name):
            assert message not in seen
            seen.add(message)


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_generated_grpc_module_offers_stub_servicer_and_registration(package: str) -> None:
    full_name, expected = SERVICES[package]
    short = full_name.rsplit(".", 1)[1]
    module = _grpc(package)
    stub = getattr(module, f"{short}Stub")
    servicer = getattr(module, f"{short}Servicer")
    assert callable(getattr(module, f"add_{short}Servicer_to_server"))
    assert callable(stub)
    for rpc in expected:
        assert callable(getattr(servicer, rpc))


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_list_rpcs_are_paginated(package: str) -> None:
    service = next(iter(_file(package).services_by_name.values()))
    listing = [m for m in service.methods if m.name.startswith("List")]
    assert listing or package == "evidence"
    for method in [*listing, *(m for m in service.methods if m.name == "GetEntries")]:
        request_fields = method.input_type.fields_by_name
        assert request_fields["page_size"].type == request_fields["page_size"].TYPE_INT32
        assert request_fields["page_token"].type == request_fields["page_token"].TYPE_STRING
        assert "next_page_token" in method.output_type.fields_by_name


@pytest.mark.parametrize("package", PACKAGES)
def test_every_enum_starts_with_unspecified_and_prefixes_its_values(package: str) -> None:
    enums = list(_enums(_file(package)))
    for enum in enums:
        prefix = _upper_snake(enum.name)
        zero = enum.values_by_number[0]
        assert zero.name == f"{prefix}_UNSPECIFIED", enum.full_name
        assert enum.values[0].number == 0, enum.full_name
        for value in enum.values:
            assert value.name.startswith(f"{prefix}_"), value.name


def test_the_enums_the_issues_name_exist() -> None:
    found = {enum.full_name for package in PACKAGES for enum in _enums(_file(package))}
    assert {
        "signet.common.v1.KeyAlgorithm",
        "signet.common.v1.HashAlgorithm",
        "signet.common.v1.SignatureScheme",
        "signet.identity.v1.AccountType",
        "signet.identity.v1.AccountState",
        "signet.identity.v1.VerificationMethod",
        "signet.identity.v1.VerificationStatus",
        "signet.identity.v1.WillingnessMethod",
        "signet.ca_gateway.v1.CertificateStatus",
        "signet.ca_gateway.v1.RevocationReason",
        "signet.signer.v1.KeyPurpose",
        "signet.signer.v1.KeyState",
        "signet.notify.v1.Channel",
    } <= found


def test_revocation_reasons_keep_rfc5280_codes() -> None:
    from signet.ca_gateway.v1 import ca_gateway_pb2

    reason = ca_gateway_pb2.RevocationReason
    assert reason.Value("REVOCATION_REASON_KEY_COMPROMISE") == 1
    assert reason.Value("REVOCATION_REASON_SUPERSEDED") == 4
    assert reason.Value("REVOCATION_REASON_CESSATION_OF_OPERATION") == 5
    assert reason.Value("REVOCATION_REASON_REMOVE_FROM_CRL") == 8
    assert reason.Value("REVOCATION_REASON_PRIVILEGE_WITHDRAWN") == 9
    assert reason.Value("REVOCATION_REASON_AA_COMPROMISE") == 10
    platform = [
        name
        for name in reason.DESCRIPTOR.values_by_name
        if name.startswith("REVOCATION_REASON_PLATFORM_")
    ]
    assert len(platform) == 6


def test_key_and_hash_algorithms_cover_what_the_signer_supports() -> None:
    from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme

    for enum_type, proto_enum in (
        (KeyAlgorithm, common_pb2.KeyAlgorithm),
        (HashAlgorithm, common_pb2.HashAlgorithm),
        (SignatureScheme, common_pb2.SignatureScheme),
    ):
        prefix = _upper_snake(proto_enum.DESCRIPTOR.name)
        for member in enum_type:
            assert f"{prefix}_{member.value}" in proto_enum.DESCRIPTOR.values_by_name


def test_every_documented_event_payload_exists() -> None:
    file = _file("events")
    payloads = set(file.message_types_by_name) - {"TraceContext", "EventEnvelope"}
    assert payloads == EVENT_PAYLOADS


def test_event_payloads_carry_no_personal_data_or_documents_in_clear() -> None:
    file = _file("events")
    checked: set[str] = set()
    pending = [file.message_types_by_name[name] for name in EVENT_PAYLOADS]
    while pending:
        message = pending.pop()
        if message.full_name in checked or message.full_name.startswith("google."):
            continue
        checked.add(message.full_name)
        for field in message.fields:
            assert field.name not in FORBIDDEN_EVENT_FIELDS, f"{message.full_name}.{field.name}"
            if field.message_type is not None:
                pending.append(field.message_type)
    assert "signet.common.v1.Digest" in checked


def test_envelope_keeps_its_original_field_numbers() -> None:
    fields = events_pb2.EventEnvelope.DESCRIPTOR.fields_by_name
    original = {
        "id": 1,
        "type": 2,
        "source": 3,
        "subject": 4,
        "tenant": 5,
        "time": 6,
        "trace": 7,
        "payload": 8,
    }
    assert {name: fields[name].number for name in original} == original
    trace = events_pb2.TraceContext.DESCRIPTOR.fields_by_name
    assert (trace["traceparent"].number, trace["tracestate"].number) == (1, 2)


def test_event_envelope_round_trips_with_an_any_packed_payload() -> None:
    digest = common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=bytes(range(32)))
    payload = events_pb2.SignatureCreated(
        signature_id="sig-1",
        key_id="key-1",
        owner=signer_pb2.KeyOwner(
            subscriber=signer_pb2.SubscriberOwner(tenant_id="t-1", account_id="acc-1")
        ),
        grant_id="grant-1",
        digest=digest,
        scheme=common_pb2.SIGNATURE_SCHEME_ECDSA,
    )
    envelope = events_pb2.EventEnvelope(
        id="5b0c1e2a-0000-4000-8000-000000000001",
        type=payload.DESCRIPTOR.full_name,
        source="signer",
        subject="key-1",
        tenant="t-1",
        time=Timestamp(seconds=1_700_000_000, nanos=5),
        trace=events_pb2.TraceContext(
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ),
        actor=common_pb2.ActorContext(tenant_id="t-1", account_id="acc-1", client="sdk/1"),
        transaction_id="tx-1",
        digests=[digest],
    )
    envelope.payload.Pack(payload)

    decoded = events_pb2.EventEnvelope.FromString(envelope.SerializeToString(deterministic=True))

    assert decoded == envelope
    assert decoded.type == "signet.events.v1.SignatureCreated"
    assert decoded.payload.Is(events_pb2.SignatureCreated.DESCRIPTOR)
    assert not decoded.payload.Is(events_pb2.KeyCreated.DESCRIPTOR)
    unpacked = events_pb2.SignatureCreated()
    assert decoded.payload.Unpack(unpacked)
    assert unpacked == payload
    assert unpacked.owner.WhichOneof("owner") == "subscriber"
    assert unpacked.digest.value == bytes(range(32))
