"""Root of the test suite: the real-part fixtures live in tests/fixtures, one module each."""

pytest_plugins = [
    "tests.fixtures.softhsm",
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.pki",
]
