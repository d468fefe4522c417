"""PostgreSQL: ``pg_dump -Fc`` of an exported snapshot; ``pg_restore`` in one transaction.

A REPEATABLE READ transaction exports its snapshot (``pg_export_snapshot``), reads the counts,
digests and revision, and stays open while ``pg_dump --snapshot`` dumps that same snapshot: the
manifest describes exactly the dump, and the bot keeps writing (MVCC) without waiting.

The password never appears on a command line or in a message: the tools get it in
``PGPASSWORD``; everything shown goes through ``redact``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

from dexpilot.backups.errors import BackupFailed, TargetNotEmpty
from dexpilot.backups.stats import TableStats, quote_ident, read_stats
from dexpilot.config import redact_url

PG_BIN_ENV = "DEXPILOT_PG_BIN"
CONNECT_TIMEOUT_S = 10

_TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"


@dataclass(frozen=True)
class PgTarget:
    """One PostgreSQL database, as libpq parameters plus a password kept out of ``conninfo``."""

    url: URL

    @property
    def conninfo(self) -> str:
        params: dict[str, str] = {
            "host": self.url.host or "",
            "port": str(self.url.port or ""),
            "user": self.url.username or "",
            "dbname": self.url.database or "",
            "connect_timeout": str(CONNECT_TIMEOUT_S),
        }
        for key, value in self.url.query.items():
            params[key] = value if isinstance(value, str) else value[-1]
        return make_conninfo(**{k: v for k, v in params.items() if v})

    @property
    def shown(self) -> str:
        return redact_url(self.url.render_as_string(hide_password=True))

    @property
    def database(self) -> str:
        return self.url.database or ""

    def with_database(self, name: str) -> PgTarget:
        return PgTarget(self.url.set(database=name))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.url.password:
            env["PGPASSWORD"] = str(self.url.password)
        return env

    def redact(self, text: str) -> str:
        password = str(self.url.password or "")
        return text.replace(password, "***") if password else text

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
        try:
            return psycopg.connect(
                self.conninfo,
                password=str(self.url.password) if self.url.password else None,
                autocommit=autocommit,
                options="-c TimeZone=UTC",
            )
        except psycopg.Error as exc:
            raise BackupFailed(
                f"PostgreSQL {self.shown} is unreachable or refused: {self.describe_error(exc)}"
            ) from None

    def describe_error(self, exc: BaseException) -> str:
        text = self.redact(str(exc)).strip()
        return text.splitlines()[0] if text else type(exc).__name__


def find_pg_tool(name: str) -> Path:
    """``pg_dump``/``pg_restore``: from $DEXPILOT_PG_BIN, Debian's newest, or PATH."""
    candidates: list[Path] = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]) / name)
    # Newest first: pg_dump must be at least as new as the server it dumps.
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(Path(p) / name for p in debian)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise BackupFailed(
        f"{name} not found: install the PostgreSQL client (apt-get install postgresql-client) "
        f"or point {PG_BIN_ENV} at its bin directory"
    )


def tool_version(tool: Path) -> str:
    result = subprocess.run([str(tool), "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or tool.name


def _run(tool: Path, args: list[str], target: PgTarget, what: str) -> None:
    result = subprocess.run(
        [str(tool), *args], capture_output=True, text=True, env=target.env(), check=False
    )
    if result.returncode != 0:
        detail = target.redact((result.stderr or result.stdout).strip())[-2000:]
        raise BackupFailed(f"{what} of {target.shown} failed (exit {result.returncode}): {detail}")


def backup_postgres(
    target: PgTarget, partial: Path, on_snapshot: Callable[[], None] | None = None
) -> tuple[TableStats, str]:
    """Dump ``target`` into ``partial``; returns the snapshot's stats and pg_dump's version."""
    pg_dump = find_pg_tool("pg_dump")
    with target.connect() as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                row = cur.fetchone()
                assert row is not None
                snapshot = str(row[0])
                cur.execute(_TABLES_SQL)
                tables = [str(r[0]) for r in cur.fetchall()]
                stats = read_stats(cur, tables)
            if on_snapshot is not None:
                on_snapshot()
            _run(
                pg_dump,
                ["--format=custom", f"--snapshot={snapshot}", f"--file={partial}",
                 f"--dbname={target.conninfo}"],
                target,
                "pg_dump",
            )
        except psycopg.Error as exc:
            raise BackupFailed(
                f"reading {target.shown} for a backup failed: {target.describe_error(exc)}"
            ) from None
        finally:
            conn.rollback()
    with partial.open("rb+") as handle:
        os.fsync(handle.fileno())
    return stats, tool_version(pg_dump)


def tables_of(target: PgTarget) -> list[str]:
    with target.connect(autocommit=True) as conn:
        return sorted(str(r[0]) for r in conn.execute(_TABLES_SQL).fetchall())


def postgres_stats(target: PgTarget) -> TableStats:
    with target.connect() as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            with conn.cursor() as cur:
                cur.execute(_TABLES_SQL)
                return read_stats(cur, [str(r[0]) for r in cur.fetchall()])
        finally:
            conn.rollback()


def restore_postgres(backup: Path, target: PgTarget, *, force: bool) -> None:
    """``pg_restore`` into ``target`` in one transaction (all or nothing).

    A non-empty target is refused unless ``force``; with ``force`` the dump's objects are
    dropped first (``--clean --if-exists``), in the same transaction.
    """
    pg_restore = find_pg_tool("pg_restore")
    existing = tables_of(target)
    if existing and not force:
        raise TargetNotEmpty(
            f"restore target {target.shown} is not empty (tables: {', '.join(existing)}); "
            "nothing was changed. Pass --force to overwrite it."
        )
    args = ["--no-owner", "--single-transaction", "--exit-on-error"]
    if existing:
        args += ["--clean", "--if-exists"]
    _run(pg_restore, [*args, f"--dbname={target.conninfo}", str(backup)], target, "pg_restore")


@contextmanager
def scratch_database(server: PgTarget) -> Iterator[PgTarget]:
    """A new empty database on ``server``'s PostgreSQL, dropped (connections and all) after."""
    name = f"dexpilot_verify_{uuid.uuid4().hex[:12]}"
    with server.connect(autocommit=True) as conn:
        try:
            conn.execute(f"CREATE DATABASE {quote_ident(name)}")
        except psycopg.Error as exc:
            raise BackupFailed(
                f"cannot create the scratch database on {server.shown} (the user needs "
                f"CREATEDB): {server.describe_error(exc)}"
            ) from None
    try:
        yield server.with_database(name)
    finally:
        with server.connect(autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
