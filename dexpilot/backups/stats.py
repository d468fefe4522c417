"""Row counts and content digests of a database's tables, read through any DB-API cursor.

A table's digest is the sum (mod 2**256) of the sha256 of each row's ``repr``: independent of
row order (no ORDER BY needed, constant memory), and equal for two databases of one backend
that hold the same rows. It is compared only between a source and its own restored copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_MOD = 2**256
_BATCH = 1000


@dataclass(frozen=True)
class TableStats:
    row_counts: dict[str, int]
    digests: dict[str, str]
    revision: str | None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_stats(cursor: Any, tables: Iterable[str]) -> TableStats:
    """Count and digest ``tables`` with ``cursor`` (all reads in the caller's transaction)."""
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    for table in sorted(tables):
        cursor.execute(f"SELECT * FROM {quote_ident(table)}")
        total, rows = 0, 0
        while batch := cursor.fetchmany(_BATCH):
            for row in batch:
                digest = hashlib.sha256(repr(tuple(row)).encode("utf-8")).digest()
                total = (total + int.from_bytes(digest, "big")) % _MOD
                rows += 1
        counts[table] = rows
        digests[table] = f"{total:064x}"
    revision = None
    if "alembic_version" in counts:
        cursor.execute("SELECT version_num FROM alembic_version")
        found = [str(r[0]) for r in cursor.fetchall()]
        revision = ",".join(sorted(found)) or None
    return TableStats(counts, digests, revision)


def compare(
    expected_counts: dict[str, int],
    expected_digests: dict[str, str],
    expected_revision: str | None,
    actual: TableStats,
    describe: Callable[[str], str] = lambda what: what,
) -> list[str]:
    """Every difference between a manifest and a restored database, one line each."""
    problems: list[str] = []
    for table, count in sorted(expected_counts.items()):
        got = actual.row_counts.get(table)
        if got is None:
            problems.append(describe(f"table {table} is missing (manifest: {count} rows)"))
        elif got != count:
            problems.append(describe(f"table {table} has {got} rows, manifest: {count}"))
        elif table in expected_digests and actual.digests.get(table) != expected_digests[table]:
            problems.append(describe(f"table {table}: row contents differ from the manifest"))
    if actual.revision != expected_revision:
        problems.append(
            describe(f"alembic revision {actual.revision}, manifest: {expected_revision}")
        )
    return problems
