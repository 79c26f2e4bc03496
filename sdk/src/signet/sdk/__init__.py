"""Signet Python SDK: a typed client over the five gRPC APIs and the flows built on it.

``Signet`` is the client (per-service stubs, deadlines, retries, round robin over
replicas); ``SignetError`` the one error type. The flow helpers a product team needs
(onboarding, signing with a willingness check, automatic sealing, evidence export and
offline verification, webhooks) are in :mod:`signet.sdk.flows`.
"""

from signet.sdk.client import Endpoints, Signet, local_token
from signet.sdk.errors import SignetError

__all__ = ["Endpoints", "Signet", "SignetError", "local_token"]
