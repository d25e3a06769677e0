"""Alembic migrations of the catalog database (a package so wheels ship them)."""
