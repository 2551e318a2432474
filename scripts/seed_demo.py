#!/usr/bin/env python3
"""`make seed-demo`: fill a dev database with the seed's marketplace data.

18 searchable builder profiles (Liam's, 5 demo builders, 12 test builders) among 27 users,
with session types, skills, bookings, apps and a little of every other table. Deterministic:
the same --seed gives the same rows, byte for byte. Realistic in every column type: NULLs,
empty arrays, jsonb objects and arrays, jsonb[], numeric with cents, timestamps with
milliseconds, unicode names and an apostrophe in a bio.

The database must be migrated to head (or pass --migrate). The data of the marketplace tables
is replaced in one transaction: on any error nothing changes.

    python scripts/seed_demo.py                       # DEV_DATABASE_URL or local Buildappswith-dev
    python scripts/seed_demo.py --url URL --seed 7
    python scripts/seed_demo.py --stale-prod --url URL   # prod as it was before the first sync
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
from psycopg2.extras import Json

from dbtools.config import redact
from dbtools.errors import DbtoolsError
from dbtools.migrations import apply_all

REPO = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("DBTOOLS_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEV_NAME = "Buildappswith-dev"
PROD_NAME = "Buildappswith-prod"

# Children before parents: the order rows are deleted in; inserted in reverse.
TABLES = [
    "ProjectMilestone",
    "Project",
    "CapabilityRequirement",
    "CapabilityLimitation",
    "CapabilityExample",
    "AICapability",
    "App",
    "UserSkillProgress",
    "SkillResource",
    "BuilderSkill",
    "Skill",
    "AvailabilityException",
    "AvailabilityRule",
    "Booking",
    "SessionType",
    "SubscriberProfile",
    "ClientProfile",
    "BuilderProfile",
    "VerificationToken",
    "Session",
    "Account",
    "User",
]
# Columns whose Python value needs an explicit SQL type (arrays of enums or of jsonb).
CASTS = {
    ("User", "roles"): '"UserRole"[]',
    ("BuilderProfile", "portfolioItems"): "jsonb[]",
}

LIAM_EMAIL = "liam@buildappswith.com"
DEMO_BUILDERS = [
    ("Sofía Martínez", "sofia-martinez", "Full-stack builder for AI-first startups"),
    ("Kenji Tanaka", "kenji-tanaka", "LLM agents and retrieval pipelines"),
    ("Aoife O'Brien", "aoife-obrien", "Product engineer, accessibility nerd"),
    ("Zoë Müller", "zoe-muller", "Automation with no-code and a bit of Python"),
    ("Amara Okafor", "amara-okafor", "Data apps and dashboards that people use"),
]
TEST_FIRST = ["Jordan", "Riley", "Casey", "Morgan", "Avery", "Quinn", "Jamie", "Drew"]
TEST_LAST = ["Lee", "Patel", "García", "Nguyen", "Kowalski", "Smith", "Dubois", "Rossi"]
CLIENTS = [
    "Chloé Dubois",
    "Mateus Silva",
    "Priya Natarajan",
    "Łukasz Nowak",
    "Olivia Chen",
    "Noah Williams",
    "Fatima Al-Sayed",
    "Ethan Brown",
    "Mia Rossi",
]
SKILLS = [
    ("Prompt engineering", "prompt-engineering", "ai", 1),
    ("Retrieval-augmented generation", "rag", "ai", 2),
    ("AI agents", "ai-agents", "ai", 3),
    ("Next.js", "nextjs", "web", 2),
    ("PostgreSQL", "postgresql", "data", 2),
    ("Prisma", "prisma", "data", 1),
    ("Stripe payments", "stripe", "web", 2),
    ("No-code automation", "no-code", "automation", 1),
    ("Python scripting", "python", "automation", 1),
    ("Data visualisation", "dataviz", "data", 2),
    ("Accessibility", "a11y", "web", 1),
    ("Fine-tuning", "fine-tuning", "ai", 3),
]
TIMEZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Europe/Berlin", None]


class SeedError(Exception):
    """The database is not in a state the seeder can fill."""


class _Gen:
    """Deterministic values: ids, timestamps with milliseconds, picks."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.base = datetime(2025, 1, 6, 9, 0, 0)

    def id(self) -> str:
        return "c" + format(self.rng.getrandbits(120), "030x")[:24]

    def ts(self, days: int = 120) -> datetime:
        ms = self.rng.randrange(days * 86_400_000)
        return self.base + timedelta(milliseconds=ms)

    def money(self, lo: int, hi: int) -> Decimal:
        return Decimal(self.rng.randrange(lo * 100, hi * 100)) / 100

    def pick(self, seq: list[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def sample(self, seq: list[Any], k: int) -> list[Any]:
        return self.rng.sample(seq, k)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


def _slug(name: str) -> str:
    table = str.maketrans("áéíóúüöłçñ", "aeiouuolcn")
    out = "".join(c if c.isalnum() else "-" for c in name.lower().translate(table))
    return "-".join(p for p in out.split("-") if p)


def _insert(cur: psycopg2.extensions.cursor, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    marks = ", ".join(f"%s::{CASTS[(table, c)]}" if (table, c) in CASTS else "%s" for c in cols)
    sql = (
        f'INSERT INTO "{table}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)}) '
        f"VALUES ({marks})"
    )
    cur.executemany(sql, [tuple(r[c] for c in cols) for r in rows])


def build(seed: int = 42) -> dict[str, list[dict[str, Any]]]:
    """Every row of the demo data, table by table; the same seed gives the same rows."""
    g = _Gen(seed)
    data: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    users, builders = data["User"], data["BuilderProfile"]

    def user(name: str, email: str, roles: list[str], **extra: Any) -> dict[str, Any]:
        created = g.ts()
        row = {
            "id": g.id(),
            "name": name,
            "email": email,
            "emailVerified": created + timedelta(minutes=7, milliseconds=123)
            if g.chance(0.7)
            else None,
            "image": f"https://images.buildappswith.com/u/{_slug(name)}.png"
            if g.chance(0.75)
            else None,
            "roles": roles,
            "isFounder": False,
            "stripeCustomerId": f"cus_{g.id()[1:15]}" if g.chance(0.4) else None,
            "verified": g.chance(0.6),
            "clerkId": f"user_{g.id()[1:]}" if g.chance(0.8) else None,
            "isDemo": False,
            "createdAt": created,
            "updatedAt": created + timedelta(days=3, milliseconds=g.rng.randrange(1000)),
        }
        row.update(extra)
        users.append(row)
        return row

    def builder(u: dict[str, Any], slug: str, headline: str, **extra: Any) -> dict[str, Any]:
        created = u["createdAt"] + timedelta(hours=1, milliseconds=g.rng.randrange(1000))
        skills = g.sample([s[1] for s in SKILLS], g.rng.randrange(0, 4))
        row = {
            "id": g.id(),
            "userId": u["id"],
            "bio": f"{u['name']} builds useful software with AI.",
            "headline": headline,
            "tagline": g.pick(["Ship it.", "Small apps, big wins", None]),
            "displayName": u["name"],
            "slug": slug,
            "clerkUserId": u["clerkId"],
            "hourlyRate": g.money(40, 220) if g.chance(0.85) else None,
            "rating": round(3.5 + g.rng.random() * 1.5, 2) if g.chance(0.8) else None,
            "responseRate": round(g.rng.random(), 3) if g.chance(0.6) else None,
            "completedProjects": g.rng.randrange(0, 40),
            "validationTier": g.pick([1, 1, 2]),
            "featured": False,
            "featuredBuilder": False,
            "searchable": True,
            "availability": g.pick(["available", "available", "busy", "unavailable"]),
            "availableForHire": g.chance(0.8),
            "adhd_focus": g.chance(0.3),
            "domains": g.sample(["ai", "web", "data", "automation", "mobile"], 2),
            "badges": [] if g.chance(0.5) else ["early-adopter"],
            "topSkills": skills,
            "portfolioItems": [
                json.dumps({"title": f"Project {i + 1}", "url": f"https://example.com/{slug}/{i}"})
                for i in range(g.rng.randrange(0, 3))
            ],
            "socialLinks": Json({"github": f"https://github.com/{slug}"})
            if g.chance(0.6)
            else None,
            "expertiseAreas": Json(skills),
            "schedulingSettings": Json({"bufferMinutes": 15, "timezone": g.pick(TIMEZONES)})
            if g.chance(0.5)
            else None,
            "createdAt": created,
            "updatedAt": created + timedelta(days=1, milliseconds=g.rng.randrange(1000)),
        }
        row.update(extra)
        builders.append(row)
        return row

    liam = user(
        "Liam Jones",
        LIAM_EMAIL,
        ["CLIENT", "BUILDER", "ADMIN"],
        isFounder=True,
        verified=True,
        image="https://images.buildappswith.com/u/liam.png",
    )
    builder(
        liam,
        "liam-jones",
        "Founder of Buildappswith",
        bio="I'm Liam: I've spent a decade helping founders ship their first AI app. "
        "Let's build yours — fast, and without the jargon.",
        validationTier=3,
        featured=True,
        featuredBuilder=True,
        availability="available",
        rating=4.98,
        hourlyRate=Decimal("150.00"),
        badges=["founder", "verified", "mentor"],
        topSkills=["ai-agents", "nextjs", "prompt-engineering"],
    )
    for name, slug, headline in DEMO_BUILDERS:
        u = user(name, f"{slug}@demo.buildappswith.com", ["BUILDER"], isDemo=True)
        builder(u, slug, headline, validationTier=2)
    for i in range(12):
        name = f"{TEST_FIRST[i % 8]} {TEST_LAST[(i * 3) % 8]}"
        u = user(name, f"test-builder-{i + 1:02d}@example.com", ["CLIENT", "BUILDER"])
        builder(u, f"test-builder-{i + 1:02d}", f"Test builder {i + 1}")
    clients = []
    for i, name in enumerate(CLIENTS):
        roles = ["CLIENT", "SUBSCRIBER"] if i % 4 == 0 else ["CLIENT"]
        clients.append(user(name, f"{_slug(name)}@example.org", roles))

    for i, c in enumerate(clients):
        data["ClientProfile"].append(
            {
                "id": g.id(),
                "userId": c["id"],
                "companyName": g.pick(["Acme Ltd", "Nordlicht GmbH", "Café Olé", None]),
                "industry": g.pick(["retail", "health", "education", None]),
                "projectPreferences": Json({"budget": "small", "remote": True}) if i % 2 else None,
                "pathways": Json([] if i % 3 == 0 else ["starter", "builder"]),
                "createdAt": c["createdAt"],
                "updatedAt": c["updatedAt"],
            }
        )
        if "SUBSCRIBER" in c["roles"]:
            data["SubscriberProfile"].append(
                {
                    "id": g.id(),
                    "userId": c["id"],
                    "interests": [] if i == 0 else ["ai", "no-code"],
                    "newsletterFrequency": "weekly" if i else None,
                    "createdAt": c["createdAt"],
                    "updatedAt": c["updatedAt"],
                }
            )

    # Session types: 4 for Liam, 2 per demo builder, 2 for the first four test builders, 1 else.
    per_builder = [4] + [2] * 5 + [2] * 4 + [1] * 8
    for b, n in zip(builders, per_builder, strict=True):
        for k in range(n):
            created = g.ts()
            data["SessionType"].append(
                {
                    "id": g.id(),
                    "builderId": b["id"],
                    "title": ["Intro call", "Build session", "Code review", "Office hours"][k],
                    "description": f"{b['displayName']}: a focused session.",
                    "durationMinutes": [15, 60, 45, 30][k],
                    "price": Decimal("0.00") if k == 0 else g.money(25, 300),
                    "currency": "USD" if k != 3 else "GBP",
                    "isActive": g.chance(0.9),
                    "color": g.pick(["#3b82f6", "#10b981", None]),
                    "maxParticipants": 1 if k != 3 else 12,
                    "requiresAuth": k != 0,
                    "displayOrder": k,
                    "eventTypeCategory": g.pick(["FREE", "PAID", None]),
                    "timeZone": g.pick(TIMEZONES),
                    "isRecurring": None if k == 0 else k == 3,
                    "calendlyEventTypeId": f"evt_{g.id()[1:12]}" if g.chance(0.5) else None,
                    "calendlyEventTypeUri": None,
                    "createdAt": created,
                    "updatedAt": created + timedelta(milliseconds=1),
                }
            )

    for name, slug, domain, level in SKILLS:
        created = g.ts()
        data["Skill"].append(
            {
                "id": g.id(),
                "name": name,
                "slug": slug,
                "description": f"{name} for builders." if level > 1 else None,
                "domain": domain,
                "level": level,
                "prerequisites": [] if level == 1 else ["prompt-engineering"],
                "status": "EMERGING" if slug == "ai-agents" else "ACTIVE",
                "isFundamental": level == 1,
                "pathways": ["starter"] if level == 1 else [],
                "createdAt": created,
                "updatedAt": created,
            }
        )
    skills = data["Skill"]
    for s in skills[:10]:
        data["SkillResource"].append(
            {
                "id": g.id(),
                "skillId": s["id"],
                "title": f"Getting started with {s['name']}",
                "resourceType": g.pick(["ARTICLE", "VIDEO", "EXERCISE", "PROJECT", "ASSESSMENT"]),
                "url": f"https://learn.buildappswith.com/{s['slug']}",
                "description": None if s["level"] == 1 else "Hands-on.",
                "createdAt": s["createdAt"],
                "updatedAt": s["updatedAt"],
            }
        )
    for b in builders:
        for s in g.sample(skills, g.rng.randrange(1, 4)):
            verified = g.chance(0.5)
            data["BuilderSkill"].append(
                {
                    "id": g.id(),
                    "skillId": s["id"],
                    "builderId": b["id"],
                    "proficiency": g.rng.randrange(1, 6),
                    "verified": verified,
                    "verifiedBy": liam["id"] if verified else None,
                    "verifiedAt": g.ts() if verified else None,
                    "createdAt": b["createdAt"],
                    "updatedAt": b["updatedAt"],
                }
            )
    for c in clients[:5]:
        for s in skills[:2]:
            status = g.pick(["NOT_STARTED", "IN_PROGRESS", "COMPLETED"])
            data["UserSkillProgress"].append(
                {
                    "id": g.id(),
                    "userId": c["id"],
                    "skillId": s["id"],
                    "pathway": "starter",
                    "status": status,
                    "completedVia": g.pick(["ASSESSMENT", "AUTO", "MANUAL"])
                    if status == "COMPLETED"
                    else None,
                    "startedAt": None if status == "NOT_STARTED" else g.ts(),
                    "completedAt": g.ts() if status == "COMPLETED" else None,
                    "notes": Json({"score": 87, "tags": ["quick"]})
                    if status == "COMPLETED"
                    else None,
                    "createdAt": c["createdAt"],
                    "updatedAt": c["updatedAt"],
                }
            )

    session_types = data["SessionType"]
    for _ in range(24):
        st = g.pick(session_types)
        start = g.ts().replace(minute=0, second=0, microsecond=0) + timedelta(milliseconds=500)
        client = g.pick(clients) if g.chance(0.85) else None
        status = g.pick(["PENDING", "CONFIRMED", "CANCELLED", "COMPLETED"])
        paid = status in ("CONFIRMED", "COMPLETED") and st["price"] > 0
        data["Booking"].append(
            {
                "id": g.id(),
                "builderId": st["builderId"],
                "clientId": client["id"] if client else None,
                "sessionTypeId": st["id"] if g.chance(0.9) else None,
                "title": st["title"],
                "description": "Let's talk about my app idea" if g.chance(0.5) else None,
                "startTime": start,
                "endTime": start + timedelta(minutes=st["durationMinutes"]),
                "status": status,
                "paymentStatus": "PAID"
                if paid
                else ("REFUNDED" if status == "CANCELLED" else "UNPAID"),
                "amount": st["price"] if st["price"] > 0 else None,
                "stripeSessionId": f"cs_test_{g.id()[1:20]}" if paid else None,
                "calendlyEventId": f"ev_{g.id()[1:10]}" if g.chance(0.5) else None,
                "calendlyInviteeId": None,
                "builderTimezone": g.pick(TIMEZONES),
                "clientTimezone": g.pick(TIMEZONES),
                "customQuestionResponse": Json({"goal": "Launch an MVP", "budget": "€2–5k"})
                if g.chance(0.4)
                else None,
                "pathway": g.pick(["starter", None]),
                "createdAt": start - timedelta(days=5),
                "updatedAt": start - timedelta(days=4, milliseconds=250),
            }
        )

    for b in builders[:6]:
        for day in range(1, 6):
            data["AvailabilityRule"].append(
                {
                    "id": g.id(),
                    "builderId": b["id"],
                    "dayOfWeek": day,
                    "startTime": "09:00",
                    "endTime": "17:30" if day < 5 else "13:00",
                    "isActive": True,
                    "createdAt": b["createdAt"],
                    "updatedAt": b["updatedAt"],
                }
            )
    for b in builders[:4]:
        data["AvailabilityException"].append(
            {
                "id": g.id(),
                "builderId": b["id"],
                "date": g.ts().replace(hour=0, minute=0, second=0, microsecond=0),
                "isAvailable": b is builders[0],
                "slots": Json([{"start": "10:00", "end": "12:00"}]) if b is builders[0] else None,
                "reason": None if b is builders[0] else "Conference",
                "createdAt": b["createdAt"],
                "updatedAt": b["updatedAt"],
            }
        )

    for b in builders[:10]:
        created = g.ts()
        data["App"].append(
            {
                "id": g.id(),
                "builderId": b["id"],
                "title": f"{b['displayName']}'s showcase app",
                "description": "An app built on the platform.",
                "imageUrl": f"https://images.buildappswith.com/apps/{b['slug']}.png"
                if g.chance(0.6)
                else None,
                "technologies": []
                if g.chance(0.2)
                else g.sample(["Next.js", "Prisma", "OpenAI", "Stripe", "Supabase"], 2),
                "status": g.pick(["LIVE", "DEMO", "CONCEPT"]),
                "appUrl": f"https://{b['slug']}.example.app" if g.chance(0.5) else None,
                "adhd_focused": g.chance(0.3),
                "createdAt": created,
                "updatedAt": created,
            }
        )

    for name, domain in [
        ("Summarise documents", "text"),
        ("Draft emails", "text"),
        ("Describe images", "vision"),
    ]:
        created = g.ts()
        cap = {
            "id": g.id(),
            "name": name,
            "domain": domain,
            "description": f"What AI can do: {name.lower()}.",
            "createdById": liam["id"] if domain == "text" else None,
            "createdAt": created,
            "updatedAt": created,
        }
        data["AICapability"].append(cap)
        for table, text in [
            ("CapabilityExample", "Example: a 20-page report in 5 bullet points"),
            ("CapabilityLimitation", "May miss nuance in long documents"),
            ("CapabilityRequirement", "Clear instructions and source text"),
        ]:
            row = {
                "id": g.id(),
                "capabilityId": cap["id"],
                "description": text,
                "createdAt": created,
            }
            if table == "CapabilityExample":
                row = {
                    "id": row["id"],
                    "capabilityId": cap["id"],
                    "title": name,
                    "description": text,
                    "createdAt": created,
                }
            data[table].append(row)

    for cp in data["ClientProfile"][:4]:
        created = g.ts()
        project = {
            "id": g.id(),
            "clientId": cp["id"],
            "title": "Customer portal MVP",
            "description": "A small portal where customers track their orders.",
            "status": g.pick(["DRAFT", "OPEN", "IN_PROGRESS", "COMPLETED", "CANCELLED"]),
            "budget": g.money(500, 9000) if g.chance(0.75) else None,
            "requirements": Json({"features": ["login", "orders"], "deadline": None}),
            "timeline": g.pick(["2 weeks", "1 month", None]),
            "createdAt": created,
            "updatedAt": created,
        }
        data["Project"].append(project)
        for pos in range(2):
            data["ProjectMilestone"].append(
                {
                    "id": g.id(),
                    "projectId": project["id"],
                    "title": ["Prototype", "Launch"][pos],
                    "description": None if pos else "Clickable prototype",
                    "dueDate": created + timedelta(days=14 * (pos + 1)),
                    "completed": pos == 0 and g.chance(0.5),
                    "position": pos,
                    "createdAt": created,
                    "updatedAt": created,
                }
            )

    for u in [liam, *clients[:2]]:
        data["Account"].append(
            {
                "id": g.id(),
                "userId": u["id"],
                "type": "oauth",
                "provider": "google",
                "providerAccountId": str(g.rng.randrange(10**20, 10**21)),
                "refresh_token": None,
                "access_token": f"ya29.{g.id()}",
                "expires_at": 1_767_225_600 + g.rng.randrange(86_400),
                "token_type": "Bearer",
                "scope": "openid email profile",
                "id_token": None,
                "session_state": None,
            }
        )
        data["Session"].append(
            {
                "id": g.id(),
                "sessionToken": g.id() + g.id(),
                "userId": u["id"],
                "expires": g.ts(200),
            }
        )
    for c in clients[-2:]:
        data["VerificationToken"].append(
            {"identifier": c["email"], "token": g.id() + g.id(), "expires": g.ts(200)}
        )
    return data


def _columns(cur: psycopg2.extensions.cursor, table: str) -> set[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    )
    return {r[0] for r in cur.fetchall()}


def _replace(
    conn: psycopg2.extensions.connection, data: dict[str, list[dict[str, Any]]]
) -> dict[str, int]:
    with conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        cur.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in TABLES))
        for table in reversed(TABLES):
            _insert(cur, table, data.get(table, []))
        counts = {}
        for table in TABLES:
            cur.execute(f'SELECT count(*) FROM "{table}"')
            row = cur.fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def seed(url: str, seed: int = 42) -> dict[str, int]:
    """Replace the marketplace data of the database at url (migrated to head); rows per table."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cols = _columns(cur, "User")
        conn.rollback()
        if "image" not in cols:
            raise SeedError(
                'the database is not migrated to head (no "User"."image"); '
                "run `dbtools migrate apply --target dev` or pass --migrate"
            )
        return _replace(conn, build(seed))
    finally:
        conn.close()


def seed_stale_prod(url: str) -> dict[str, int]:
    """Prod as the seed found it before the first sync: Liam alone, wrongly as .ai, and one
    builder profile. Works on a database migrated to 0002 (User."imageUrl") or to head."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            image_col = "image" if "image" in _columns(cur, "User") else "imageUrl"
        conn.rollback()
        created = datetime(2025, 3, 2, 14, 30, 5, 250_000)
        user = {
            "id": "cm8liam0prod0000000000001",
            "name": "Liam Jones",
            "email": "liam@buildappswith.ai",
            "emailVerified": None,
            image_col: "https://images.buildappswith.com/u/liam.png",
            "roles": ["CLIENT", "BUILDER", "ADMIN"],
            "isFounder": True,
            "verified": True,
            "isDemo": False,
            "createdAt": created,
            "updatedAt": created,
        }
        profile = {
            "id": "cm8liam0prof000000000001",
            "userId": user["id"],
            "bio": "I'm Liam.",
            "headline": "Founder of Buildappswith",
            "displayName": "Liam Jones",
            "slug": "liam-jones",
            "hourlyRate": Decimal("150.00"),
            "validationTier": 3,
            "featured": True,
            "searchable": True,
            "topSkills": [],
            "createdAt": created,
            "updatedAt": created,
        }
        return _replace(conn, {"User": [user], "BuilderProfile": [profile]})
    finally:
        conn.close()


def _default_url() -> str:
    direct = os.environ.get("DEV_DATABASE_URL")
    if direct:
        return direct
    p = urlsplit(SERVER)
    return urlunsplit((p.scheme, p.netloc, "/" + DEV_NAME, p.query, ""))


def _ensure_local_database(url: str) -> None:
    name = unquote(urlsplit(url).path.lstrip("/"))
    conn = psycopg2.connect(SERVER)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
                print(f"seed_demo: created database {name}")
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="database URL (default DEV_DATABASE_URL or local dev)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--migrate", action="store_true", help="migrate to head first")
    parser.add_argument(
        "--stale-prod", action="store_true", help="write prod's state before the first sync"
    )
    args = parser.parse_args(argv)
    url = args.url or _default_url()
    if not args.url and not os.environ.get("DEV_DATABASE_URL"):
        _ensure_local_database(url)
    name = unquote(urlsplit(url).path.lstrip("/"))
    if name == PROD_NAME and not args.stale_prod:
        print(
            f"seed_demo: refusing to replace the data of {name}, the prod database", file=sys.stderr
        )
        return 3
    try:
        if args.migrate:
            applied = apply_all(url, REPO / "migrations")
            print(f"seed_demo: applied {', '.join(applied) if applied else 'nothing (at head)'}")
        counts = seed_stale_prod(url) if args.stale_prod else seed(url, args.seed)
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"seed_demo: {redact(first)}", file=sys.stderr)
        return 2
    except (DbtoolsError, SeedError) as exc:
        print(f"seed_demo: {redact(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    total = sum(counts.values())
    print(f"seed_demo: {name}: {total} rows")
    for table, n in counts.items():
        if n:
            print(f"  {table:<24} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
