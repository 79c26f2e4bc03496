"""Generated from proto/signet/signer/v1; do not edit."""
