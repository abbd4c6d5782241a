"""The shared fixtures live in tests/support/, registered here as pytest plugins."""

pytest_plugins = [
    "tests.support.databases",
    "tests.support.nightly",
    "tests.support.smtp",
]
