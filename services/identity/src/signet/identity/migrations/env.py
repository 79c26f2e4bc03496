"""Alembic environment of the identity service: its own tables plus the shared outbox tables."""

import signet.common.outbox  # noqa: F401  (registers the outbox tables on the common metadata)
from signet.common.db import Base as CommonBase
from signet.common.migrations import run_env
from signet.identity.models import Base

run_env([Base.metadata, CommonBase.metadata])
