"""Real-name verification over gRPC: every method, local check failures, codes and locks.

Codes come from the notify test double (what notify was asked to deliver); provider
answers come from the local provider HTTP server.
"""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from signet.events.v1 import events_pb2
from signet.identity.v1 import identity_pb2
from tests.fixtures.identity import IdentityEnv, make_credit_code, make_id_number

ID = make_id_number()
PHONE = "13812345678"
V = identity_pb2


def _start_id_phone(
    env: IdentityEnv, account_id: str, id_number: str = ID, phone: str = PHONE, name: str = "张三明"
) -> identity_pb2.StartRealNameVerificationResponse:
    return env.stub.StartRealNameVerification(
        V.StartRealNameVerificationRequest(
            account_id=account_id,
            person_id_phone=V.PersonIdPhoneInput(name=name, id_number=id_number, phone=phone),
        )
    )


def _complete(
    env: IdentityEnv, verification_id: str, code: str
) -> identity_pb2.CompleteRealNameVerificationResponse:
    return env.stub.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(verification_id=verification_id, one_time_code=code)
    )


def _wrong(code: str) -> str:
    return "".join(str((int(c) + 1) % 10) for c in code)


def test_id_and_phone_code_verifies_the_person(env: IdentityEnv) -> None:
    account = env.person(env.tenant())
    started = _start_id_phone(env, account.account_id)
    assert started.status == V.VERIFICATION_STATUS_PENDING
    assert started.masked_code_destination == "138****5678"
    sent = env.notify.requests[-1]
    assert sent.recipient.phone_number == PHONE
    assert list(sent.sensitive_params) == ["code"]
    assert sent.category == 1  # NOTIFICATION_CATEGORY_ONE_TIME_CODE
    done = _complete(env, started.verification_id, env.notify.last_code())
    assert done.status == V.VERIFICATION_STATUS_VERIFIED
    assert done.account.state == V.ACCOUNT_STATE_VERIFIED
    assert done.account.person.masked_id_number == ID[:4] + "*" * 10 + ID[-4:]
    assert done.account.person.name == "张三明"
    assert len(done.account.subject_identifier_hash) == 32
    assert done.provider == "carrier" and done.provider_reference.startswith("ref-")
    verified = env.events(events_pb2.RealNameVerified)[-1]
    assert verified.subject_identifier_hash == done.account.subject_identifier_hash
    assert verified.method == V.VERIFICATION_METHOD_PERSON_ID_PHONE


def test_the_subject_hash_is_stable_for_the_same_id_number(env: IdentityEnv) -> None:
    tenant = env.tenant()
    first = env.verified_person(tenant, id_number=ID)
    second = env.verified_person(tenant, name="张三明", phone="13911112222", id_number=ID)
    other = env.verified_person(tenant, phone="13911113333", id_number=make_id_number(seq="456"))
    assert first.subject_identifier_hash == second.subject_identifier_hash
    assert first.subject_identifier_hash != other.subject_identifier_hash


@pytest.mark.parametrize(
    "bad",
    [
        ID[:-1] + ("0" if ID[-1] != "0" else "1"),  # wrong GB 11643 check digit
        make_id_number(birth="19901332"),  # no such date
        make_id_number(birth="21000101"),  # born in the future
        "33010619900307123",  # 17 characters
        make_id_number(region="990106"),  # no such province
    ],
)
def test_bad_id_numbers_fail_locally_without_a_provider_call(env: IdentityEnv, bad: str) -> None:
    account = env.person(env.tenant())
    started = _start_id_phone(env, account.account_id, id_number=bad)
    assert started.status == V.VERIFICATION_STATUS_FAILED
    assert started.failure_reason == V.VERIFICATION_FAILURE_REASON_INVALID_ID_NUMBER
    assert env.providers.behaviour.requests == []
    assert env.notify.requests == []
    failed = env.events(events_pb2.RealNameFailed)[-1]
    assert failed.reason == V.VERIFICATION_FAILURE_REASON_INVALID_ID_NUMBER


def test_wrong_code_counts_attempts_and_locks_at_the_fifth(env: IdentityEnv) -> None:
    account = env.person(env.tenant())
    started = _start_id_phone(env, account.account_id)
    wrong = _wrong(env.notify.last_code())
    for left in (4, 3, 2, 1):
        reply = _complete(env, started.verification_id, wrong)
        assert reply.status == V.VERIFICATION_STATUS_PENDING
        assert reply.failure_reason == V.VERIFICATION_FAILURE_REASON_CODE_MISMATCH
        assert reply.attempts_remaining == left
    locked = _complete(env, started.verification_id, wrong)
    assert locked.status == V.VERIFICATION_STATUS_LOCKED
    assert locked.failure_reason == V.VERIFICATION_FAILURE_REASON_TOO_MANY_ATTEMPTS
    with pytest.raises(grpc.RpcError) as info:
        _complete(env, started.verification_id, env.notify.last_code())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "locked" in str(info.value.details())
    assert env.events(events_pb2.RealNameFailed)[-1].locked


