"""Data for the media corpus (media.sql): the same rows for a side on every run.

scale 1: dev holds three bytea values of 5 MB and two texts of about 4.5 MB (every one a row
far above the export's 4 MB CSV block), prod one 5 MB value of its own. scale >= 2 (the slow
variant) adds to dev one bytea of 24 MB and one text of 21 MB.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.extensions
from psycopg2.extras import execute_values

MB = 1 << 20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE = datetime(2022, 6, 1, tzinfo=timezone.utc)
# What a text COPY and a CSV must escape or quote, mixed with multi-byte letters.
PIECES = (
    "word ",
    "Zürich ",
    "東京 ",
    "🎞️ ",
    "\\",
    "\\N",
    "\t",
    "\n",
    "\r\n",
    '"',
    "'",
    ",",
    ";",
    "\\.",
    "lorem ipsum dolor sit amet ",
)


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    total = 0
    while total < size:
        piece = rng.choice(PIECES)
        out.append(piece)
        total += len(piece.encode())
    return "".join(out)


def _folders(rng: random.Random, side: str, count: int) -> list[tuple[int, int | None, str]]:
    """A tree: every folder's parent is created before it, but ids are shuffled, so children
    often carry smaller ids than their parents."""
    ids = rng.sample(range(1, count * 10), count)
    rows: list[tuple[int, int | None, str]] = []
    for n, fid in enumerate(ids):
        parent = None if n == 0 else rows[rng.randrange(n)][0]
        rows.append((fid, parent, f"{side} folder {n} {rng.choice(PIECES).strip() or 'x'}"))
    return rows


def _asset(
    rng: random.Random, folder: int, name: str, content: bytes | None, transcript: str | None
) -> tuple:
    return (
        folder,
        name,
        rng.choice(["image/png", "video/mp4", "audio/ogg", "application/octet-stream"]),
        None if content is None else psycopg2.Binary(content),
        None if content is None else psycopg2.Binary(hashlib.sha256(content).digest()),
        transcript,
        BASE + timedelta(seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6)),
    )


def fill(conn: psycopg2.extensions.connection, side: str, scale: int = 1) -> None:
    rng = random.Random(f"media-{side}")
    big = side == "dev"
    folders = _folders(rng, side, 40 if big else 12)
    with conn.cursor() as cur:
        for fid, parent, name in folders:
            cur.execute(
                "INSERT INTO folders (id, parent_id, name) VALUES (%s, %s, %s)", (fid, parent, name)
            )
        folder_ids = [f[0] for f in folders]
        assets = []
        if big:
            for i in range(3):
                content = rng.randbytes(5 * MB)
                assets.append(_asset(rng, rng.choice(folder_ids), f"clip {i}.mp4", content, None))
            for i in range(2):
                assets.append(
                    _asset(
                        rng,
                        rng.choice(folder_ids),
                        f"talk {i}.ogg",
                        rng.randbytes(64 * 1024),
                        _text(rng, 4 * MB + MB // 2),
                    )
                )
            if scale >= 2:
                assets.append(
                    _asset(rng, rng.choice(folder_ids), "film.mkv", rng.randbytes(24 * MB), None)
                )
                assets.append(
                    _asset(rng, rng.choice(folder_ids), "book.txt", None, _text(rng, 21 * MB))
                )
        else:
            assets.append(
                _asset(rng, rng.choice(folder_ids), "prod clip.mp4", rng.randbytes(5 * MB), None)
            )
        for i in range(25 if big else 6):
            assets.append(
                _asset(
                    rng,
                    rng.choice(folder_ids),
                    f"photo {i}.png",
                    rng.choice([None, b"", rng.randbytes(rng.randrange(1, 200_000))]),
                    rng.choice([None, "", _text(rng, 300)]),
                )
            )
        for row in assets:
            cur.execute(
                "INSERT INTO assets (folder_id, filename, mime_type, content, sha256, transcript, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                row,
            )
        cur.execute("SELECT id FROM assets ORDER BY id")
        asset_ids = [r[0] for r in cur.fetchall()]
        execute_values(
            cur,
            "INSERT INTO thumbnails (asset_id, size, png) VALUES %s",
            [
                (
                    aid,
                    size,
                    psycopg2.Binary(PNG_MAGIC + rng.randbytes(rng.randrange(100, 20000))),
                )
                for aid in asset_ids
                for size in (64, 128, 256)
                if rng.random() < 0.8
            ],
        )
        # Preserved: prod's links point at assets 1..4, which dev has too.
        execute_values(
            cur,
            "INSERT INTO share_links (token, asset_id, expires_at) VALUES %s",
            [
                (
                    f"{side}-{rng.getrandbits(80):020x}",
                    rng.randrange(1, 5),
                    BASE + timedelta(days=rng.randrange(1000)),
                )
                for _ in range(5 if big else 3)
            ],
        )
