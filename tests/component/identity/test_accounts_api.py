"""Tenants, accounts, operators and API credentials over gRPC, with every error status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.auth import StaticTokenAuthenticator, hash_token
from signet.common.credentials import ChainAuthenticator
from signet.events.v1 import events_pb2
from signet.identity.server import credential_authenticator
from signet.identity.v1 import identity_pb2
from tests.fixtures.identity import IdentityEnv, identity_env, make_credit_code


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), str(info.value.details())


def _ts(env: IdentityEnv, **delta: float) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(env.clock.now + timedelta(**delta))
    return ts


def test_registered_person_shows_name_and_masked_contacts_only(env: IdentityEnv) -> None:
    tenant = env.tenant()
    account = env.person(tenant, email="zhang.san@example.com")
    assert account.state == identity_pb2.ACCOUNT_STATE_REGISTERED
    assert account.type == identity_pb2.ACCOUNT_TYPE_PERSON
    assert account.person.name == "张三明"
    assert account.person.masked_phone == "138****5678"
    assert account.person.masked_email == "z********@example.com"
    got = env.stub.GetAccount(identity_pb2.GetAccountRequest(account_id=account.account_id))
    assert got.account == account
    registered = env.events(events_pb2.AccountRegistered)
    assert registered[-1].masked_phone == "138****5678"
    assert registered[-1].masked_display_name == "**明"


def test_register_is_idempotent_on_request_id(env: IdentityEnv) -> None:
    tenant = env.tenant()
    request = identity_pb2.RegisterAccountRequest(
        tenant_id=tenant, person=identity_pb2.PersonRegistration(name="李四"), request_id="r-1"
    )
    first = env.stub.RegisterAccount(request).account
    again = env.stub.RegisterAccount(request).account
    assert first.account_id == again.account_id
    assert len(env.events(events_pb2.AccountRegistered)) == 1


def test_bad_registration_input_is_invalid_argument(env: IdentityEnv) -> None:
    tenant = env.tenant()
    code, message = _code(lambda: env.person(tenant, phone="12345"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "phone" in message
    code, message = _code(
        lambda: env.stub.RegisterAccount(identity_pb2.RegisterAccountRequest(tenant_id=tenant))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    bad_code = make_credit_code()[:-1] + ("0" if make_credit_code()[-1] != "0" else "1")
    code, message = _code(
        lambda: env.stub.RegisterAccount(
            identity_pb2.RegisterAccountRequest(
                tenant_id=tenant,
                enterprise=identity_pb2.EnterpriseRegistration(
                    enterprise_name="杭州示例科技有限公司", credit_code=bad_code
                ),
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "GB 32100" in message


def test_unknown_tenant_and_account_are_not_found(env: IdentityEnv) -> None:
    code, _ = _code(lambda: env.person("t-nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(lambda: env.stub.GetAccount(identity_pb2.GetAccountRequest(account_id="a-x")))
    assert code == grpc.StatusCode.NOT_FOUND


def test_changing_the_name_of_a_verified_person_requires_reverification(env: IdentityEnv) -> None:
    tenant = env.tenant()
    account = env.verified_person(tenant)
    assert account.state == identity_pb2.ACCOUNT_STATE_VERIFIED
    contact = env.stub.UpdateAccount(
        identity_pb2.UpdateAccountRequest(
            account_id=account.account_id,
            phone="13900001111",
            update_mask=FieldMask(paths=["phone"]),
        )
    )
    assert not contact.reverification_required
    assert contact.account.state == identity_pb2.ACCOUNT_STATE_VERIFIED
    assert contact.account.person.masked_phone == "139****1111"
    renamed = env.stub.UpdateAccount(
        identity_pb2.UpdateAccountRequest(
            account_id=account.account_id, name="张三", update_mask=FieldMask(paths=["name"])
        )
    )
    assert renamed.reverification_required
    assert renamed.account.state == identity_pb2.ACCOUNT_STATE_REGISTERED
    assert renamed.account.verification.status == identity_pb2.VERIFICATION_STATUS_EXPIRED
    updated = env.events(events_pb2.AccountUpdated)
    assert [list(u.changed_fields) for u in updated] == [["phone"], ["name"]]
    code, message = _code(
        lambda: env.stub.UpdateAccount(
            identity_pb2.UpdateAccountRequest(
                account_id=account.account_id, update_mask=FieldMask(paths=["id_number"])
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "update_mask" in message


def test_operator_authorisation_needs_an_end_and_lists_as_expired_after_it(
    env: IdentityEnv,
) -> None:
    tenant = env.tenant()
    operator = env.person(tenant)
    enterprise = env.stub.RegisterAccount(
        identity_pb2.RegisterAccountRequest(
            tenant_id=tenant,
            enterprise=identity_pb2.EnterpriseRegistration(
                enterprise_name="杭州示例科技有限公司", credit_code=make_credit_code()
            ),
        )
    ).account
    code, message = _code(
        lambda: env.stub.GrantOperatorAuthorization(
            identity_pb2.GrantOperatorAuthorizationRequest(
                enterprise_account_id=enterprise.account_id,
                operator_account_id=operator.account_id,
                rights=[identity_pb2.OPERATOR_RIGHT_SIGN],
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "valid_until" in message
    granted = env.stub.GrantOperatorAuthorization(
        identity_pb2.GrantOperatorAuthorizationRequest(
            enterprise_account_id=enterprise.account_id,
            operator_account_id=operator.account_id,
            rights=[identity_pb2.OPERATOR_RIGHT_SIGN],
            valid_until=_ts(env, days=1),
        )
    ).authorization
    assert granted.state == identity_pb2.AUTHORIZATION_STATE_ACTIVE
    env.clock.advance(days=2)
    listed = env.stub.ListOperatorAuthorizations(
        identity_pb2.ListOperatorAuthorizationsRequest(
            enterprise_account_id=enterprise.account_id, include_inactive=True
        )
    ).authorizations
    assert [a.state for a in listed] == [identity_pb2.AUTHORIZATION_STATE_EXPIRED]
    active = env.stub.ListOperatorAuthorizations(
        identity_pb2.ListOperatorAuthorizationsRequest(enterprise_account_id=enterprise.account_id)
    ).authorizations
    assert list(active) == []


def test_api_credential_authenticates_until_revoked(env: IdentityEnv) -> None:
    tenant = env.tenant()
    created = env.stub.CreateApiCredential(
        identity_pb2.CreateApiCredentialRequest(
            tenant_id=tenant, display_name="crm", scopes=["identity.write", "sign"]
        )
    )
    token = created.token
    assert token.startswith(created.credential.credential_id + ".")
    who = env.stub.AuthenticateApiCredential(
        identity_pb2.AuthenticateApiCredentialRequest(token=token)
    )
    assert who.tenant_id == tenant and list(who.scopes) == ["identity.write", "sign"]
    code, _ = _code(
        lambda: env.stub.AuthenticateApiCredential(
            identity_pb2.AuthenticateApiCredentialRequest(token=token + "x")
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    env.stub.RevokeApiCredential(
        identity_pb2.RevokeApiCredentialRequest(credential_id=created.credential.credential_id)
    )
    code, message = _code(
        lambda: env.stub.AuthenticateApiCredential(
            identity_pb2.AuthenticateApiCredentialRequest(token=token)
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in message


def test_rotated_secret_keeps_working_for_the_grace_period_only(env: IdentityEnv) -> None:
    tenant = env.tenant()
    created = env.stub.CreateApiCredential(
        identity_pb2.CreateApiCredentialRequest(
            tenant_id=tenant, display_name="crm", scopes=["sign"]
        )
    )
    rotated = env.stub.RotateApiCredential(
        identity_pb2.RotateApiCredentialRequest(
            credential_id=created.credential.credential_id, grace_period=Duration(seconds=3600)
        )
    )
    assert rotated.token != created.token

    def auth(token: str) -> identity_pb2.AuthenticateApiCredentialResponse:
        return env.stub.AuthenticateApiCredential(
            identity_pb2.AuthenticateApiCredentialRequest(token=token)
        )

    auth(created.token)
    auth(rotated.token)
    env.clock.advance(hours=2)
    auth(rotated.token)
    code, _ = _code(lambda: auth(created.token))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_expired_credential_is_unauthenticated(env: IdentityEnv) -> None:
    tenant = env.tenant()
    created = env.stub.CreateApiCredential(
        identity_pb2.CreateApiCredentialRequest(
            tenant_id=tenant, display_name="crm", scopes=["sign"], expires_at=_ts(env, hours=1)
        )
    )
    env.clock.advance(hours=2)
    code, message = _code(
        lambda: env.stub.AuthenticateApiCredential(
            identity_pb2.AuthenticateApiCredentialRequest(token=created.token)
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and "expired" in message


def test_tenant_credentials_reach_only_their_own_tenant(tmp_path: Path) -> None:
    service_token = "svc-token-for-tests"
    holder: dict[str, object] = {}

    class Late:
        """The credential authenticator needs the service, built inside identity_env."""

        def authenticate(self, method: str, metadata: object, auth_context: object) -> object:
            return holder["auth"].authenticate(method, metadata, auth_context)  # type: ignore[attr-defined]

    chain = ChainAuthenticator(
        [StaticTokenAuthenticator({"notify": hash_token(service_token)}), Late()]  # type: ignore[list-item]
    )
    with identity_env(tmp_path, authenticator=chain, enforce_callers=True) as env:
        holder["auth"] = credential_authenticator(env.service)
        platform = env.stub_with(service_token)
        mine = platform.CreateTenant(identity_pb2.CreateTenantRequest(name="A")).tenant.tenant_id
        other = platform.CreateTenant(identity_pb2.CreateTenantRequest(name="B")).tenant.tenant_id
        token = platform.CreateApiCredential(
            identity_pb2.CreateApiCredentialRequest(
                tenant_id=mine, display_name="x", scopes=["sign"]
            )
        ).token
        tenant_stub = env.stub_with(token)
        own = tenant_stub.RegisterAccount(
            identity_pb2.RegisterAccountRequest(
                tenant_id=mine,
                person=identity_pb2.PersonRegistration(name="王五", phone="13700001234"),
            )
        ).account
        foreign = platform.RegisterAccount(
            identity_pb2.RegisterAccountRequest(
                tenant_id=other, person=identity_pb2.PersonRegistration(name="赵六")
            )
        ).account
        assert (
            tenant_stub.GetAccount(
                identity_pb2.GetAccountRequest(account_id=own.account_id)
            ).account.person.name
            == "王五"
        )
        code, _ = _code(
            lambda: tenant_stub.GetAccount(
                identity_pb2.GetAccountRequest(account_id=foreign.account_id)
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND
        code, _ = _code(
            lambda: tenant_stub.CreateTenant(identity_pb2.CreateTenantRequest(name="C"))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, _ = _code(
            lambda: env.stub_with(None).GetAccount(
                identity_pb2.GetAccountRequest(account_id=own.account_id)
            )
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # Contact details in clear: the notify service yes, a tenant no.
        details = platform.GetContactDetails(
            identity_pb2.GetContactDetailsRequest(account_id=own.account_id)
        )
        assert details.phone == "13700001234"
        code, _ = _code(
            lambda: tenant_stub.GetContactDetails(
                identity_pb2.GetContactDetailsRequest(account_id=own.account_id)
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
