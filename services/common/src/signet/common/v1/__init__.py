"""Generated from proto/signet/common/v1; do not edit."""