def test_expired_code_is_refused(env: IdentityEnv) -> None:
    account = env.person(env.tenant())
    started = _start_id_phone(env, account.account_id)
    env.clock.advance(minutes=5, seconds=1)
    reply = _complete(env, started.verification_id, env.notify.last_code())
    assert reply.status == V.VERIFICATION_STATUS_EXPIRED
    assert reply.failure_reason == V.VERIFICATION_FAILURE_REASON_CODE_EXPIRED
    assert reply.account.state == V.ACCOUNT_STATE_REGISTERED


def test_a_used_code_cannot_complete_again(env: IdentityEnv) -> None:
    account = env.person(env.tenant())
    started = _start_id_phone(env, account.account_id)
    code = env.notify.last_code()
    assert _complete(env, started.verification_id, code).status == V.VERIFICATION_STATUS_VERIFIED
    with pytest.raises(grpc.RpcError) as info:
        _complete(env, started.verification_id, code)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_carrier_mismatch_and_provider_outage_fail_with_their_reason(env: IdentityEnv) -> None:
    account = env.person(env.tenant())
    env.providers.behaviour.carrier = "mismatch"
    started = _start_id_phone(env, account.account_id)
    assert started.failure_reason == V.VERIFICATION_FAILURE_REASON_ELEMENTS_MISMATCH
    env.providers.behaviour.down = True
    started = _start_id_phone(env, account.account_id)
    assert started.failure_reason == V.VERIFICATION_FAILURE_REASON_PROVIDER_ERROR
    assert env.notify.requests == []


def test_minor_needs_a_guardian(env: IdentityEnv) -> None:
    tenant = env.tenant()
    year = env.clock.now.year - 10
    child_id = make_id_number(birth=f"{year}0101")
    child = env.person(tenant, name="小明")
    started = _start_id_phone(env, child.account_id, id_number=child_id, name="小明")
    assert started.failure_reason == V.VERIFICATION_FAILURE_REASON_MINOR_WITHOUT_GUARDIAN
    guardian = env.verified_person(tenant, phone="13900000001")
    ward = env.person(
        tenant, name="小明", phone="13900000002", guardian_account_id=guardian.account_id
    )
    started = _start_id_phone(
        env, ward.account_id, id_number=child_id, name="小明", phone="13900000002"
    )
    assert started.status == V.VERIFICATION_STATUS_PENDING


def test_bank_card_four_elements_verify_and_mismatch_fails(env: IdentityEnv) -> None:
    account = env.person(env.tenant())

    def start() -> identity_pb2.StartRealNameVerificationResponse:
        return env.stub.StartRealNameVerification(
            V.StartRealNameVerificationRequest(
                account_id=account.account_id,
                bank_card=V.BankCardInput(
                    name="张三明", id_number=ID, card_number="6222021234567890123", phone=PHONE
                ),
            )
        )

    env.providers.behaviour.bank_card = "mismatch"
    assert start().failure_reason == V.VERIFICATION_FAILURE_REASON_ELEMENTS_MISMATCH
    env.providers.behaviour.bank_card = "match"
    started = start()
    path, body = env.providers.behaviour.requests[-1]
    assert path == "/v1/bank-card/verify" and body["card_number"] == "6222021234567890123"
    done = _complete(env, started.verification_id, env.notify.last_code())
    assert done.status == V.VERIFICATION_STATUS_VERIFIED
    assert done.account.verification.method == V.VERIFICATION_METHOD_BANK_CARD_FOUR_ELEMENTS


def test_face_match_verifies_and_failed_liveness_is_reported(env: IdentityEnv) -> None:
    account = env.person(env.tenant())

    def start() -> identity_pb2.StartRealNameVerificationResponse:
        return env.stub.StartRealNameVerification(
            V.StartRealNameVerificationRequest(
                account_id=account.account_id,
                face_match=V.FaceMatchInput(
                    name="张三明", id_number=ID, return_url="https://app.example/back"
                ),
            )
        )

    def complete(
        verification_id: str, token: str
    ) -> identity_pb2.CompleteRealNameVerificationResponse:
        return env.stub.CompleteRealNameVerification(
            V.CompleteRealNameVerificationRequest(
                verification_id=verification_id, face_match=V.FaceMatchProof(session_token=token)
            )
        )

    started = start()
    token = started.face_session_url.rsplit("/", 1)[-1]
    env.providers.behaviour.face_liveness = False
    failed = complete(started.verification_id, token)
    assert failed.failure_reason == V.VERIFICATION_FAILURE_REASON_LIVENESS_FAILED
    env.providers.behaviour.face_liveness = True
    with pytest.raises(grpc.RpcError) as info:
        complete(started.verification_id, "fs-someone-else")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    done = complete(started.verification_id, token)
    assert done.status == V.VERIFICATION_STATUS_VERIFIED
    assert env.notify.requests == []


