"""dbtools: migration-first schema tooling with Parquet data snapshots for PostgreSQL."""

__version__ = "0.1.0"
