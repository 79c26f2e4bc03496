"""Implementations of identity's ports: HSM key wrapping, providers, signer and notify clients."""
