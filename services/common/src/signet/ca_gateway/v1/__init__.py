"""Generated from proto/signet/ca_gateway/v1; do not edit."""
