"""Generated from proto/signet/notify/v1; do not edit."""
