"""Tenants, accounts, operators acting for enterprises, and tenants' API credentials."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from signet.common.auth import Principal
from signet.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from signet.common.masking import mask_email, mask_id_number, mask_middle, mask_name, mask_phone
from signet.identity import checks, events
from signet.identity.base import (
    NOTIFY_SERVICE,
    ServiceBase,
    _credential_view,
    _digests_json,
    _email,
    _hash_secret,
    _new_id,
    _page_size,
    _phone,
    _request_id,
    _require_id,
    _scope,
    _text,
)
from signet.identity.domain import (
    AccountView,
    AuthenticatedCredential,
    ContactDetails,
    CredentialView,
    Digest,
    EnterpriseData,
    OperatorAuthorizationView,
    PersonData,
)
from signet.identity.models import (
    Account,
    AccountState,
    AccountType,
    ApiCredentialRecord,
    AuthorizationState,
    CredentialSecret,
    CredentialState,
    DataCategory,
    OperatorAuthorizationRecord,
    OperatorRight,
    Tenant,
)
from signet.identity.repository import (
    AccountRepository,
    CredentialRepository,
    OperatorAuthorizationRepository,
    TenantRepository,
)


class AccountRules(ServiceBase):
    """Tenants, accounts, operator authorisations and API credentials."""

    # ---- tenants ---------------------------------------------------------------------

    def create_tenant(
        self, caller: Principal, name: str, data_region: str, request_id: str
    ) -> Tenant:
        """Create a tenant; a retry with the same request id returns the first one."""
        self._check_platform(caller)
        name = _text(name, "name", required=True)
        region = _text(data_region or "cn", "data_region", limit=32)
        rid = _request_id(request_id)
        if rid is not None:
            with self._db.session() as s:
                existing = TenantRepository(s).by_request_id(rid)
                if existing is not None:
                    return existing
        tenant = Tenant(
            id=_new_id("t"), name=name, data_region=region, request_id=rid, created_at=self._clock()
        )
        with self._db.session() as s:
            s.add(tenant)
            s.flush()
            events.emit(
                s, events.tenant_created(tenant.id, name), subject=tenant.id, tenant=tenant.id
            )
        self._commit()
        return tenant

    def get_tenant(self, caller: Principal, tenant_id: str) -> Tenant:
        """A tenant the caller may see."""
        _require_id(tenant_id, "tenant_id")
        with self._db.session() as s:
            tenant = s.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound("tenant not found")
            try:
                self._check_tenant(caller, tenant_id)
            except NotFound:
                raise NotFound("tenant not found") from None
            return tenant

    # ---- accounts --------------------------------------------------------------------

    def register_account(
        self,
        caller: Principal,
        tenant_id: str,
        person: PersonData | None,
        enterprise: EnterpriseData | None,
        locale: str,
        request_id: str,
    ) -> AccountView:
        """Register a person or enterprise (REGISTERED); idempotent on ``request_id``."""
        _require_id(tenant_id, "tenant_id")
        self._check_tenant(caller, tenant_id)
        if (person is None) == (enterprise is None):
            raise InvalidArgument("exactly one of person or enterprise is required")
        rid = _request_id(request_id)
        locale = _text(locale, "locale", limit=35)
        now = self._clock()
        with self._db.session() as s:
            if s.get(Tenant, tenant_id) is None:
                raise NotFound("tenant not found")
            if rid is not None:
                existing = AccountRepository(s).by_request_id(tenant_id, rid)
                if existing is not None:
                    return self._view(s, existing)
            account_id = _new_id("acct")
            values: dict[str, tuple[str, DataCategory]] = {}
            if person is not None:
                name = _text(person.name, "person.name", required=True)
                values["name"] = (name, DataCategory.IDENTITY)
                kind = AccountType.PERSON
                display = mask_name(name)
                phone_raw, email_raw = person.phone, person.email
                guardian = person.guardian_account_id or None
                if guardian is not None:
                    g = s.get(Account, guardian)
                    if g is None or g.tenant_id != tenant_id or g.type is not AccountType.PERSON:
                        raise InvalidArgument("guardian_account_id is not a person of this tenant")
            else:
                assert enterprise is not None
                name = _text(
                    enterprise.enterprise_name, "enterprise.enterprise_name", required=True
                )
                values["enterprise_name"] = (name, DataCategory.IDENTITY)
                legal = _text(enterprise.legal_representative_name, "legal_representative_name")
                if legal:
                    values["legal_representative_name"] = (legal, DataCategory.IDENTITY)
                kind = AccountType.ENTERPRISE
                display = mask_middle(name, 2, 4)
                phone_raw, email_raw = enterprise.contact_phone, enterprise.contact_email
                guardian = None
                if enterprise.credit_code:
                    code = checks.parse_credit_code(enterprise.credit_code)
                    if code is None:
                        raise InvalidArgument(
                            "credit_code is not a valid unified social credit code (GB 32100)"
                        )
                    values["credit_code"] = (code, DataCategory.IDENTITY)
            account = Account(
                id=account_id,
                tenant_id=tenant_id,
                request_id=rid,
                type=kind,
                state=AccountState.REGISTERED,
                display_name_masked=display,
                locale=locale,
                guardian_account_id=guardian,
                created_at=now,
                updated_at=now,
            )
            if phone_raw:
                phone = _phone(phone_raw)
                values["phone"] = (phone, DataCategory.CONTACT)
                account.phone_lookup = self._vault.lookup("phone", phone)
                account.masked_phone = mask_phone(phone)
            if email_raw:
                email = _email(email_raw)
                values["email"] = (email, DataCategory.CONTACT)
                account.email_lookup = self._vault.lookup("email", email)
                account.masked_email = mask_email(email)
            if "credit_code" in values:
                account.id_number_lookup = self._vault.lookup(
                    "credit_code", values["credit_code"][0]
                )
                account.masked_id_number = mask_id_number(values["credit_code"][0])
            s.add(account)
            s.flush()
            for field, (value, category) in values.items():
                self._vault.put(s, account_id, field, value, category)
            events.emit(
                s,
                events.account_registered(
                    account_id, kind, display, account.masked_phone, account.masked_email
                ),
                subject=account_id,
                tenant=tenant_id,
            )
            view = self._view(s, account)
        self._commit()
        return view

    def get_account(self, caller: Principal, account_id: str) -> AccountView:
        """An account with masked personal data and its verification summary."""
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            self._refresh_verification(s, account)
            return self._view(s, account)

    def get_contact_details(self, caller: Principal, account_id: str) -> ContactDetails:
        """Phone and e-mail in clear; only for the notify service."""
        if self._enforce and not (caller.kind == "service" and caller.subject == NOTIFY_SERVICE):
            raise PermissionDenied("only the notify service may read contact details")
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            data = self._vault.get_all(s, account.id)
            phone_key = "phone"
            return ContactDetails(
                account_id=account.id,
                phone=data.get(phone_key, ""),
                email=data.get("email", ""),
                locale=account.locale,
            )

    def update_account(
        self, caller: Principal, account_id: str, values: dict[str, str]
    ) -> tuple[AccountView, bool]:
        """Change contact or display data; identity data sends the account back to REGISTERED."""
        allowed = {
            "phone",
            "email",
            "locale",
            "name",
            "enterprise_name",
            "legal_representative_name",
        }
        unknown = set(values) - allowed
        if unknown:
            raise InvalidArgument(f"update_mask may name only: {', '.join(sorted(allowed))}")
        if not values:
            raise InvalidArgument("update_mask names no field")
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            changed, reverify = self._apply_changes(s, account, values)
            events.emit(
                s,
                events.account_updated(account.id, changed, reverify),
                subject=account.id,
                tenant=account.tenant_id,
            )
            view = self._view(s, account)
        self._commit()
        return view, reverify

    # ---- operators -------------------------------------------------------------------

    def grant_operator_authorization(
        self,
        caller: Principal,
        enterprise_account_id: str,
        operator_account_id: str,
        rights: Sequence[OperatorRight],
        valid_from: datetime | None,
        valid_until: datetime | None,
        document_digest: Digest | None,
        request_id: str,
    ) -> OperatorAuthorizationView:
        """Record that a person may act for an enterprise with ``rights`` until ``valid_until``."""
        if not rights:
            raise InvalidArgument("at least one right is required")
        if valid_until is None:
            raise InvalidArgument("valid_until is required; authorisations are never open-ended")
        now = self._clock()
        start = valid_from or now
        if valid_until <= start or valid_until <= now:
            raise InvalidArgument("valid_until must be in the future and after valid_from")
        rid = _request_id(request_id)
        with self._db.session() as s:
            enterprise = self._account(s, caller, enterprise_account_id)
            operator = self._account(s, caller, operator_account_id)
            if enterprise.type is not AccountType.ENTERPRISE:
                raise InvalidArgument("enterprise_account_id is not an enterprise account")
            if operator.type is not AccountType.PERSON:
                raise InvalidArgument("operator_account_id is not a person account")
            if operator.tenant_id != enterprise.tenant_id:
                raise InvalidArgument("the operator belongs to another tenant")
            if rid is not None:
                existing = OperatorAuthorizationRepository(s).by_request_id(
                    enterprise.tenant_id, rid
                )
                if existing is not None:
                    return self._operator_view(existing, now)
            record = OperatorAuthorizationRecord(
                id=_new_id("opa"),
                tenant_id=enterprise.tenant_id,
                request_id=rid,
                enterprise_account_id=enterprise.id,
                operator_account_id=operator.id,
                rights=sorted({r.value for r in rights}),
                valid_from=start,
                valid_until=valid_until,
                state=AuthorizationState.ACTIVE,
                document_digest=_digests_json([document_digest])[0] if document_digest else None,
                created_at=now,
            )
            s.add(record)
            s.flush()
            events.emit(
                s,
                events.operator_granted(
                    record.id, enterprise.id, operator.id, record.rights, start, valid_until
                ),
                subject=enterprise.id,
                tenant=enterprise.tenant_id,
            )
            view = self._operator_view(record, now)
        self._commit()
        return view

    def revoke_operator_authorization(
        self, caller: Principal, authorization_id: str
    ) -> OperatorAuthorizationView:
        """End an operator authorisation now."""
        _require_id(authorization_id, "authorization_id")
        now = self._clock()
        with self._db.session() as s:
            record = s.get(OperatorAuthorizationRecord, authorization_id)
            if record is None:
                raise NotFound("operator authorisation not found")
            self._account(s, caller, record.enterprise_account_id)
            if record.state is AuthorizationState.ACTIVE:
                record.state = AuthorizationState.REVOKED
                record.revoked_at = now
                events.emit(
                    s,
                    events.operator_revoked(
                        record.id, record.enterprise_account_id, record.operator_account_id
                    ),
                    subject=record.enterprise_account_id,
                    tenant=record.tenant_id,
                )
            view = self._operator_view(record, now)
        self._commit()
        return view

    def list_operator_authorizations(
        self,
        caller: Principal,
        enterprise_account_id: str,
        operator_account_id: str,
        include_inactive: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[OperatorAuthorizationView], str]:
        """Authorisations of an enterprise or of an operator, by id."""
        if not enterprise_account_id and not operator_account_id:
            raise InvalidArgument("enterprise_account_id or operator_account_id is required")
        size = _page_size(page_size)
        now = self._clock()
        with self._db.session() as s:
            if enterprise_account_id:
                self._account(s, caller, enterprise_account_id)
            if operator_account_id:
                self._account(s, caller, operator_account_id)
            rows = OperatorAuthorizationRepository(s).page(
                enterprise_account_id=enterprise_account_id,
                operator_account_id=operator_account_id,
                active_at=None if include_inactive else now,
                after=page_token,
                limit=size + 1,
            )
            views = [self._operator_view(r, now) for r in rows]
        more = len(views) > size
        views = views[:size]
        return views, (views[-1].authorization_id if more else "")

    # ---- API credentials -------------------------------------------------------------

    def create_api_credential(
        self,
        caller: Principal,
        tenant_id: str,
        display_name: str,
        scopes: Sequence[str],
        expires_at: datetime | None,
    ) -> tuple[CredentialView, str]:
        """A new credential and its bearer token (returned once, stored hashed)."""
        _require_id(tenant_id, "tenant_id")
        self._check_tenant(caller, tenant_id)
        name = _text(display_name, "display_name", required=True)
        clean = sorted({_scope(x) for x in scopes})
        if not clean:
            raise InvalidArgument("at least one scope is required")
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        credential_id = _new_id("cred")
        secret = secrets.token_urlsafe(32)
        with self._db.session() as s:
            if s.get(Tenant, tenant_id) is None:
                raise NotFound("tenant not found")
            record = ApiCredentialRecord(
                id=credential_id,
                tenant_id=tenant_id,
                display_name=name,
                scopes=clean,
                state=CredentialState.ACTIVE,
                created_at=now,
                expires_at=expires_at,
            )
            s.add(record)
            s.flush()
            s.add(
                CredentialSecret(
                    credential_id=credential_id, secret_hash=_hash_secret(secret), created_at=now
                )
            )
            events.emit(
                s,
                events.credential_created(credential_id, clean, expires_at),
                subject=credential_id,
                tenant=tenant_id,
            )
            view = _credential_view(record, now)
        self._commit()
        return view, f"{credential_id}.{secret}"

    def rotate_api_credential(
        self, caller: Principal, credential_id: str, grace: timedelta | None
    ) -> tuple[CredentialView, str, datetime]:
        """A new secret; the previous ones keep working for ``grace`` (default from policy)."""
        _require_id(credential_id, "credential_id")
        if grace is not None and (grace < timedelta(0) or grace > timedelta(days=30)):
            raise InvalidArgument("grace_period must be between 0 and 30 days")
        now = self._clock()
        until = now + (grace if grace is not None else self._policy.rotation_grace)
        secret = secrets.token_urlsafe(32)
        with self._db.session() as s:
            record = self._credential(s, caller, credential_id)
            if _credential_view(record, now).state != CredentialState.ACTIVE.value:
                raise FailedPrecondition("only an active credential can be rotated")
            for old in CredentialRepository(s).secrets(credential_id):
                if old.valid_until is None or old.valid_until > until:
                    old.valid_until = until
            s.add(
                CredentialSecret(
                    credential_id=credential_id, secret_hash=_hash_secret(secret), created_at=now
                )
            )
            record.rotated_at = now
            events.emit(
                s,
                events.credential_rotated(credential_id, until),
                subject=credential_id,
                tenant=record.tenant_id,
            )
            view = _credential_view(record, now)
        self._commit()
        return view, f"{credential_id}.{secret}", until

    def revoke_api_credential(self, caller: Principal, credential_id: str) -> CredentialView:
        """Revoke a credential and all its secrets at once."""
        _require_id(credential_id, "credential_id")
        now = self._clock()
        with self._db.session() as s:
            record = self._credential(s, caller, credential_id)
            if record.state is not CredentialState.REVOKED:
                record.state = CredentialState.REVOKED
                record.revoked_at = now
                events.emit(
                    s,
                    events.credential_revoked(credential_id),
                    subject=credential_id,
                    tenant=record.tenant_id,
                )
            view = _credential_view(record, now)
        self._commit()
        return view

    def _credential(self, s: Session, caller: Principal, credential_id: str) -> ApiCredentialRecord:
        record = s.get(ApiCredentialRecord, credential_id)
        if record is None:
            raise NotFound("credential not found")
        try:
            self._check_tenant(caller, record.tenant_id)
        except NotFound:
            raise NotFound("credential not found") from None
        return record

    def authenticate_api_credential(self, token: str) -> AuthenticatedCredential:
        """Who a bearer token belongs to; Unauthenticated when unknown, revoked or expired."""
        credential_id, dot, secret = token.strip().partition(".")
        if not dot or not credential_id or not secret or len(token) > 256:
            raise Unauthenticated("invalid API credential")
        now = self._clock()
        presented = _hash_secret(secret)
        with self._db.session() as s:
            record = s.get(ApiCredentialRecord, credential_id)
            if record is None:
                raise Unauthenticated("invalid API credential")
            matched = False
            for stored in CredentialRepository(s).secrets(credential_id):
                if hmac.compare_digest(stored.secret_hash, presented) and (
                    stored.valid_until is None or stored.valid_until > now
                ):
                    matched = True
            if not matched:
                raise Unauthenticated("invalid API credential")
            if record.state is CredentialState.REVOKED:
                raise Unauthenticated("the API credential was revoked")
            if record.expires_at is not None and record.expires_at <= now:
                raise Unauthenticated("the API credential has expired")
            # Recorded at most once a minute: authentication must not write on every call.
            if record.last_used_at is None or now - record.last_used_at > timedelta(minutes=1):
                record.last_used_at = now
            return AuthenticatedCredential(
                credential_id=record.id,
                tenant_id=record.tenant_id,
                scopes=tuple(record.scopes),
                expires_at=record.expires_at,
            )
