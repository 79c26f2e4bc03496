"""After a full onboarding, no ID number, phone number, card number or code is in clear.

Identity runs on SQLite and on PostgreSQL with its vault key in SoftHSM; its outbox is
relayed to the real Kafka broker; every log record of the run is captured before any
scrubbing. The scan then reads every row of every table (and, on SQLite, the raw database
and WAL files), every record on the identity topic, and every log record.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from sqlalchemy import MetaData, select

from signet.common.events import IDENTITY_TOPIC, decode_envelope
from signet.common.kafka import KafkaPublisher
from signet.common.outbox import OutboxRelay
from signet.common.pkcs11 import Pkcs11Pool
from signet.common.v1 import common_pb2
from signet.identity.backends.pkcs11 import Pkcs11KeyWrapper
from signet.identity.v1 import identity_pb2
from tests.fixtures.identity import IdentityEnv, identity_env, make_id_number

pytestmark = [pytest.mark.softhsm, pytest.mark.kafka, pytest.mark.slow]

V = identity_pb2
ID_NUMBER = make_id_number(region="330106", birth="19850412", seq="517")
PHONE = "13955550123"
CARD = "6222021234567890123"
EMAIL = "li.wei.private@example.org"


class _Capture(logging.Handler):
    """Keeps every record as emitted (message, arguments and extra fields), unscrubbed."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())
        self.texts.append(repr(record.args))
        self.texts.extend(repr(v) for v in record.__dict__.values())


@pytest.fixture
def captured_logs() -> Iterator[_Capture]:
    handler = _Capture()
    root, signet = logging.getLogger(), logging.getLogger("signet")
    levels = (root.level, signet.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    signet.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        signet.setLevel(levels[1])


def _onboard(env: IdentityEnv) -> list[str]:
    """Register, verify twice (one wrong code), sign once; returns the event ids written."""
    tenant = env.tenant()
    account = env.stub.RegisterAccount(
        V.RegisterAccountRequest(
            tenant_id=tenant,
            person=V.PersonRegistration(name="李伟", phone=PHONE, email=EMAIL),
        )
    ).account
    started = env.stub.StartRealNameVerification(
        V.StartRealNameVerificationRequest(
            account_id=account.account_id,
            person_id_phone=V.PersonIdPhoneInput(name="李伟", id_number=ID_NUMBER, phone=PHONE),
        )
    )
    right = env.notify.last_code()
    wrong = "".join(str((int(c) + 3) % 10) for c in right)
    env.stub.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(
            verification_id=started.verification_id, one_time_code=wrong
        )
    )
    env.stub.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(
            verification_id=started.verification_id, one_time_code=right
        )
    )
    card = env.stub.StartRealNameVerification(
        V.StartRealNameVerificationRequest(
            account_id=account.account_id,
            bank_card=V.BankCardInput(
                name="李伟", id_number=ID_NUMBER, card_number=CARD, phone=PHONE
            ),
        )
    )
    env.stub.CompleteRealNameVerification(
        V.CompleteRealNameVerificationRequest(
            verification_id=card.verification_id, one_time_code=env.notify.last_code()
        )
    )
    check = env.stub.StartWillingness(
        V.StartWillingnessRequest(
            account_id=account.account_id,
            key_id="k-" + uuid.uuid4().hex,
            digests=[
                common_pb2.Digest(
                    algorithm=common_pb2.HASH_ALGORITHM_SHA256,
                    value=hashlib.sha256(b"loan contract").digest(),
                )
            ],
            method=V.WILLINGNESS_METHOD_SMS_CODE,
        )
    )
    env.stub.ConfirmWillingness(
        V.ConfirmWillingnessRequest(
            willingness_id=check.willingness_id, one_time_code=env.notify.last_code()
        )
    )
    return [e.id for e in env.envelopes()]


def _table_values(env: IdentityEnv) -> list[object]:
    metadata = MetaData()
    metadata.reflect(env.db.engine)
    values: list[object] = []
    with env.db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                values.extend(v for v in row if not isinstance(v, datetime))
    return values


def _kafka_records(bootstrap: str, wanted: set[str]) -> list[bytes]:
    consumer = KafkaConsumer(
        IDENTITY_TOPIC,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id="pii-scan-" + uuid.uuid4().hex,
        consumer_timeout_ms=2000,
    )
    seen: set[str] = set()
    values: list[bytes] = []
    deadline = time.monotonic() + 90
    try:
        while not wanted <= seen and time.monotonic() < deadline:
            for record in consumer:
                values.append(record.value)
                values.extend(v for _, v in record.headers)
                seen.add(decode_envelope(record.value).id)
    finally:
        consumer.close()
    assert wanted <= seen, "not every identity event reached Kafka"
    return values


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_full_onboarding_leaves_no_personal_data_or_code_in_clear(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pkcs11_pool: Pkcs11Pool,
    kafka_bootstrap: str,
    captured_logs: _Capture,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'identity.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    wrapper = Pkcs11KeyWrapper(pkcs11_pool, "identity-vault-kek-scan")
    with identity_env(tmp_path, database_url=url, wrapper=wrapper) as env:
        event_ids = _onboard(env)
        codes = [r.params["code"] for r in env.notify.requests]
        assert len(codes) == 3 and len(event_ids) == 6
        publisher = KafkaPublisher(kafka_bootstrap, client_id="identity-pii-scan")
        try:
            relay = OutboxRelay(env.db, publisher)
            while relay.relay_once():
                pass
        finally:
            publisher.close()
        records = _kafka_records(kafka_bootstrap, set(event_ids))
        rows = _table_values(env)
        # The data is there (encrypted): the export shows it in clear to its owner.
        account_id = env.envelopes()[1].subject
        export = env.stub.ExportPersonalData(V.ExportPersonalDataRequest(account_id=account_id))
        assert ID_NUMBER.encode() in export.document and CARD.encode() in export.document
    identifiers = [ID_NUMBER, PHONE, CARD, EMAIL]
    for value in rows:
        text = value if isinstance(value, bytes) else str(value).encode()
        for secret in [*identifiers, *codes]:
            assert secret.encode() not in text, f"{backend} table value holds personal data"
    if backend == "sqlite":
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("identity.db*") if p.is_file())
        for secret in identifiers:
            assert secret.encode() not in raw
    for record in records:
        for secret in [*identifiers, *codes]:
            assert secret.encode() not in record, "a Kafka record holds personal data"
    assert captured_logs.texts, "nothing was logged: the capture is broken"
    for logged in captured_logs.texts:
        for secret in [*identifiers, *codes]:
            assert secret not in logged, "a log record holds personal data"