def _enterprise_setup(env: IdentityEnv, valid_days: float = 30) -> tuple[str, str, str]:
    tenant = env.tenant()
    operator = env.verified_person(tenant)
    enterprise = env.stub.RegisterAccount(
        V.RegisterAccountRequest(
            tenant_id=tenant,
            enterprise=V.EnterpriseRegistration(
                enterprise_name="杭州示例科技有限公司", credit_code=make_credit_code()
            ),
        )
    ).account
    until = Timestamp()
    until.FromDatetime(env.clock.now + timedelta(days=valid_days))
    authorization = env.stub.GrantOperatorAuthorization(
        V.GrantOperatorAuthorizationRequest(
            enterprise_account_id=enterprise.account_id,
            operator_account_id=operator.account_id,
            rights=[V.OPERATOR_RIGHT_MANAGE_ACCOUNT, V.OPERATOR_RIGHT_SIGN],
            valid_until=until,
        )
    ).authorization
    return enterprise.account_id, operator.account_id, authorization.authorization_id


def _start_enterprise(
    env: IdentityEnv, enterprise: str, operator: str, authorization: str, code: str = ""
) -> identity_pb2.StartRealNameVerificationResponse:
    return env.stub.StartRealNameVerification(
        V.StartRealNameVerificationRequest(
            account_id=enterprise,
            enterprise=V.EnterpriseInput(
                enterprise_name="杭州示例科技有限公司",
                credit_code=code or make_credit_code(),
                legal_representative_name="王法人",
                operator_account_id=operator,
                operator_authorization_id=authorization,
            ),
        )
    )


def test_enterprise_verifies_with_registry_and_transfer_amount(env: IdentityEnv) -> None:
    enterprise, operator, authorization = _enterprise_setup(env)
    started = _start_enterprise(env, enterprise, operator, authorization)
    assert started.status == V.VERIFICATION_STATUS_PENDING
    amount = env.providers.behaviour.transfers[-1]
    wrong = env.stub.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(
            verification_id=started.verification_id,
            enterprise=V.EnterpriseProof(transfer_amount_fen=amount % 99 + 1),
        )
    )
    assert wrong.failure_reason == V.VERIFICATION_FAILURE_REASON_CODE_MISMATCH
    done = env.stub.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(
            verification_id=started.verification_id,
            enterprise=V.EnterpriseProof(transfer_amount_fen=amount),
        )
    )
    assert done.status == V.VERIFICATION_STATUS_VERIFIED
    assert done.account.enterprise.enterprise_name == "杭州示例科技有限公司"
    assert done.account.enterprise.legal_representative_name == "王法人"
    assert done.account.state == V.ACCOUNT_STATE_VERIFIED
    assert len(done.account.subject_identifier_hash) == 32


def test_enterprise_with_a_bad_credit_code_fails_locally(env: IdentityEnv) -> None:
    enterprise, operator, authorization = _enterprise_setup(env)
    good = make_credit_code()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    started = _start_enterprise(env, enterprise, operator, authorization, code=bad)
    assert started.failure_reason == V.VERIFICATION_FAILURE_REASON_INVALID_CREDIT_CODE
    assert env.providers.behaviour.transfers == []


def test_enterprise_operator_authorisation_expiry_fails_verification(env: IdentityEnv) -> None:
    enterprise, operator, authorization = _enterprise_setup(env, valid_days=1)
    env.clock.advance(days=2)
    started = _start_enterprise(env, enterprise, operator, authorization)
    assert started.failure_reason == V.VERIFICATION_FAILURE_REASON_OPERATOR_NOT_AUTHORIZED
    assert env.providers.behaviour.transfers == []


def test_method_must_fit_the_account_type(env: IdentityEnv) -> None:
    enterprise, _, _ = _enterprise_setup(env)
    with pytest.raises(grpc.RpcError) as info:
        _start_id_phone(env, enterprise)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_verification_expires_after_its_validity(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    env.clock.advance(days=731)
    got = env.stub.GetAccount(V.GetAccountRequest(account_id=account.account_id)).account
    assert got.state == V.ACCOUNT_STATE_REGISTERED
    assert got.verification.status == V.VERIFICATION_STATUS_EXPIRED


def test_notify_outage_is_unavailable_and_leaves_nothing_usable(env: IdentityEnv) -> None:
    account = env.person(env.tenant())
    env.notify.fail = True
    with pytest.raises(grpc.RpcError) as info:
        _start_id_phone(env, account.account_id)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
