"""Identity domain: vault, credentials, operators, verifications, willingness, grants, privacy.

The personal-data columns of 0001 (ciphertext on the account row) give way to the vault
table, where each value has its own category and retention.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from signet.common.db import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("kek_label", sa.String(length=128), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
        sa.UniqueConstraint("account_id", name=op.f("uq_data_keys_account_id")),
    )
    op.create_table(
        "data_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "export", "correct", "delete", "cancel", name="datarequestkind", native_enum=False
            ),
            nullable=False,
        ),
        sa.Column("client_request_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("due_by", UtcDateTime(), nullable=True),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_requests")),
    )
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_requests_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "grant_keys",
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("spki_der", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=False),
        sa.Column("not_after", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_grant_keys")),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("digests", sa.JSON(), nullable=False),
        sa.Column("willingness_id", sa.String(length=64), nullable=True),
        sa.Column("auto_sign_authorization_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("token", sa.String(length=4096), nullable=True),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("consumed_at", UtcDateTime(), nullable=True),
        sa.Column("retained_until", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint(
            "auto_sign_authorization_id",
            "request_id",
            name=op.f("uq_grants_auto_sign_authorization_id"),
        ),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_account_id"), ["account_id"], unique=False)

    op.create_table(
        "api_credentials",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("active", "revoked", "expired", name="credentialstate", native_enum=False),
            nullable=False,
        ),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("rotated_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_credentials_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_credentials")),
    )
    with op.batch_alter_table("api_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_credentials_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "vault_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("owner_ref", sa.String(length=100), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column(
            "category",
            sa.Enum(
                "identity",
                "contact",
                "bank_card",
                "verification_records",
                "willingness_records",
                "signature_records",
                "notifications",
                "access_logs",
                name="datacategory",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("data_key_id", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("retained_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["data_key_id"], ["data_keys.id"], name=op.f("fk_vault_entries_data_key_id_data_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_entries")),
        sa.UniqueConstraint(
            "account_id", "owner_ref", "field", name=op.f("uq_vault_entries_account_id")
        ),
    )
    with op.batch_alter_table("vault_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vault_entries_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "auto_sign_authorizations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("operator_account_id", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("business_scope", sa.String(length=128), nullable=False),
        sa.Column("valid_from", UtcDateTime(), nullable=False),
        sa.Column("valid_until", UtcDateTime(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "active",
                "revoked",
                "expired",
                "exhausted",
                name="authorizationstate",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("willingness_grant_id", sa.String(length=64), nullable=False),
        sa.Column("text_digest", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("retained_until", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_auto_sign_authorizations_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auto_sign_authorizations")),
        sa.UniqueConstraint(
            "tenant_id", "request_id", name=op.f("uq_auto_sign_authorizations_tenant_id")
        ),
    )
    with op.batch_alter_table("auto_sign_authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auto_sign_authorizations_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "credential_secrets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("credential_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("valid_until", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["api_credentials.id"],
            name=op.f("fk_credential_secrets_credential_id_api_credentials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credential_secrets")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_credential_secrets_secret_hash")),
    )
    with op.batch_alter_table("credential_secrets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credential_secrets_credential_id"), ["credential_id"], unique=False
        )

    op.create_table(
        "operator_authorizations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("enterprise_account_id", sa.String(length=64), nullable=False),
        sa.Column("operator_account_id", sa.String(length=64), nullable=False),
        sa.Column("rights", sa.JSON(), nullable=False),
        sa.Column("valid_from", UtcDateTime(), nullable=False),
        sa.Column("valid_until", UtcDateTime(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "active",
                "revoked",
                "expired",
                "exhausted",
                name="authorizationstate",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("document_digest", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enterprise_account_id"],
            ["accounts.id"],
            name=op.f("fk_operator_authorizations_enterprise_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_account_id"],
            ["accounts.id"],
            name=op.f("fk_operator_authorizations_operator_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_authorizations")),
        sa.UniqueConstraint(
            "tenant_id", "request_id", name=op.f("uq_operator_authorizations_tenant_id")
        ),
    )
    with op.batch_alter_table("operator_authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_authorizations_enterprise_account_id"),
            ["enterprise_account_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_operator_authorizations_operator_account_id"),
            ["operator_account_id"],
            unique=False,
        )

    op.create_table(
        "verifications",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column(
            "method",
            sa.Enum(
                "person_id_phone",
                "bank_card_four_elements",
                "face_match",
                "enterprise",
                name="verificationmethod",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "verified",
                "failed",
                "locked",
                "expired",
                name="verificationstatus",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "failure_reason",
            sa.Enum(
                "invalid_id_number",
                "invalid_credit_code",
                "code_mismatch",
                "code_expired",
                "too_many_attempts",
                "elements_mismatch",
                "face_mismatch",
                "liveness_failed",
                "operator_not_authorized",
                "minor_without_guardian",
                "provider_error",
                name="failurereason",
                native_enum=False,
            ),
            nullable=True,
        ),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("masked_destination", sa.String(length=64), nullable=False),
        sa.Column("phone_lookup", sa.String(length=64), nullable=True),
        sa.Column("subject_lookup", sa.String(length=64), nullable=True),
        sa.Column("masked_id_number", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("provider_reference", sa.String(length=200), nullable=False),
        sa.Column("face_session_token", sa.String(length=200), nullable=True),
        sa.Column("operator_account_id", sa.String(length=64), nullable=True),
        sa.Column("operator_authorization_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("valid_until", UtcDateTime(), nullable=True),
        sa.Column("retained_until", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_verifications_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
    )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verifications_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_verifications_phone_lookup"), ["phone_lookup"], unique=False
        )

    op.create_table(
        "willingness_checks",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("operator_account_id", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("digests", sa.JSON(), nullable=False),
        sa.Column(
            "method",
            sa.Enum(
                "sms_code", "email_code", "face_match", name="willingnessmethod", native_enum=False
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "confirmed",
                "locked",
                "expired",
                name="willingnessstatus",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("destination_lookup", sa.String(length=64), nullable=True),
        sa.Column("masked_destination", sa.String(length=64), nullable=False),
        sa.Column("face_session_token", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("confirmed_at", UtcDateTime(), nullable=True),
        sa.Column("retained_until", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_willingness_checks_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_willingness_checks")),
    )
    with op.batch_alter_table("willingness_checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_willingness_checks_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_willingness_checks_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_willingness_checks_destination_lookup"),
            ["destination_lookup"],
            unique=False,
        )

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("email_lookup", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("masked_id_number", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("masked_phone", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("masked_email", sa.String(length=320), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("locale", sa.String(length=35), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("guardian_account_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("verification_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", UtcDateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_accounts_email_lookup"), ["email_lookup"], unique=False
        )
        batch_op.create_unique_constraint("uq_accounts_request", ["tenant_id", "request_id"])
        batch_op.drop_column("id_number_ciphertext")
        batch_op.drop_column("phone_ciphertext")
        batch_op.drop_column("name_ciphertext")

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("data_region", sa.String(length=32), nullable=False, server_default="cn")
        )
        batch_op.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_tenants_request_id"), ["request_id"])


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_tenants_request_id"), type_="unique")
        batch_op.drop_column("request_id")
        batch_op.drop_column("data_region")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_ciphertext", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("phone_ciphertext", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("id_number_ciphertext", sa.LargeBinary(), nullable=True))
        batch_op.drop_constraint("uq_accounts_request", type_="unique")
        batch_op.drop_index(batch_op.f("ix_accounts_email_lookup"))
        batch_op.drop_column("cancelled_at")
        batch_op.drop_column("verification_id")
        batch_op.drop_column("guardian_account_id")
        batch_op.drop_column("locale")
        batch_op.drop_column("masked_email")
        batch_op.drop_column("masked_phone")
        batch_op.drop_column("masked_id_number")
        batch_op.drop_column("email_lookup")
        batch_op.drop_column("request_id")

    with op.batch_alter_table("willingness_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_willingness_checks_destination_lookup"))
        batch_op.drop_index(batch_op.f("ix_willingness_checks_created_at"))
        batch_op.drop_index(batch_op.f("ix_willingness_checks_account_id"))

    op.drop_table("willingness_checks")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verifications_phone_lookup"))
        batch_op.drop_index(batch_op.f("ix_verifications_account_id"))

    op.drop_table("verifications")
    with op.batch_alter_table("operator_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_authorizations_operator_account_id"))
        batch_op.drop_index(batch_op.f("ix_operator_authorizations_enterprise_account_id"))

    op.drop_table("operator_authorizations")
    with op.batch_alter_table("credential_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_secrets_credential_id"))

    op.drop_table("credential_secrets")
    with op.batch_alter_table("auto_sign_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auto_sign_authorizations_account_id"))

    op.drop_table("auto_sign_authorizations")
    with op.batch_alter_table("vault_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vault_entries_account_id"))

    op.drop_table("vault_entries")
    with op.batch_alter_table("api_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_credentials_tenant_id"))

    op.drop_table("api_credentials")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_account_id"))

    op.drop_table("grants")
    op.drop_table("grant_keys")
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_requests_account_id"))

    op.drop_table("data_requests")
    op.drop_table("data_keys")
