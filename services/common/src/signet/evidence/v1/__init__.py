"""Generated from proto/signet/evidence/v1; do not edit."""
