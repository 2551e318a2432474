"""scripts/seed_demo.py: the seed's marketplace data, deterministic and realistic."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal

import pytest

from dbtools import migrations

from support.db import execute
from support.project import REPO

sys.path.insert(0, str(REPO / "scripts"))
import seed_demo

MIGRATIONS = REPO / "migrations"


def content(url: str) -> dict[str, list[tuple[str]]]:
    """Every row of every seeded table as its text form, sorted: equal means identical data."""
    return {t: execute(url, f'SELECT t::text FROM "{t}" t ORDER BY 1') for t in seed_demo.TABLES}


@pytest.fixture
def seeded(make_db: Callable[[str], str]) -> str:
    url = make_db("seed")
    migrations.apply_all(url, MIGRATIONS)
    seed_demo.seed(url)
    return url


def test_marketplace_numbers_of_the_seed(seeded: str) -> None:
    one = lambda sql: execute(seeded, sql)[0][0]  # noqa: E731
    assert one('SELECT count(*) FROM "BuilderProfile" WHERE searchable') == 18
    assert one('SELECT count(*) FROM "User"') == 27
    assert (
        one(
            'SELECT count(*) FROM "BuilderProfile" b JOIN "User" u ON u.id = b."userId" '
            'WHERE u."isDemo"'
        )
        == 5
    )
    assert one("""SELECT count(*) FROM "User" WHERE email LIKE 'test-builder-%'""") == 12
    assert 25 <= one('SELECT count(*) FROM "SessionType"') <= 35
    for table in seed_demo.TABLES:
        assert one(f'SELECT count(*) FROM "{table}"') > 0, table
    liam = execute(
        seeded,
        """SELECT u.roles::text, u."isFounder", u.verified, u."isDemo", b.featured,
                  b."validationTier", b.searchable
           FROM "User" u JOIN "BuilderProfile" b ON b."userId" = u.id
           WHERE u.email = 'liam@buildappswith.com'""",
    )
    assert liam == [("{CLIENT,BUILDER,ADMIN}", True, True, False, True, 3, True)]
    assert one("""SELECT count(*) FROM "User" WHERE email LIKE '%@buildappswith.ai'""") == 0
    # the marketplace listing puts Liam first
    first = execute(
        seeded,
        """SELECT u.email FROM "BuilderProfile" b JOIN "User" u ON u.id = b."userId"
           WHERE b.searchable ORDER BY b.featured DESC, b."validationTier" DESC,
           b.rating DESC NULLS LAST LIMIT 1""",
    )
    assert first == [("liam@buildappswith.com",)]


def test_values_are_realistic_in_every_column_type(seeded: str) -> None:
    one = lambda sql: execute(seeded, sql)[0][0]  # noqa: E731
    assert one('SELECT count(*) FROM "User" WHERE image IS NULL') > 0
    assert one("SELECT count(*) FROM \"BuilderProfile\" WHERE badges = '{}'") > 0
    assert one('SELECT count(*) FROM "BuilderProfile" WHERE cardinality("portfolioItems") > 0') > 0
    assert (
        one(
            """SELECT count(*) FROM "BuilderProfile" WHERE jsonb_typeof("socialLinks") = 'object'"""
        )
        > 0
    )
    assert one("""SELECT count(*) FROM "ClientProfile" WHERE pathways = '[]'::jsonb""") > 0
    assert (
        one("""SELECT count(*) FROM "ClientProfile" WHERE jsonb_array_length(pathways) > 0""") > 0
    )
    prices = [r[0] for r in execute(seeded, 'SELECT price FROM "SessionType"')]
    assert any(p != p.to_integral_value() for p in prices) and Decimal("0.00") in prices
    assert (
        one(
            'SELECT count(*) FROM "User" '
            """WHERE date_part('milliseconds', "createdAt")::int % 1000 <> 0"""
        )
        > 0
    )
    assert one("""SELECT count(*) FROM "User" WHERE name ~ '[^[:ascii:]]'""") > 0
    assert one("""SELECT count(*) FROM "BuilderProfile" WHERE bio LIKE '%''%'""") > 0
    assert (
        one('SELECT count(*) FROM "Booking" WHERE "sessionTypeId" IS NULL OR "clientId" IS NULL')
        > 0
    )


def test_same_seed_same_rows_other_seed_other_rows(
    make_db: Callable[[str], str], seeded: str
) -> None:
    other = make_db("seed2")
    migrations.apply_all(other, MIGRATIONS)
    seed_demo.seed(other, 42)
    assert content(other) == content(seeded)
    seed_demo.seed(other, 7)  # replaces, never appends
    assert execute(other, 'SELECT count(*) FROM "User"') == [(27,)]
    assert content(other) != content(seeded)


def test_refuses_a_database_not_at_head(make_db: Callable[[str], str]) -> None:
    url = make_db("old")
    migrations.apply_all(url, MIGRATIONS, upto="0002_marketplace_fields")
    with pytest.raises(seed_demo.SeedError, match="not migrated to head"):
        seed_demo.seed(url)


@pytest.mark.parametrize("upto", ["0002_marketplace_fields", None])
def test_stale_prod_before_and_after_the_rename(
    make_db: Callable[[str], str], upto: str | None
) -> None:
    url = make_db("stale")
    migrations.apply_all(url, MIGRATIONS, upto=upto)
    counts = seed_demo.seed_stale_prod(url)
    assert counts["User"] == 1 and counts["BuilderProfile"] == 1
    assert execute(url, 'SELECT email FROM "User"') == [("liam@buildappswith.ai",)]


def test_script_migrates_and_seeds(make_db: Callable[[str], str]) -> None:
    url = make_db("cli")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "seed_demo.py"), "--url", url, "--migrate"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "BuilderProfile" in done.stdout and "18" in done.stdout
    assert execute(url, 'SELECT count(*) FROM "User"') == [(27,)]
