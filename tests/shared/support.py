"""The shared-server tests use the project's one fake clock."""

from tests.fixtures.clock import FakeClock

__all__ = ["FakeClock"]
