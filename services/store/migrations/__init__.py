"""Alembic migrations of the store, shipped in the package and applied by `store.migrate()`."""
