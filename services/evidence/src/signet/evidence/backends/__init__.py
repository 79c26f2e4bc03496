"""Implementations of the evidence service's dependencies (signer, ca-gateway, witnesses)."""
