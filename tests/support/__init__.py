"""Helpers shared by the test modules (no tests and no fixtures live here).

Each module holds one kind of material: db (server URLs, create/drop, execute, the state of a
database), project (the Project a test works in), pipeline (migrate and seed the sync
pipelines' dev and prod), snapshot (the snapshot tests' schema), archive (fabricated
archive entries), export_load (one table out and in), processes (real dbtools processes,
pause points, leftovers) and pgpeer (fake PostgreSQL peers for error paths). Test modules
import from here, never from each other; conftest.py holds the fixtures.
"""
