"""Alembic environment of the ca-gateway service: its own tables plus the shared outbox tables."""

import signet.common.outbox  # noqa: F401  (registers the outbox tables on the common metadata)
from signet.ca_gateway.models import Base
from signet.common.db import Base as CommonBase
from signet.common.migrations import run_env

run_env([Base.metadata, CommonBase.metadata])
