"""Data for the e-commerce corpus (ecommerce.sql): the same rows for a side on every run.

dev gets the bigger shop; prod an older, smaller one with other customers, products and
orders, its own logins (customer_sessions, preserved) and its own search_log (excluded).
Everything goes through the application's path: inserts into the partitioned parent, the
triggers fire (under the fixed `shop.clock`), statuses are updated afterwards, the
materialized view is refreshed at the end.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta, timezone

import psycopg2.extensions
from psycopg2.extras import execute_values

CLOCK = {"dev": "2024-06-30 12:00:00.123456+00", "prod": "2024-05-31 08:30:00.654321+00"}
REGIONS = ("eu", "us", "apac")
STATUSES = ("pending", "paid", "shipped", "cancelled", "refunded")
# Orders fall in every partition: December 2023 and May/June 2024 go to orders_default.
FIRST = datetime(2023, 12, 1, tzinfo=timezone.utc)
SPAN_SECONDS = int((datetime(2024, 6, 20, tzinfo=timezone.utc) - FIRST).total_seconds())
NAMES = ("Ada", "Grace", "Émile", "Zoë", "O’Brien")
ODD_TEXT = (
    "plain",
    "comma, \"quoted\" and 'single'",
    "tab\there",
    "new\nline and CR\r\nLF",
    "back\\slash \\N not null",
    "ünïcödé – “typographic” ✓ 🎉",
    "",
    "  leading and trailing spaces  ",
)


def _instant(rng: random.Random) -> datetime:
    return FIRST + timedelta(seconds=rng.randrange(SPAN_SECONDS), microseconds=rng.randrange(10**6))


def fill(conn: psycopg2.extensions.connection, side: str, scale: int = 1) -> None:
    rng = random.Random(f"ecommerce-{side}")
    big = side == "dev"
    n_customers = (120 if big else 40) * scale
    n_products = (60 if big else 25) * scale
    n_orders = (900 if big else 300) * scale
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('shop.clock', %s, false)", (CLOCK[side],))

        customers = [
            (
                f"c{i}.{side}@example.com",
                f"{rng.choice(NAMES)} {i}",
                rng.choice(REGIONS),
                _instant(rng),
            )
            for i in range(n_customers)
        ]
        execute_values(
            cur,
            "INSERT INTO customers (email, name, region, created_at) VALUES %s",
            customers,
            template="(%s, %s, %s::region, %s)",
        )

        products = []
        for i in range(n_products):
            explicit = i % 3 != 0  # BY DEFAULT identity: some ids given, some drawn
            pid = 5000 + i * 7 if explicit else None
            history = [rng.randrange(100, 99999) / 100 for _ in range(3)]
            products.append(
                (
                    pid,
                    f"SKU-{side}-{i:05d}",
                    f"Product {i} {rng.choice(ODD_TEXT)}",
                    rng.choice([*ODD_TEXT, None]),
                    round(rng.uniform(0, 2000), 2) if i else 9999999999.99,
                    rng.sample(["new", "sale", "eco", "a,b", 'q"uote', "sp ace", "ünï"], 3),
                    "[0:2]={" + ",".join(f"{h:.2f}" for h in history) + "}",
                    f"{{{{{rng.randrange(1, 99)},{rng.randrange(1, 99)}}},"
                    f"{{{rng.randrange(1, 99)},{rng.randrange(1, 99)}}}}}",
                    json.dumps(
                        {
                            "colour": rng.choice(["red", "blue", None]),
                            "weight_g": rng.randrange(1, 5000),
                            "ratio": rng.random(),
                            "nested": {"list": [1, "two", 3.5, None, True]},
                            "text": rng.choice(ODD_TEXT),
                        }
                    ),
                )
            )
        for p in products:
            if p[0] is None:
                cur.execute(
                    "INSERT INTO products (sku, title, description, price, tags, price_history, "
                    "dimensions, attributes) "
                    "VALUES (%s, %s, %s, %s, %s, %s::numeric[], %s::int[], %s::jsonb)",
                    p[1:],
                )
            else:
                cur.execute(
                    "INSERT INTO products (id, sku, title, description, price, tags, "
                    "price_history, dimensions, attributes) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s::numeric[], %s::int[], %s::jsonb)",
                    p,
                )
        cur.execute("SELECT id FROM products ORDER BY id")
        product_ids = [r[0] for r in cur.fetchall()]

        vouchers = [
            (f"{side.upper()}-{code}", pct, f"[{start},{end})")
            for code, pct, start, end in (
                ("SPRING10", 10, date(2024, 3, 1), date(2024, 6, 1)),
                ("ÉTÉ 20%", 20, date(2024, 6, 1), date(2024, 9, 1)),
                ("WELCOME", 5, date(2023, 1, 1), date(2025, 1, 1)),
                ("VIP/50", 50, date(2024, 1, 1), date(2024, 2, 1)),
            )
        ]
        execute_values(
            cur,
            "INSERT INTO vouchers (code, percent_off, valid_during) VALUES %s",
            vouchers,
            template="(%s, %s, %s::daterange)",
        )

        orders = []
        for _ in range(n_orders):
            sub = rng.randrange(0, 500000) / 100
            orders.append(
                (
                    _instant(rng),
                    rng.randrange(1, n_customers + 1),
                    rng.choice(REGIONS),
                    rng.choice([None, None, None] + [v[0] for v in vouchers]),
                    sub,
                    round(sub * 0.2, 2),
                    rng.choice(
                        [
                            None,
                            json.dumps({"channel": rng.choice(["web", "app"]), "gift": False}),
                            json.dumps({"note": rng.choice(ODD_TEXT), "n": 1e20, "ok": True}),
                        ]
                    ),
                )
            )
        cur.execute("SELECT nextval('orders_id_seq')")  # ids start above 1, as in real life
        execute_values(
            cur,
            "INSERT INTO orders (placed_at, customer_id, region, voucher_code, subtotal, tax, "
            "meta) VALUES %s",
            orders,
            template="(%s, %s, %s::region, %s, %s, %s, %s::jsonb)",
            page_size=200,
        )
        cur.execute("SELECT id, placed_at FROM orders ORDER BY id")
        keys = cur.fetchall()

        items = []
        for order_id, placed_at in keys:
            for line in range(1, rng.randrange(2, 5)):
                items.append(
                    (
                        order_id,
                        placed_at,
                        line,
                        rng.choice(product_ids),
                        rng.randrange(1, 6),
                        rng.randrange(50, 50000) / 100,
                    )
                )
        # A few statements, so the statement-level audit trigger writes a few rows.
        for start in range(0, len(items), 1000):
            execute_values(
                cur,
                "INSERT INTO order_items (order_id, order_placed_at, line, product_id, quantity, "
                "unit_price) VALUES %s",
                items[start : start + 1000],
                page_size=1000,
            )

        # Orders move on: updates fire the BEFORE and AFTER triggers again.
        for order_id, placed_at in keys:
            status = rng.choice(STATUSES)
            if status != "pending":
                cur.execute(
                    "UPDATE orders SET status = %s::order_status WHERE id = %s AND placed_at = %s",
                    (status, order_id, placed_at),
                )
        cur.execute("SELECT id, placed_at FROM orders WHERE status = 'shipped' ORDER BY id")
        shipped = cur.fetchall()
        execute_values(
            cur,
            "INSERT INTO shipments (order_id, order_placed_at, carrier, tracking, shipped_at) "
            "VALUES %s",
            [
                (
                    oid,
                    at,
                    rng.choice(["DHL", "La Poste", "UPS"]),
                    rng.choice([None, f"TRK{rng.randrange(10**9):09d}"]),
                    at + timedelta(days=rng.randrange(1, 5)),
                )
                for oid, at in shipped
            ],
        )
        cur.execute("UPDATE products SET price = price + 1 WHERE id % 5 = 0 AND price < 1000000")

        # Logins, preserved by a sync. prod's reference customers that dev also has (ids from
        # the ALWAYS identity start at 1 on both sides).
        execute_values(
            cur,
            "INSERT INTO customer_sessions (token, customer_id, expires_at) VALUES %s",
            [
                (f"{side}-session-{i}-{rng.getrandbits(64):016x}", i + 1, _instant(rng))
                for i in range(10 if big else 6)
            ],
        )
        execute_values(
            cur,
            "INSERT INTO search_log (query, at) VALUES %s",
            [(f"{side} {rng.choice(ODD_TEXT)}", _instant(rng)) for _ in range(30 if big else 12)],
        )

        # Inheritance: rows in the parent and in both children, sharing events_id_seq.
        for i in range(150 * scale if big else 50 * scale):
            kind = i % 3
            at = _instant(rng)
            customer = rng.choice([None, rng.randrange(1, n_customers + 1)])
            if kind == 0:
                cur.execute(
                    "INSERT INTO events (at, customer_id, kind, payload) VALUES (%s, %s, %s, %s)",
                    (at, customer, "login", json.dumps({"ip": f"10.0.0.{i % 250}"})),
                )
            elif kind == 1:
                cur.execute(
                    "INSERT INTO page_views (at, customer_id, kind, payload, url, referrer) "
                    "VALUES (%s, %s, 'view', NULL, %s, %s)",
                    (at, customer, f"/p/{i}?q=a%20b&x=1", rng.choice([None, "https://ex.com"])),
                )
            else:
                cur.execute(
                    "INSERT INTO cart_events (at, customer_id, kind, payload, product_id, "
                    "quantity) VALUES (%s, %s, 'cart', %s, %s, %s)",
                    (at, customer, "{}", rng.choice(product_ids), rng.randrange(1, 4)),
                )
        # Excluded child of events: each side keeps its own archive.
        for i in range(20 if big else 8):
            cur.execute(
                "INSERT INTO events_archive (at, customer_id, kind, payload, archived_at) "
                "VALUES (%s, NULL, 'archived', %s, %s)",
                (_instant(rng), json.dumps({"side": side, "n": i}), _instant(rng)),
            )
        cur.execute("REFRESH MATERIALIZED VIEW monthly_sales")
