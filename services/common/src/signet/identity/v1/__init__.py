"""Generated from proto/signet/identity/v1; do not edit."""
