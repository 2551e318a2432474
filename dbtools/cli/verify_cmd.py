"""`dbtools verify`: pre-flight on dev and prod."""

from __future__ import annotations

from typing import Any

import click

from dbtools import verify as verify_mod
from dbtools.cli.output import Options, common_options, table


def _value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render(report: verify_mod.VerifyReport) -> str:
    out: list[str] = []
    for env, side in report.sides.items():
        out.append(f"== {env}: {side.url or '(no URL)'}  [{side.url_source}]")
        if side.error:
            out.append(f"   unreachable: {side.error}")
            continue
        ident = side.identity or {}
        if side.name_ok:
            mark = "ok"
        elif side.expected_name:
            mark = f"MISMATCH, expected {side.expected_name!r}"
        else:
            mark = f"no expected name: set {env}_database in setup.cfg [dbtools]"
        out.append(f"   database   {ident.get('database')} ({mark})")
        out.append(f"   server     PostgreSQL {ident.get('server_version')}")
        out.append(f"   ssl        {'on' if ident.get('ssl') else 'off'}")
        for w in side.warnings:
            out.append(f"   warning    {w}")
        if side.migrations:
            m = side.migrations
            out.append(
                f"   migrations {len(m.get('applied', []))} applied, "
                f"{len(m.get('pending', []))} pending"
                + (f", DRIFT in {', '.join(m['drift'])}" if m.get("drift") else "")
            )
        shown = [(report.summary_labels.get(k, k), v) for k, v in side.summary.items()]
        if any(v is not None for _, v in shown):  # all n/a: the schema is not there yet
            for i, (label, value) in enumerate(shown):
                out.append(f"   {'summary' if i == 0 else '':<10} {label}: {_value(value)}")
        if side.tables:
            rows = [[k, v] for k, v in side.tables.items()]
            out.append(
                "\n".join("   " + line for line in table(rows, ["table", "rows"]).split("\n"))
            )
        else:
            out.append("   (no tables)")
    if report.distinct is not None:
        out.append(f"dev and prod are {'distinct' if report.distinct else 'THE SAME'} databases")
    if report.problems:
        out.append("problems:")
        out += [f"  - {p}" for p in report.problems]
    else:
        out.append("verify: ok")
    return "\n".join(out)


@click.command()
@common_options()
def verify(opts: Options) -> None:
    """Pre-flight check of dev and prod: reachable, right names, distinct, row counts.

    Each side also shows the project's summary: the `-- summary:` entries of checks/*.sql.

    \b
    Example:
      dbtools verify --json | jq .sides.prod.summary
    """
    report = verify_mod.verify(opts.settings)
    code = verify_mod.exit_code(report)
    if code and not opts.json:
        # The report still goes to stdout; the reason goes to stderr as the one error line.
        opts.fail(render(report), report.problems[0], code)
    opts.emit(report.as_dict(), lambda: render(report), exit_code=code)


COMMANDS = [verify]
