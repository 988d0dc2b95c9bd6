"""Shared fixtures. Each fixture module under tests/fixtures/ is one kind of real component."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.postgres",
    "tests.fixtures.api",
    "tests.fixtures.mosquitto",
    "tests.fixtures.console",
]
