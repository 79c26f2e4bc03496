"""Generated from proto/signet/events/v1; do not edit."""
