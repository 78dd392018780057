"""Embedded broker + Valkey for ``streamseg dev`` and the integration tests."""

from streamseg.devstack.processes import DevStack, ManagedProcess, free_port

__all__ = ["DevStack", "ManagedProcess", "free_port"]
