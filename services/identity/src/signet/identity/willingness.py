"""Willingness checks, the signing grants they yield, and automatic-signing authorisations."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from signet.common.auth import Principal
from signet.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from signet.common.grants import GrantClaims, encode_grant, verify_grant
from signet.common.masking import mask_email, mask_phone
from signet.identity import checks, events
from signet.identity.base import (
    GRANT_KEY_REQUEST_ID,
    ServiceBase,
    _auto_view,
    _b64url,
    _check_digests,
    _digests_from,
    _digests_json,
    _Failure,
    _new_id,
    _page_size,
    _request_id,
    _require_id,
    _text,
)
from signet.identity.domain import (
    Actor,
    AutoSignView,
    ConfirmedWillingness,
    Digest,
    GrantKeyView,
    GrantView,
    StartedWillingness,
)
from signet.identity.models import (
    AccountState,
    AccountType,
    AuthorizationState,
    AutoSignAuthorizationRecord,
    FailureReason,
    GrantKey,
    GrantRecord,
    OperatorRight,
    WillingnessCheck,
    WillingnessMethod,
    WillingnessStatus,
)
from signet.identity.providers import ProviderUnavailable
from signet.identity.repository import (
    AutoSignRepository,
    GrantKeyRepository,
    GrantRepository,
    WillingnessRepository,
)


class WillingnessRules(ServiceBase):
    """Grant key, willingness checks, grants and automatic signing."""

    # ---- grant key -------------------------------------------------------------------

    def ensure_grant_key(self) -> str:
        """Identity's grant key id: the newest recorded, or one created now in the signer."""
        with self._db.session() as s:
            row = GrantKeyRepository(s).current()
            if row is not None:
                self._kid = row.kid
                return row.kid
        kid, spki = self._grant_keys.create_key(GRANT_KEY_REQUEST_ID)
        now = self._clock()
        try:
            with self._db.session() as s:
                s.add(GrantKey(kid=kid, spki_der=spki, not_before=now, created_at=now))
        except AlreadyExists:
            pass  # another replica recorded the same key first
        self._kid = kid
        return kid

    def grant_verification_keys(self) -> list[GrantKeyView]:
        """Every grant key that may still verify a grant."""
        with self._db.session() as s:
            rows = GrantKeyRepository(s).all()
            return [GrantKeyView(r.kid, r.spki_der, r.not_before, r.not_after) for r in rows]

    def _public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for view in self.grant_verification_keys():
            public = load_der_public_key(view.spki_der)
            if isinstance(public, ec.EllipticCurvePublicKey):
                keys[view.kid] = public
        return keys

    def _sign_grant(
        self,
        *,
        tenant_id: str,
        account_id: str,
        key_id: str,
        digests: Sequence[Digest],
        auto_sign_authorization_id: str = "",
    ) -> GrantView:
        kid = self._kid or self.ensure_grant_key()
        now = self._clock().replace(microsecond=0)
        claims = GrantClaims(
            grant_id=_new_id("g"),
            tenant=tenant_id,
            account=account_id,
            key_id=key_id,
            digests=tuple(d.value for d in digests),
            issued_at=now,
            expires_at=now + self._policy.grant_ttl,
            auto_sign_authorization=auto_sign_authorization_id,
        )
        token = encode_grant(claims, kid, lambda digest: self._grant_keys.sign_digest(kid, digest))
        return GrantView(
            grant_id=claims.grant_id,
            token=token,
            tenant_id=tenant_id,
            account_id=account_id,
            key_id=key_id,
            digests=tuple(digests),
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
            auto_sign_authorization_id=auto_sign_authorization_id,
        )

    # ---- willingness -----------------------------------------------------------------

    def start_willingness(
        self,
        caller: Principal,
        account_id: str,
        key_id: str,
        digests: Sequence[Digest],
        method: WillingnessMethod,
        operator_account_id: str,
        transaction_id: str,
        actor: Actor | None,
    ) -> StartedWillingness:
        """Bind a check to (account, key, digests) and send a code or open a face session."""
        _require_id(key_id, "key_id")
        _check_digests(digests, self._policy.max_digests)
        transaction = _text(transaction_id, "transaction_id", limit=128)
        now = self._clock()
        policy = self._policy
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            self._refresh_verification(s, account)
            if account.state is not AccountState.VERIFIED:
                raise FailedPrecondition("the account is not real-name verified")
            confirmer = account
            if account.type is AccountType.ENTERPRISE:
                found = self._authorized_operator(
                    s, account, operator_account_id, OperatorRight.SIGN
                )
                if found is None:
                    raise PermissionDenied(
                        "the operator is not authorised to sign for this enterprise (missing, "
                        "expired or revoked authorisation, or operator not verified)"
                    )
                confirmer = found[0]
            elif operator_account_id:
                raise InvalidArgument("operator_account_id applies to enterprise accounts only")
            recent = WillingnessRepository(s).count_started_since(
                account.id, now - policy.rate_window
            )
            if recent >= policy.max_checks_per_account:
                raise ResourceExhausted(
                    "too many willingness checks for this account; retry in a few minutes"
                )
            contact = self._vault.get_all(s, confirmer.id)
            tenant_id, locale = account.tenant_id, confirmer.locale
        check = WillingnessCheck(
            id=_new_id("wil"),
            tenant_id=tenant_id,
            account_id=account_id,
            operator_account_id=operator_account_id or None,
            key_id=key_id,
            digests=_digests_json(digests),
            method=method,
            status=WillingnessStatus.PENDING,
            attempts=0,
            transaction_id=transaction,
            created_at=now,
            expires_at=now + policy.code_ttl,
            retained_until=checks.add_years(now, policy.retention_years),
        )
        face_url = ""
        code = ""
        destination = ""
        if method is WillingnessMethod.FACE_MATCH:
            if "name" not in contact or "id_number" not in contact:
                raise FailedPrecondition("face match needs the verified name and ID number")
            try:
                session = self._providers.face.start_session(
                    contact["name"], contact["id_number"], ""
                )
            except ProviderUnavailable:
                raise Unavailable("the face match provider is unavailable; retry") from None
            check.face_session_token = session.session_token
            check.expires_at = now + policy.verification_session_ttl
            face_url = session.url
        else:
            field = "phone" if method is WillingnessMethod.SMS_CODE else "email"
            destination = contact.get(field, "")
            if not destination:
                raise FailedPrecondition(f"the confirming account has no {field} to send a code to")
            check.destination_lookup = self._vault.lookup(field, destination)
            check.masked_destination = (
                mask_phone(destination) if field == "phone" else mask_email(destination)
            )
            self._rate_limit_destination(check.destination_lookup, now)
            code = self._new_code()
            check.code_hash = checks.code_hash(
                self._vault.lookup_key, "willingness", check.id, code
            )
        with self._db.session() as s:
            s.add(check)
        if code:
            self._send_or_expire(
                WillingnessCheck,
                check.id,
                tenant_id=tenant_id,
                channel="sms" if method is WillingnessMethod.SMS_CODE else "email",
                destination=destination,
                code=code,
                template_id="willingness-code",
                expires_at=check.expires_at,
                locale=locale,
            )
        return StartedWillingness(
            willingness_id=check.id,
            method=method,
            expires_at=check.expires_at,
            masked_code_destination=check.masked_destination,
            face_session_url=face_url,
            attempts_remaining=policy.max_code_attempts,
        )

    def confirm_willingness(
        self,
        caller: Principal,
        willingness_id: str,
        one_time_code: str,
        face_session_token: str,
        actor: Actor | None,
    ) -> ConfirmedWillingness:
        """Check the proof and return the single-use signing grant.

        A wrong, expired or reused code is PermissionDenied (the attempt is recorded first);
        a locked check is FailedPrecondition.
        """
        _require_id(willingness_id, "willingness_id")
        now = self._clock()
        max_attempts = self._policy.max_code_attempts
        failure: _Failure | None = None
        with self._db.session() as s:
            # Locked on PostgreSQL, so two concurrent attempts cannot count as one.
            check = s.get(WillingnessCheck, willingness_id, with_for_update=True)
            if check is None:
                raise NotFound("willingness check not found")
            account = self._account(s, caller, check.account_id)
            if check.status is WillingnessStatus.LOCKED:
                raise FailedPrecondition(
                    "the willingness check is locked after too many attempts; start a new one"
                )
            if check.status is WillingnessStatus.CONFIRMED:
                raise PermissionDenied("this willingness check was already used")
            if check.status is WillingnessStatus.EXPIRED or check.expires_at <= now:
                if check.status is WillingnessStatus.PENDING:
                    check.status = WillingnessStatus.EXPIRED
                    check.code_hash = None
                    events.emit(
                        s,
                        events.willingness_failed(
                            account.id, check.id, check.method, FailureReason.CODE_EXPIRED, 0, False
                        ),
                        subject=account.id,
                        tenant=account.tenant_id,
                        actor=actor,
                        transaction_id=check.transaction_id,
                    )
                failure = _Failure(
                    PermissionDenied("the willingness check has expired; start a new one")
                )
            else:
                reason = self._willingness_proof(check, one_time_code, face_session_token)
                if reason is not None:
                    check.attempts += 1
                    remaining = max(max_attempts - check.attempts, 0)
                    locked = remaining == 0
                    if locked:
                        check.status = WillingnessStatus.LOCKED
                        check.code_hash = None
                    events.emit(
                        s,
                        events.willingness_failed(
                            account.id,
                            check.id,
                            check.method,
                            FailureReason.TOO_MANY_ATTEMPTS if locked else reason,
                            remaining,
                            locked,
                        ),
                        subject=account.id,
                        tenant=account.tenant_id,
                        actor=actor,
                        transaction_id=check.transaction_id,
                    )
                    what = (
                        "wrong code"
                        if reason is FailureReason.CODE_MISMATCH
                        else "face match failed"
                    )
                    failure = _Failure(
                        PermissionDenied(
                            f"{what}; the check is now locked"
                            if locked
                            else f"{what}; {remaining} attempts left"
                        )
                    )
            snapshot = (
                check.tenant_id,
                check.account_id,
                check.key_id,
                _digests_from(check.digests),
            )
            attempts = check.attempts
        if failure is not None:
            self._commit()
            raise failure.error
        tenant_id, account_id, key_id, digests = snapshot
        grant = self._sign_grant(
            tenant_id=tenant_id, account_id=account_id, key_id=key_id, digests=digests
        )
        with self._db.session() as s:
            if not WillingnessRepository(s).confirm(willingness_id, grant.grant_id, now):
                raise PermissionDenied("this willingness check was already used")
            check = s.get(WillingnessCheck, willingness_id)
            assert check is not None
            s.add(
                GrantRecord(
                    id=grant.grant_id,
                    tenant_id=tenant_id,
                    account_id=account_id,
                    key_id=key_id,
                    digests=_digests_json(digests),
                    willingness_id=willingness_id,
                    transaction_id=check.transaction_id,
                    issued_at=grant.issued_at,
                    expires_at=grant.expires_at,
                    retained_until=check.retained_until,
                )
            )
            events.emit(
                s,
                events.willingness_confirmed(
                    account_id,
                    willingness_id,
                    check.method,
                    key_id,
                    digests,
                    grant.grant_id,
                    grant.expires_at,
                    check.operator_account_id or "",
                ),
                subject=account_id,
                tenant=tenant_id,
                actor=actor,
                transaction_id=check.transaction_id,
                digests=digests,
            )
        self._commit()
        return ConfirmedWillingness(
            status=WillingnessStatus.CONFIRMED,
            grant=grant,
            attempts_remaining=max(max_attempts - attempts, 0),
        )

    def _willingness_proof(
        self, check: WillingnessCheck, code: str, face_token: str
    ) -> FailureReason | None:
        if check.method is WillingnessMethod.FACE_MATCH:
            if not face_token:
                raise InvalidArgument("face_match.session_token is required")
            if not check.face_session_token or not hmac.compare_digest(
                check.face_session_token, face_token
            ):
                raise InvalidArgument("the face session does not belong to this check")
            try:
                verdict = self._providers.face.session_result(face_token)
            except ProviderUnavailable:
                raise Unavailable("the face match result is not available yet; retry") from None
            return None if verdict.matched else (verdict.reason or FailureReason.FACE_MISMATCH)
        if not code:
            raise InvalidArgument("one_time_code is required")
        if not check.code_hash or not checks.codes_match(
            check.code_hash, self._vault.lookup_key, "willingness", check.id, code
        ):
            return FailureReason.CODE_MISMATCH
        return None

    # ---- automatic signing -----------------------------------------------------------

    def create_auto_sign(
        self,
        caller: Principal,
        account_id: str,
        key_id: str,
        business_scope: str,
        valid_from: datetime | None,
        valid_until: datetime | None,
        max_uses: int,
        confirmation_grant: str,
        text_digest: Digest | None,
        operator_account_id: str,
        request_id: str,
    ) -> AutoSignView:
        """A standing authorisation, confirmed by a willingness grant over its text digest."""
        _require_id(key_id, "key_id")
        scope = _text(business_scope, "business_scope", required=True, limit=128)
        if max_uses <= 0:
            raise InvalidArgument("max_uses must be at least 1")
        if valid_until is None:
            raise InvalidArgument("valid_until is required")
        if text_digest is None:
            raise InvalidArgument("authorization_text_digest is required")
        _check_digests([text_digest], 1)
        now = self._clock()
        start = valid_from or now
        if valid_until <= start or valid_until <= now:
            raise InvalidArgument("valid_until must be in the future and after valid_from")
        rid = _request_id(request_id)
        if not confirmation_grant:
            raise PermissionDenied("a confirmation grant from a willingness check is required")
        claims = verify_grant(confirmation_grant, self._public_keys(), now)
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            if rid is not None:
                existing = AutoSignRepository(s).by_request_id(account.tenant_id, rid)
                if existing is not None:
                    return _auto_view(existing, now)
            self._refresh_verification(s, account)
            if account.state is not AccountState.VERIFIED:
                raise FailedPrecondition("the account is not real-name verified")
            if account.type is AccountType.ENTERPRISE and (
                self._authorized_operator(
                    s, account, operator_account_id, OperatorRight.MANAGE_AUTO_SIGN
                )
                is None
            ):
                raise PermissionDenied("the operator is not authorised to manage automatic signing")
            if (
                claims.account != account.id
                or claims.tenant != account.tenant_id
                or claims.key_id != key_id
                or text_digest.value not in claims.digests
                or claims.auto_sign_authorization
            ):
                raise PermissionDenied(
                    "the confirmation grant does not name this account, key and text digest"
                )
            grant = s.get(GrantRecord, claims.grant_id)
            if grant is None or grant.willingness_id is None:
                raise PermissionDenied("the confirmation grant is unknown")
            if not GrantRepository(s).consume(grant.id, now):
                raise PermissionDenied("the confirmation grant has already been used")
            record = AutoSignAuthorizationRecord(
                id=_new_id("asa"),
                tenant_id=account.tenant_id,
                request_id=rid,
                account_id=account.id,
                operator_account_id=operator_account_id or None,
                key_id=key_id,
                business_scope=scope,
                valid_from=start,
                valid_until=valid_until,
                max_uses=max_uses,
                uses=0,
                state=AuthorizationState.ACTIVE,
                willingness_grant_id=claims.grant_id,
                text_digest=_digests_json([text_digest])[0],
                created_at=now,
                retained_until=checks.add_years(valid_until, self._policy.retention_years),
            )
            s.add(record)
            s.flush()
            events.emit(
                s,
                events.auto_sign_authorized(
                    record.id,
                    account.id,
                    key_id,
                    scope,
                    start,
                    valid_until,
                    max_uses,
                    claims.grant_id,
                    text_digest,
                ),
                subject=account.id,
                tenant=account.tenant_id,
                digests=[text_digest],
            )
            view = _auto_view(record, now)
        self._commit()
        return view

    def revoke_auto_sign(self, caller: Principal, authorization_id: str) -> AutoSignView:
        """Revoke an automatic-signing authorisation at once."""
        _require_id(authorization_id, "authorization_id")
        now = self._clock()
        with self._db.session() as s:
            record = s.get(AutoSignAuthorizationRecord, authorization_id)
            if record is None:
                raise NotFound("automatic-signing authorisation not found")
            self._account(s, caller, record.account_id)
            if record.state is AuthorizationState.ACTIVE:
                record.state = AuthorizationState.REVOKED
                record.revoked_at = now
                events.emit(
                    s,
                    events.auto_sign_revoked(record.id, record.account_id, caller.subject),
                    subject=record.account_id,
                    tenant=record.tenant_id,
                )
            view = _auto_view(record, now)
        self._commit()
        return view

    def list_auto_sign(
        self,
        caller: Principal,
        account_id: str,
        include_inactive: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[AutoSignView], str]:
        """An account's automatic-signing authorisations, by id."""
        size = _page_size(page_size)
        now = self._clock()
        with self._db.session() as s:
            self._account(s, caller, account_id)
            rows = AutoSignRepository(s).for_account(account_id, after=page_token)
            views = [_auto_view(r, now) for r in rows]
        if not include_inactive:
            views = [v for v in views if v.state is AuthorizationState.ACTIVE]
        more = len(views) > size
        views = views[:size]
        return views, (views[-1].authorization_id if more else "")

    def issue_auto_sign_grant(
        self,
        caller: Principal,
        authorization_id: str,
        digests: Sequence[Digest],
        transaction_id: str,
        request_id: str,
        actor: Actor | None,
    ) -> tuple[GrantView, int]:
        """Use an authorisation once: a recorded grant for ``digests`` (idempotent on request)."""
        _require_id(authorization_id, "authorization_id")
        _check_digests(digests, self._policy.max_digests)
        rid = _request_id(request_id)
        transaction = _text(transaction_id, "transaction_id", limit=128)
        now = self._clock()
        with self._db.session() as s:
            record = s.get(AutoSignAuthorizationRecord, authorization_id)
            if record is None:
                raise NotFound("automatic-signing authorisation not found")
            account = self._account(s, caller, record.account_id)
            if rid is not None:
                earlier = GrantRepository(s).by_request(authorization_id, rid)
                if earlier is not None:
                    if _digests_json(digests) != earlier.digests:
                        raise AlreadyExists("request_id was used with other digests")
                    if earlier.token is None or earlier.expires_at <= now:
                        raise FailedPrecondition("the grant of this request has expired")
                    return (
                        GrantView(
                            grant_id=earlier.id,
                            token=earlier.token,
                            tenant_id=earlier.tenant_id,
                            account_id=earlier.account_id,
                            key_id=earlier.key_id,
                            digests=_digests_from(earlier.digests),
                            issued_at=earlier.issued_at,
                            expires_at=earlier.expires_at,
                            auto_sign_authorization_id=authorization_id,
                        ),
                        record.max_uses - record.uses,
                    )
            view = _auto_view(record, now)
            if view.state is not AuthorizationState.ACTIVE:
                raise FailedPrecondition(
                    f"the automatic-signing authorisation is {view.state.value}"
                )
            if record.valid_from > now:
                raise FailedPrecondition("the automatic-signing authorisation is not valid yet")
            self._refresh_verification(s, account)
            if account.state is not AccountState.VERIFIED:
                raise FailedPrecondition("the account is not real-name verified")
            tenant_id, account_id, key_id = record.tenant_id, record.account_id, record.key_id
        grant = self._sign_grant(
            tenant_id=tenant_id,
            account_id=account_id,
            key_id=key_id,
            digests=digests,
            auto_sign_authorization_id=authorization_id,
        )
        with self._db.session() as s:
            if not AutoSignRepository(s).use_once(authorization_id):
                raise FailedPrecondition("the automatic-signing authorisation is exhausted")
            record = s.get(AutoSignAuthorizationRecord, authorization_id)
            assert record is not None
            s.refresh(record)
            if record.uses >= record.max_uses:
                record.state = AuthorizationState.EXHAUSTED
            s.add(
                GrantRecord(
                    id=grant.grant_id,
                    tenant_id=tenant_id,
                    account_id=account_id,
                    key_id=key_id,
                    digests=_digests_json(digests),
                    auto_sign_authorization_id=authorization_id,
                    request_id=rid,
                    transaction_id=transaction,
                    token=grant.token if rid else None,
                    issued_at=grant.issued_at,
                    expires_at=grant.expires_at,
                    retained_until=checks.add_years(now, self._policy.retention_years),
                )
            )
            remaining = record.max_uses - record.uses
            events.emit(
                s,
                events.auto_sign_grant_issued(
                    authorization_id,
                    account_id,
                    key_id,
                    grant.grant_id,
                    digests,
                    record.uses,
                    remaining,
                ),
                subject=account_id,
                tenant=tenant_id,
                actor=actor,
                transaction_id=transaction,
                digests=digests,
            )
        self._commit()
        return grant, remaining


def jwk_of(view: GrantKeyView) -> dict[str, str]:
    """The JWK (EC P-256) of a grant verification key."""
    public = load_der_public_key(view.spki_der)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise FailedPrecondition("grant key is not an EC key")
    numbers = public.public_numbers()
    return {
        "kid": view.kid,
        "alg": "ES256",
        "kty": "EC",
        "crv": "P-256",
        "use": "sig",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }
