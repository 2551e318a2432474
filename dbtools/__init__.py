"""dbtools: migration-first schema tooling with Parquet data snapshots for PostgreSQL."""

__version__ = "0.1.0"

# Analysts' entry point: dbtools.read_snapshot(path, table) -> pandas DataFrame.
from dbtools.snapshot import read_snapshot

__all__ = ["__version__", "read_snapshot"]
