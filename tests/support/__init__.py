"""Helpers shared by several test suites (no fixtures: those live in tests/fixtures)."""
