"""Local runtime: SoftHSM token, Kafka broker and service processes for `make run` and tests."""
