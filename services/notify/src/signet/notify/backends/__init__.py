"""Implementations of notify's interfaces.

SMTP, the HTTP SMS provider, webhooks, and the gRPC clients of identity (contact details)
and evidence (incident notices).
"""
