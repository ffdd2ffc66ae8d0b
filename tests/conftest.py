"""Shared fixtures live in tests/fixtures/, one module per real component."""

pytest_plugins = [
    "tests.fixtures.images",
    "tests.fixtures.lab",
    "tests.fixtures.real_node",
    "tests.fixtures.real_node_operator",
    "tests.fixtures.sshd",
    "tests.fixtures.real_gt",
]
