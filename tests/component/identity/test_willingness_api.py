"""Willingness checks and signing grants over gRPC; automatic signing authorisations."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.grants import verify_grant
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.identity.domain import Policy
from signet.identity.v1 import identity_pb2
from tests.fixtures.identity import IdentityEnv, identity_env, make_credit_code

V = identity_pb2
SHA256 = common_pb2.HASH_ALGORITHM_SHA256


def _digest(text: str = "contract") -> common_pb2.Digest:
    return common_pb2.Digest(algorithm=SHA256, value=hashlib.sha256(text.encode()).digest())


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), str(info.value.details())


def _start(
    env: IdentityEnv,
    account_id: str,
    *digests: common_pb2.Digest,
    key_id: str = "k-1",
    operator_account_id: str = "",
    transaction_id: str = "",
    method: int = V.WILLINGNESS_METHOD_SMS_CODE,
) -> identity_pb2.StartWillingnessResponse:
    return env.stub.StartWillingness(
        V.StartWillingnessRequest(
            account_id=account_id,
            key_id=key_id,
            digests=list(digests) or [_digest()],
            method=method,  # type: ignore[arg-type]
            operator_account_id=operator_account_id,
            transaction_id=transaction_id,
        )
    )


def _confirm(
    env: IdentityEnv, willingness_id: str, code: str
) -> identity_pb2.ConfirmWillingnessResponse:
    return env.stub.ConfirmWillingness(
        V.ConfirmWillingnessRequest(willingness_id=willingness_id, one_time_code=code)
    )


def _wrong(code: str) -> str:
    return "".join(str((int(c) + 1) % 10) for c in code)


def _keys(env: IdentityEnv) -> dict[str, object]:
    reply = env.stub.GetGrantVerificationKeys(V.GetGrantVerificationKeysRequest())
    return {k.kid: load_der_public_key(k.spki_der) for k in reply.keys}


def test_confirmed_code_yields_a_grant_bound_to_account_key_and_digests(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    d1, d2 = _digest("a"), _digest("b")
    started = _start(env, account.account_id, d1, d2, transaction_id="tx-1")
    assert started.masked_code_destination == "138****5678"
    assert started.attempts_remaining == 5
    sent = env.notify.requests[-1]
    assert sent.template_id == "willingness-code" and list(sent.sensitive_params) == ["code"]
    code = env.notify.last_code()
    assert len(code) == 6 and code.isdigit()
    reply = _confirm(env, started.willingness_id, code)
    assert reply.status == V.WILLINGNESS_STATUS_CONFIRMED
    grant = reply.grant
    claims = verify_grant(grant.token, _keys(env), datetime.now(UTC))  # type: ignore[arg-type]
    assert claims.account == account.account_id
    assert claims.tenant == account.tenant_id
    assert claims.key_id == "k-1"
    assert claims.digests == (d1.value, d2.value)
    assert claims.grant_id == grant.grant_id
    assert claims.expires_at - claims.issued_at == timedelta(minutes=5)
    confirmed = env.events(events_pb2.WillingnessConfirmed)[-1]
    assert confirmed.grant_id == grant.grant_id and list(confirmed.digests) == [d1, d2]
    envelope = [e for e in env.envelopes() if e.type.endswith("WillingnessConfirmed")][-1]
    assert envelope.transaction_id == "tx-1"


def test_the_jwks_document_publishes_the_grant_key(env: IdentityEnv) -> None:
    env.service.ensure_grant_key()
    reply = env.stub.GetGrantVerificationKeys(V.GetGrantVerificationKeysRequest())
    jwks = json.loads(reply.jwks_json)
    assert [k["kid"] for k in jwks["keys"]] == [k.kid for k in reply.keys]
    assert jwks["keys"][0]["kty"] == "EC" and jwks["keys"][0]["crv"] == "P-256"
    assert len(reply.keys) == 1 and reply.keys[0].alg == "ES256"


def test_wrong_code_is_permission_denied_and_the_fifth_locks(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    started = _start(env, account.account_id)
    right = env.notify.last_code()
    for left in (4, 3, 2, 1):
        code, message = _code(lambda: _confirm(env, started.willingness_id, _wrong(right)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert f"{left} attempts left" in message
    code, message = _code(lambda: _confirm(env, started.willingness_id, _wrong(right)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "locked" in message
    code, _ = _code(lambda: _confirm(env, started.willingness_id, right))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    failed = env.events(events_pb2.WillingnessFailed)
    assert [f.attempts_remaining for f in failed] == [4, 3, 2, 1, 0]
    assert failed[-1].locked


def test_expired_code_is_permission_denied(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    started = _start(env, account.account_id)
    env.clock.advance(minutes=5, seconds=1)
    code, message = _code(lambda: _confirm(env, started.willingness_id, env.notify.last_code()))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "expired" in message


def test_a_used_code_is_permission_denied(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    started = _start(env, account.account_id)
    code = env.notify.last_code()
    _confirm(env, started.willingness_id, code)
    status, message = _code(lambda: _confirm(env, started.willingness_id, code))
    assert status == grpc.StatusCode.PERMISSION_DENIED and "already used" in message


def test_unverified_account_cannot_start_a_check(env: IdentityEnv) -> None:
    account = env.person(env.tenant())
    code, message = _code(lambda: _start(env, account.account_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "verified" in message


def test_bad_digests_are_invalid_argument(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    short = common_pb2.Digest(algorithm=SHA256, value=b"\x01" * 31)
    code, message = _code(lambda: _start(env, account.account_id, short))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "32 bytes" in message
    many = [_digest(str(i)) for i in range(1001)]
    code, message = _code(lambda: _start(env, account.account_id, *many))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "1000" in message


def test_rate_limit_per_account_then_per_phone(tmp_path: Path) -> None:
    policy = Policy(max_checks_per_account=3, max_codes_per_destination=5)
    with identity_env(tmp_path, policy=policy) as env:
        tenant = env.tenant()
        # Two accounts (say in two apps of the tenant) share one phone number.
        first = env.verified_person(tenant, phone="13812345678")
        second = env.verified_person(tenant, phone="13812345678")
        # Each verification already sent one code to the phone: 2 of 5.
        for _ in range(3):
            _start(env, first.account_id)
        code, message = _code(lambda: _start(env, first.account_id))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "account" in message
        # 5 of 5 codes have reached the phone: the other account is stopped by the phone limit.
        code, message = _code(lambda: _start(env, second.account_id))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "destination" in message
        env.clock.advance(minutes=11)
        _start(env, second.account_id)


def _enterprise(env: IdentityEnv, operator_days: float = 1) -> tuple[str, str]:
    tenant = env.tenant()
    operator = env.verified_person(tenant, phone="13900000009")
    enterprise = env.stub.RegisterAccount(
        V.RegisterAccountRequest(
            tenant_id=tenant,
            enterprise=V.EnterpriseRegistration(
                enterprise_name="杭州示例科技有限公司", credit_code=make_credit_code()
            ),
        )
    ).account
    until = Timestamp()
    until.FromDatetime(env.clock.now + timedelta(days=30))
    auth = env.stub.GrantOperatorAuthorization(
        V.GrantOperatorAuthorizationRequest(
            enterprise_account_id=enterprise.account_id,
            operator_account_id=operator.account_id,
            rights=[V.OPERATOR_RIGHT_MANAGE_ACCOUNT],
            valid_until=until,
        )
    ).authorization
    started = env.stub.StartRealNameVerification(
        V.StartRealNameVerificationRequest(
            account_id=enterprise.account_id,
            enterprise=V.EnterpriseInput(
                enterprise_name="杭州示例科技有限公司",
                credit_code=make_credit_code(),
                legal_representative_name="王法人",
                operator_account_id=operator.account_id,
                operator_authorization_id=auth.authorization_id,
            ),
        )
    )
    env.stub.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(
            verification_id=started.verification_id,
            enterprise=V.EnterpriseProof(transfer_amount_fen=env.providers.behaviour.transfers[-1]),
        )
    )
    sign_until = Timestamp()
    sign_until.FromDatetime(env.clock.now + timedelta(days=operator_days))
    env.stub.GrantOperatorAuthorization(
        V.GrantOperatorAuthorizationRequest(
            enterprise_account_id=enterprise.account_id,
            operator_account_id=operator.account_id,
            rights=[V.OPERATOR_RIGHT_SIGN, V.OPERATOR_RIGHT_MANAGE_AUTO_SIGN],
            valid_until=sign_until,
        )
    )
    return enterprise.account_id, operator.account_id


def test_enterprise_signing_needs_an_operator_with_a_current_sign_right(env: IdentityEnv) -> None:
    enterprise, operator = _enterprise(env, operator_days=1)
    code, _ = _code(lambda: _start(env, enterprise))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    started = _start(env, enterprise, operator_account_id=operator)
    assert env.notify.requests[-1].recipient.phone_number == "13900000009"
    grant = _confirm(env, started.willingness_id, env.notify.last_code()).grant
    assert grant.account_id == enterprise
    env.clock.advance(days=2)
    code, message = _code(lambda: _start(env, enterprise, operator_account_id=operator))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "expired" in message


def _confirmation(
    env: IdentityEnv,
    account_id: str,
    text: common_pb2.Digest,
    key_id: str = "k-1",
    operator_account_id: str = "",
) -> str:
    started = _start(env, account_id, text, key_id=key_id, operator_account_id=operator_account_id)
    return _confirm(env, started.willingness_id, env.notify.last_code()).grant.token


def _create_auto(
    env: IdentityEnv,
    account_id: str,
    grant: str,
    text: common_pb2.Digest,
    max_uses: int = 2,
    operator_account_id: str = "",
) -> identity_pb2.AutoSignAuthorization:
    until = Timestamp()
    until.FromDatetime(env.clock.now + timedelta(days=30))
    return env.stub.CreateAutoSignAuthorization(
        V.CreateAutoSignAuthorizationRequest(
            account_id=account_id,
            key_id="k-1",
            business_scope="loan-contracts",
            valid_until=until,
            max_uses=max_uses,
            confirmation_grant=grant,
            authorization_text_digest=text,
            operator_account_id=operator_account_id,
        )
    ).authorization


def test_auto_sign_issues_grants_until_its_maximum(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    text = _digest("I authorise automatic signing of loan contracts")
    auto = _create_auto(env, account.account_id, _confirmation(env, account.account_id, text), text)
    assert auto.state == V.AUTHORIZATION_STATE_ACTIVE

    def issue(doc: str, request_id: str = "") -> identity_pb2.IssueAutoSignGrantResponse:
        return env.stub.IssueAutoSignGrant(
            V.IssueAutoSignGrantRequest(
                authorization_id=auto.authorization_id,
                digests=[_digest(doc)],
                request_id=request_id,
            )
        )

    first = issue("c1", "req-1")
    assert first.uses_remaining == 1
    claims = verify_grant(first.grant.token, _keys(env), datetime.now(UTC))  # type: ignore[arg-type]
    assert claims.auto_sign_authorization == auto.authorization_id
    assert issue("c1", "req-1").grant.grant_id == first.grant.grant_id  # retry: same grant
    second = issue("c2")
    assert second.uses_remaining == 0
    code, message = _code(lambda: issue("c3"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "exhausted" in message
    issued = env.events(events_pb2.AutoSignGrantIssued)
    assert [e.uses for e in issued] == [1, 2]


def test_auto_sign_confirmation_grant_is_single_use_and_bound(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    text = _digest("authorisation text")
    grant = _confirmation(env, account.account_id, text)
    other_text = _digest("another text")
    code, _ = _code(lambda: _create_auto(env, account.account_id, grant, other_text))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    _create_auto(env, account.account_id, grant, text)
    code, message = _code(lambda: _create_auto(env, account.account_id, grant, text))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "already been used" in message
    code, _ = _code(lambda: _create_auto(env, account.account_id, "not.a.grant", text))
    assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


def test_revoked_or_expired_auto_sign_issues_nothing(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    text = _digest("authorisation text")
    auto = _create_auto(env, account.account_id, _confirmation(env, account.account_id, text), text)
    text2 = _digest("authorisation text 2")
    auto2 = _create_auto(
        env, account.account_id, _confirmation(env, account.account_id, text2), text2
    )
    env.stub.RevokeAutoSignAuthorization(
        V.RevokeAutoSignAuthorizationRequest(authorization_id=auto.authorization_id)
    )

    def issue(auth_id: str) -> object:
        return env.stub.IssueAutoSignGrant(
            V.IssueAutoSignGrantRequest(authorization_id=auth_id, digests=[_digest("x")])
        )

    code, message = _code(lambda: issue(auto.authorization_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "revoked" in message
    env.clock.advance(days=31)
    code, message = _code(lambda: issue(auto2.authorization_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "expired" in message
    listed = env.stub.ListAutoSignAuthorizations(
        V.ListAutoSignAuthorizationsRequest(account_id=account.account_id, include_inactive=True)
    ).authorizations
    assert sorted(a.state for a in listed) == sorted(
        [V.AUTHORIZATION_STATE_REVOKED, V.AUTHORIZATION_STATE_EXPIRED]
    )


def test_enterprise_auto_sign_needs_the_manage_right(env: IdentityEnv) -> None:
    enterprise, operator = _enterprise(env, operator_days=5)
    text = _digest("seal text")
    grant = _confirmation(env, enterprise, text, operator_account_id=operator)
    code, _ = _code(lambda: _create_auto(env, enterprise, grant, text))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    auto = _create_auto(env, enterprise, grant, text, operator_account_id=operator)
    assert auto.account_id == enterprise


def test_email_code_goes_to_the_account_email(env: IdentityEnv) -> None:
    tenant = env.tenant()
    account = env.verified_person(tenant)
    env.stub.UpdateAccount(
        V.UpdateAccountRequest(
            account_id=account.account_id,
            email="zhang@example.com",
            update_mask=FieldMask(paths=["email"]),
        )
    )
    started = _start(env, account.account_id, method=V.WILLINGNESS_METHOD_EMAIL_CODE)
    assert started.masked_code_destination == "z****@example.com"
    sent = env.notify.requests[-1]
    assert sent.recipient.email_address == "zhang@example.com"
    assert _confirm(env, started.willingness_id, env.notify.last_code()).grant.token


def test_face_match_willingness_confirms_on_a_matching_face_only(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant())
    started = _start(env, account.account_id, method=V.WILLINGNESS_METHOD_FACE_MATCH)
    assert started.face_session_url.startswith("https://face.example/s/")
    token = started.face_session_url.rsplit("/", 1)[-1]

    def confirm() -> identity_pb2.ConfirmWillingnessResponse:
        return env.stub.ConfirmWillingness(
            V.ConfirmWillingnessRequest(
                willingness_id=started.willingness_id,
                face_match=V.FaceMatchProof(session_token=token),
            )
        )

    env.providers.behaviour.face_match = False
    code, message = _code(confirm)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "face match failed" in message
    env.providers.behaviour.face_match = True
    assert confirm().status == V.WILLINGNESS_STATUS_CONFIRMED
