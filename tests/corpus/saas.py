"""Data for the SaaS corpus (saas.sql): the same rows for a side on every run.

Tenant ids are drawn from a seed of their own, so prod's tenants are dev's first ones under
other names: the preserved table billing."50% off" in prod references tenants that dev has
too. Composite values go in through json_to_recordset so that any text (quotes, commas,
backslashes, parentheses) reaches the server intact.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg2.extensions
from psycopg2.extras import execute_values

ODD = (
    "plain",
    'a "quoted" (paren), comma',
    "back\\slash",
    "tab\tnew\nline",
    "naïve façade – 東京 🎉",
    "",
    "NULL",
    "it's",
)
PLANS = ("free", "team", "enterprise", "legacy 'gold'")
TIERS = ("a", "b", "z", "'", '"', "\\", " ")
BASE = datetime(2023, 1, 1, tzinfo=timezone.utc)


def tenant_id(i: int) -> uuid.UUID:
    return uuid.UUID(int=random.Random(f"saas-tenant-{i}").getrandbits(128), version=4)


def _hstore(pairs: dict[str, str | None]) -> str:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ", ".join(f"{q(k)}=>{'NULL' if v is None else q(v)}" for k, v in pairs.items())


def _at(rng: random.Random) -> datetime:
    return BASE + timedelta(seconds=rng.randrange(500 * 86400), microseconds=rng.randrange(10**6))


def _address(rng: random.Random) -> dict[str, str | None]:
    return {
        "street": f"{rng.randrange(1, 200)} {rng.choice(ODD)}",
        "city": rng.choice(["Paris", "Zürich", "São Paulo", 'Quote "City"', "Comma, Town"]),
        "postcode": rng.choice([None, f"{rng.randrange(10000, 99999)}"]),
        "country": rng.choice(["FR", "CH", "BR", "US"]),
    }


_ADDRESS_ROW = (
    "(SELECT ROW(x.street, x.city, x.postcode, x.country)::app.address "
    "FROM json_to_record(%s::json) AS x(street text, city text, postcode text, country text))"
)
_ADDRESS_ARRAY = (
    "ARRAY(SELECT ROW(x.street, x.city, x.postcode, x.country)::app.address "
    "FROM ROWS FROM (json_to_recordset(%s::json) "
    "AS (street text, city text, postcode text, country text)) WITH ORDINALITY "
    "AS x(street, city, postcode, country, n) ORDER BY x.n)"
)
_LINES = (
    "ARRAY(SELECT ROW(x.sku, x.qty, x.unit_price)::billing.line "
    "FROM ROWS FROM (json_to_recordset(%s::json) AS (sku text, qty integer, unit_price numeric)) "
    "WITH ORDINALITY AS x(sku, qty, unit_price, n) ORDER BY x.n)"
)


def fill(conn: psycopg2.extensions.connection, side: str, scale: int = 1) -> None:
    rng = random.Random(f"saas-{side}")
    big = side == "dev"
    n_tenants = (30 if big else 12) * scale
    with conn.cursor() as cur:
        for i in range(n_tenants):
            settings = {"locale": rng.choice(["fr", "de-CH", None]), 'we"ird': "v=>1, \\x"}
            cur.execute(
                "INSERT INTO app.tenants (id, slug, name, plan, tier, settings, created_at) "
                "VALUES (%s, %s, %s, %s::app.plan, %s, %s::hstore, %s)",
                (
                    str(tenant_id(i)),
                    f"{side.title()}-Tenant-{i}",
                    f"Tenant {i} {rng.choice(ODD)}",
                    rng.choice(PLANS),
                    rng.choice(TIERS),
                    rng.choice([None, _hstore(settings)]),
                    _at(rng),
                ),
            )
        for i in range(n_tenants):
            previous = [_address(rng) for _ in range(rng.randrange(0, 3))]
            contract = rng.choice(
                [
                    None,
                    "empty",
                    "[2024-01-01 00:00:00+00,2025-01-01 00:00:00+00)",
                    f"[{_at(rng).isoformat()},)",
                    "(,2024-06-01 12:30:00.5+02]",
                ]
            )
            cur.execute(
                "INSERT INTO billing.accounts (tenant_id, legal_name, address, "
                f"previous_addresses, contract) VALUES (%s, %s, {_ADDRESS_ROW}, "
                f"{_ADDRESS_ARRAY}, %s::tstzrange) RETURNING id",
                (
                    str(tenant_id(i)),
                    f"{rng.choice(ODD)} Ltd",
                    json.dumps(_address(rng)),
                    json.dumps(previous),
                    contract,
                ),
            )
            row = cur.fetchone()
            assert row is not None
            if i % 4 != 3:  # some tenants have no billing account on record
                cur.execute(
                    "UPDATE app.tenants SET billing_account_id = %s WHERE id = %s",
                    (row[0], str(tenant_id(i))),
                )

        n_users = 0
        for i in range(n_tenants):
            for j in range(rng.randrange(1, 5)):
                n_users += 1
                cur.execute(
                    "INSERT INTO app.users (tenant_id, email, display_name, tags, prefs, "
                    "last_xact) VALUES (%s, %s, %s, %s, %s::jsonb, %s::xid8)",
                    (
                        str(tenant_id(i)),
                        f"User{j}@Tenant{i}.{side}.example",
                        rng.choice([None, *ODD]),
                        rng.sample(["admin", "billing", "a,b", 'q"', "x y", "ü"], rng.randrange(4)),
                        json.dumps({"theme": rng.choice(["dark", "light"]), "n": rng.random()}),
                        str(rng.randrange(2**40)),
                    ),
                )
        cur.execute("SELECT id FROM billing.accounts ORDER BY id")
        accounts = [r[0] for r in cur.fetchall()]
        for _ in range((60 if big else 20) * scale):
            start = date(2024, 1, 1) + timedelta(days=rng.randrange(300))
            lines = [
                {
                    "sku": f"SKU-{rng.randrange(100)} {rng.choice(ODD)}",
                    "qty": rng.randrange(1, 10),
                    "unit_price": rng.randrange(1, 100000) / 100,
                }
                for _ in range(rng.randrange(1, 4))
            ]
            blocks = rng.choice(["{}", "{[1,5), [10,20)}", "{[-3,0]}", None])
            cur.execute(
                "INSERT INTO billing.invoices (account_id, issued_by, period, usage_blocks, lines, "
                f"amount, notes) VALUES (%s, %s, %s::daterange, %s::int4multirange, {_LINES}, "
                "%s, %s)",
                (
                    rng.choice(accounts),
                    rng.choice([None, rng.randrange(1, n_users + 1)]),
                    f"[{start},{start + timedelta(days=30)})",
                    blocks,
                    json.dumps(lines),
                    sum(line["qty"] * line["unit_price"] for line in lines),
                    rng.choice([None, *ODD]),
                ),
            )
        # A sequence owned by nothing, left before its next value: is_called = false.
        if big:
            cur.execute("SELECT setval('billing.invoice_numbers', 5000, false)")
        else:
            cur.execute("SELECT setval('billing.invoice_numbers', 777, true)")

        # Preserved: prod's rows reference tenants 0..11, which dev has as well.
        execute_values(
            cur,
            'INSERT INTO billing."50%% off" ("code/name", tenant_id, "it\'s", "x.y", '
            '"naïve ""quote""", "with space") VALUES %s',
            [
                (
                    f"{side}/{i}% off.{rng.choice(ODD)}",
                    str(tenant_id(rng.randrange(12))),
                    rng.choice([None, rng.randrange(-100, 100)]),
                    rng.randrange(-999999, 999999) / 1000,
                    rng.choice([None, *ODD]),
                    rng.random() < 0.5,
                )
                for i in range(8 if big else 5)
            ],
        )
        # Excluded: each side keeps its own.
        execute_values(
            cur,
            'INSERT INTO app."naïve ""quote""" (id, "Ünïcödé", "50%%") VALUES %s',
            [(i, f"{side} {rng.choice(ODD)}", rng.randrange(1000) / 7) for i in range(6)],
            template="(%s, %s, %s::numeric)",
        )
        execute_values(
            cur,
            'INSERT INTO app."it\'s/a.table" ("id", "user id", "a/b", "x.y", "percent%%", '
            '"quote""d", "émoji 🎉") VALUES %s',
            [
                (
                    i,
                    rng.choice([None, rng.randrange(1, n_users + 1)]),
                    rng.choice(ODD),
                    rng.choice([rng.uniform(-1e6, 1e6), 0.1, -0.0, 1e-300]),
                    rng.randrange(10**12) / 10**6,
                    rng.choice(ODD),
                    "🎉" * rng.randrange(5),
                )
                for i in range(25 if big else 10)
            ],
        )
        execute_values(
            cur,
            "INSERT INTO app.rate_limits (tenant_id, bucket, tokens) VALUES %s",
            [
                (str(tenant_id(i)), bucket, rng.randrange(1000))
                for i in range(n_tenants)
                for bucket in ("api", "export")
            ],
        )
        for _ in range(7 if big else 3):
            cur.execute("INSERT INTO app.heartbeat DEFAULT VALUES")
        for user_id in range(1, n_users + 1, 2):
            cur.execute(
                "INSERT INTO app.profiles (user_id, bio, home, visits, theme) "
                f"VALUES (%s, %s, {_ADDRESS_ROW}, %s, %s)",
                (
                    user_id,
                    rng.choice([None, *ODD]),
                    json.dumps(_address(rng)),
                    rng.randrange(10**6),
                    rng.choice([None, "dark", "light"]),
                ),
            )
