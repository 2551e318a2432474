"""Declarative SQL from checks/*.sql: what "prod is right" means, and what to show, as data.

File format (every *.sql file in settings.checks_dir, in name order)::

    -- check: orders_copied
    -- description: every order is in prod, as many as in dev
    -- expect: = dev
    -- expect: > 0
    SELECT count(*) FROM orders;

    -- summary: open_orders
    -- description: open orders
    SELECT count(*) FROM orders WHERE status = 'open';

    -- list: customers
    -- description: every customer (name, email)
    SELECT name, email FROM customers ORDER BY name;

An entry starts at a ``-- check: <name>``, ``-- summary: <name>`` or ``-- list: <name>``
line; the ``-- key: value`` lines right below it are its header, everything after that up to
the next entry is its query (one statement). Names are unique per kind. A check's header
keys:

- ``description``: one line for people;
- ``expect``: one or more expectations, all of which must hold. Grammar:
  ``[rows] OP RHS`` with OP one of ``= != <> > >= < <=`` and RHS a number, ``true``,
  ``false``, ``'text'`` or ``dev``. Without ``rows`` the query must return one row of one
  column and that value is compared; with ``rows`` the number of rows returned is. ``dev``
  runs the same query on dev (read-only) and compares with its value; ``= dev`` on a query
  returning several rows compares the whole result;
- ``builtin``: a check computed in Python rather than SQL. ``schema_matches_dev`` compares
  the target's schema fingerprint and applied migration ids with dev's.

A query that fails (missing column, ...) makes its check fail with the database's message: a
listing that cannot be read is a failure, never an empty list.

A ``summary`` entry is one line of `dbtools verify` for each side: its ``description`` (else
its name) and the one value its query returns; in ``verify --json`` it is
``sides.<env>.summary.<name>``. On a side whose schema lacks a schema, table or column the
query names, its value is None (n/a), never a zero; any other failure is a warning. A
``list`` entry is a table `dbtools check --list <name>` prints (its rows, its columns as the
query names them). Both take only ``description`` and are held to the same rules as a check:
validated when loaded, run read-only under a savepoint that is always rolled back.

A check (and a summary or list entry) is exactly one read-only query, because sync-data runs
the checks inside its load transaction on prod: a check must not be able to end, commit or
write that transaction.
Two defences, so that neither alone has to be perfect:

- statically, when the file is loaded (`load_checks`, which a writer calls before its backup
  and first write, so a bad file costs nothing; `run_checks` validates again): the query is
  parsed with PostgreSQL's own parser (pglast) and must be one SELECT, VALUES or TABLE
  statement, without ``INTO``, without INSERT/UPDATE/DELETE/MERGE in a WITH, without a locking
  clause (``FOR UPDATE``/``FOR SHARE``: a row lock writes the row's header and is refused in a
  read-only transaction, so such a check could never run under `dbtools check`), and without a
  call to a function whose effect outlives the query or reaches beyond it (advisory locks,
  which a savepoint does not release and whose ``pg_advisory_unlock_all()`` would drop
  dbtools' own sync lock; ``set_config``; sequences; ``pg_notify``; functions that act on
  other sessions, the server, replication, large objects or files; ``dblink``). COMMIT,
  ROLLBACK, SAVEPOINT, SET, DO, CALL, COPY, LOCK, PREPARE, LISTEN, ... are not SELECTs, and a
  second statement after a ``;`` is refused whatever it is; text in comments, strings and
  dollar quotes is what the parser says it is, never a statement. A refusal is one line naming
  the file, the line and the check (exit 2).
- at run time (`run_checks`), because a function the query calls can still try to write: each
  check runs under a SAVEPOINT with ``SET LOCAL transaction_read_only = on`` (allowed inside a
  subtransaction even after the outer transaction has written; the savepoint's rollback turns
  it off again) and ``standard_conforming_strings = on`` (the parser's reading of backslashes
  in strings, so a server set otherwise cannot split the text into other statements). The
  savepoint is always rolled back, and the transaction's identity (transaction id, start time)
  and the session's state (user, advisory locks, prepared statements, LISTEN channels) are
  compared before and after. A check that tried to write, or changed any of these, stops the
  run with `UnsafeCheck` (exit 2) naming it; the caller rolls its transaction back.

Beyond both: a function of the database's own that reaches outside its transaction (through
dblink, a foreign server, a file) does what it does; only the database's owner can prevent it.

One failing query does not poison the load: its savepoint is rolled back and its check fails.

One module per part: `model` (Check, Expectation, results), `read_only` (the pglast rule),
`files` (checks/*.sql parsed and loaded), `run` (running them in read-only savepoints),
`summary` (verify's summary and `check --list`). Callers import the package as `checks`.
"""

from dbtools.checks.files import (
    load_checks,
    load_entries,
    load_list,
    load_summary,
    parse_checks,
    parse_entries,
    parse_expectation,
)
from dbtools.checks.model import (
    BUILTINS,
    KINDS,
    Check,
    CheckReport,
    CheckResult,
    Expectation,
    UnsafeCheck,
)
from dbtools.checks.read_only import READ_ONLY_QUERY, read_only_problem
from dbtools.checks.run import run_checks, run_checks_on, set_read_only
from dbtools.checks.summary import Listing, Summary, run_list, summarize

__all__ = [
    "BUILTINS",
    "KINDS",
    "READ_ONLY_QUERY",
    "Check",
    "CheckReport",
    "CheckResult",
    "Expectation",
    "Listing",
    "Summary",
    "UnsafeCheck",
    "load_checks",
    "load_entries",
    "load_list",
    "load_summary",
    "parse_checks",
    "parse_entries",
    "parse_expectation",
    "read_only_problem",
    "run_checks",
    "run_checks_on",
    "run_list",
    "set_read_only",
    "summarize",
]
