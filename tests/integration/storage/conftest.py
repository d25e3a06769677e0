"""The storage integration tests' fixtures, defined in storage_testkit."""

from storage_testkit import origin, start_storage, storage

__all__ = ["origin", "start_storage", "storage"]
