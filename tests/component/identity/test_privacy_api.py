"""Personal-data rights over gRPC: export, correction, deletion, cancellation, retention.

The tests read the database directly to show what is removed, what is kept and until when.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import func, select

from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.identity.checks import add_years
from signet.identity.models import (
    DataKey,
    GrantRecord,
    VaultEntry,
    VerificationRecord,
    WillingnessCheck,
)
from signet.identity.v1 import identity_pb2
from tests.fixtures.identity import IdentityEnv, make_id_number

V = identity_pb2
ID = make_id_number()
C = V.PersonalDataCategory


def _digest(text: str) -> common_pb2.Digest:
    return common_pb2.Digest(
        algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=hashlib.sha256(text.encode()).digest()
    )


def _sign(env: IdentityEnv, account_id: str, transaction_id: str) -> str:
    started = env.stub.StartWillingness(
        V.StartWillingnessRequest(
            account_id=account_id,
            key_id="k-1",
            digests=[_digest(transaction_id)],
            method=V.WILLINGNESS_METHOD_SMS_CODE,
            transaction_id=transaction_id,
        )
    )
    return env.stub.ConfirmWillingness(
        V.ConfirmWillingnessRequest(
            willingness_id=started.willingness_id, one_time_code=env.notify.last_code()
        )
    ).grant.grant_id


def _fields(env: IdentityEnv, account_id: str) -> set[tuple[str, str]]:
    with env.db.session() as s:
        rows = s.scalars(select(VaultEntry).where(VaultEntry.account_id == account_id)).all()
        return {(r.owner_ref.split(":")[0], r.field) for r in rows}


def test_export_holds_every_category_in_clear_with_retention(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant(), id_number=ID)
    _sign(env, account.account_id, "tx-1")
    reply = env.stub.ExportPersonalData(V.ExportPersonalDataRequest(account_id=account.account_id))
    assert reply.media_type == "application/json"
    document = json.loads(reply.document)
    identity = {e["field"]: e["value"] for e in document["personal_data"]["identity"]}
    assert identity == {"name": "张三明", "id_number": ID}
    contact = {e["field"]: e["value"] for e in document["personal_data"]["contact"]}
    assert contact == {"phone": "13812345678"}
    assert document["verification_records"][0]["status"] == "verified"
    assert document["willingness_records"][0]["transaction_id"] == "tx-1"
    assert document["signature_records"][0]["key_id"] == "k-1"
    assert [r["kind"] for r in document["requests"]] == ["export"]
    exported = env.events(events_pb2.PersonalDataExported)[-1]
    assert exported.request_id == reply.request_id


def test_correcting_the_id_number_checks_it_and_requires_reverification(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant(), id_number=ID)
    bad = ID[:-1] + ("0" if ID[-1] != "0" else "1")
    with pytest.raises(grpc.RpcError) as info:
        env.stub.CorrectPersonalData(
            V.CorrectPersonalDataRequest(
                account_id=account.account_id,
                id_number=bad,
                update_mask=FieldMask(paths=["id_number"]),
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    new_id = make_id_number(seq="777")
    reply = env.stub.CorrectPersonalData(
        V.CorrectPersonalDataRequest(
            account_id=account.account_id,
            id_number=new_id,
            update_mask=FieldMask(paths=["id_number"]),
        )
    )
    assert reply.reverification_required
    assert reply.account.state == V.ACCOUNT_STATE_REGISTERED
    assert reply.account.person.masked_id_number == new_id[:4] + "*" * 10 + new_id[-4:]
    assert reply.account.subject_identifier_hash != account.subject_identifier_hash
    corrected = env.events(events_pb2.PersonalDataCorrected)[-1]
    assert list(corrected.changed_fields) == ["id_number"]


def test_deletion_removes_profile_and_contacts_and_keeps_what_the_law_holds(
    env: IdentityEnv,
) -> None:
    account = env.verified_person(env.tenant(), id_number=ID)
    _sign(env, account.account_id, "tx-1")
    _sign(env, account.account_id, "tx-2")
    reply = env.stub.RequestDeletion(
        V.RequestDeletionRequest(
            account_id=account.account_id, jointly_instructed_transaction_ids=["tx-1"]
        )
    )
    outcomes = {o.category: o for o in reply.outcomes}
    assert outcomes[C.PERSONAL_DATA_CATEGORY_IDENTITY].disposition == V.DATA_DISPOSITION_DELETED
    assert outcomes[C.PERSONAL_DATA_CATEGORY_CONTACT].disposition == V.DATA_DISPOSITION_DELETED
    assert outcomes[C.PERSONAL_DATA_CATEGORY_BANK_CARD].disposition == V.DATA_DISPOSITION_NONE_HELD
    verification = outcomes[C.PERSONAL_DATA_CATEGORY_VERIFICATION_RECORDS]
    assert verification.disposition == V.DATA_DISPOSITION_RETAINED_BY_LAW
    five_years = add_years(env.clock.now, 5)
    assert abs(verification.retained_until.ToDatetime(tzinfo=UTC) - five_years) < timedelta(days=1)
    willingness = outcomes[C.PERSONAL_DATA_CATEGORY_WILLINGNESS_RECORDS]
    assert willingness.disposition == V.DATA_DISPOSITION_RETAINED_BY_LAW
    signatures = outcomes[C.PERSONAL_DATA_CATEGORY_SIGNATURE_RECORDS]
    assert signatures.disposition == V.DATA_DISPOSITION_AWAITING_JOINT_INSTRUCTION
    # What is left in the database: the verification's own elements, and tx-2 only.
    assert _fields(env, account.account_id) == {
        ("verification", "name"),
        ("verification", "id_number"),
        ("verification", "phone"),
    }
    with env.db.session() as s:
        grants = s.scalars(select(GrantRecord.transaction_id)).all()
        checks = s.scalars(select(WillingnessCheck.transaction_id)).all()
    assert grants == ["tx-2"] and checks == ["tx-2"]
    got = env.stub.GetAccount(V.GetAccountRequest(account_id=account.account_id)).account
    assert got.state == V.ACCOUNT_STATE_REGISTERED
    assert got.person.name == "" and got.person.masked_phone == ""
    completed = env.events(events_pb2.DeletionCompleted)[-1]
    assert completed.request_id == reply.request_id and len(completed.outcomes) == 8


def test_cancellation_completes_within_15_working_days_and_keeps_signing_data_5_years(
    env: IdentityEnv,
) -> None:
    account = env.verified_person(env.tenant(), id_number=ID)
    _sign(env, account.account_id, "tx-1")
    # A live, unused grant is an open signing transaction: cancellation is refused.
    refused = env.stub.CancelAccount(
        V.CancelAccountRequest(account_id=account.account_id, reason="moving abroad")
    ).status
    assert refused.state == V.CANCELLATION_STATE_REJECTED
    assert list(refused.blocking_reasons) == ["open signing transaction"]
    env.clock.advance(minutes=10)
    status = env.stub.CancelAccount(
        V.CancelAccountRequest(account_id=account.account_id, reason="moving abroad")
    ).status
    assert status.state == V.CANCELLATION_STATE_REQUESTED
    requested = status.requested_at.ToDatetime(tzinfo=UTC)
    due = status.due_by.ToDatetime(tzinfo=UTC)
    assert timedelta(days=15) <= due - requested <= timedelta(days=21)
    assert due.weekday() < 5
    got = env.stub.GetAccount(V.GetAccountRequest(account_id=account.account_id)).account
    assert got.state == V.ACCOUNT_STATE_CANCELLING
    assert env.service.process_cancellations() == 1
    final = env.stub.GetCancellationStatus(
        V.GetCancellationStatusRequest(account_id=account.account_id)
    ).status
    assert final.state == V.CANCELLATION_STATE_COMPLETED
    retained = {o.category: o for o in final.retained}
    keep_until = add_years(env.clock.now, 5)
    for category in (
        C.PERSONAL_DATA_CATEGORY_VERIFICATION_RECORDS,
        C.PERSONAL_DATA_CATEGORY_WILLINGNESS_RECORDS,
        C.PERSONAL_DATA_CATEGORY_SIGNATURE_RECORDS,
    ):
        assert retained[category].disposition == V.DATA_DISPOSITION_RETAINED_BY_LAW
        assert retained[category].retained_until.ToDatetime(tzinfo=UTC) == keep_until
    assert _fields(env, account.account_id) == {
        ("verification", "name"),
        ("verification", "id_number"),
        ("verification", "phone"),
    }
    got = env.stub.GetAccount(V.GetAccountRequest(account_id=account.account_id)).account
    assert got.state == V.ACCOUNT_STATE_CANCELLED
    cancelled = env.events(events_pb2.AccountCancelled)[-1]
    assert cancelled.request_id == final.request_id
    # Nothing is purged before the five years are over ...
    env.clock.advance(days=365 * 5 - 2)
    assert env.service.purge_expired_records() == 0
    # ... and everything, including the account's data key, after.
    env.clock.advance(days=5)
    assert env.service.purge_expired_records() == 1
    assert _fields(env, account.account_id) == set()
    with env.db.session() as s:
        assert s.scalar(select(func.count()).select_from(VerificationRecord)) == 0
        assert s.scalar(select(func.count()).select_from(GrantRecord)) == 0
        assert (
            s.scalar(
                select(func.count())
                .select_from(DataKey)
                .where(DataKey.account_id == account.account_id)
            )
            == 0
        )
    purged = env.events(events_pb2.PersonalDataPurged)[-1]
    assert purged.account_id == account.account_id


def test_events_carry_no_personal_data_in_clear(env: IdentityEnv) -> None:
    account = env.verified_person(env.tenant(), id_number=ID)
    _sign(env, account.account_id, "tx-1")
    env.stub.RequestDeletion(V.RequestDeletionRequest(account_id=account.account_id))
    codes = [r.params["code"] for r in env.notify.requests]
    blob = b"".join(e.SerializeToString() for e in env.envelopes())
    for secret in [ID, "13812345678", "张三明", *codes]:
        assert secret.encode() not in blob, secret
    assert len(env.envelopes()) > 5


def test_now_is_utc_aware(env: IdentityEnv) -> None:
    assert env.clock.now.tzinfo is not None and env.clock.now <= datetime.now(UTC)
