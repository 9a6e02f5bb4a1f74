"""Versioned schema migrations: ``migrations/NNNN_name.sql`` applied once each, in order.

Applied versions are recorded in ``ledger_migrations`` with a checksum of the file; an edited,
already-applied migration is refused (write a new one instead). A session-level advisory lock
serialises migrators, so several pods starting at once apply each migration exactly once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

#: Directory of the versioned SQL files shipped with the package.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Advisory lock key of the migrator (any constant; unique within the database).
MIGRATION_LOCK = 0x1ED6E4
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's migration history does not match the shipped files."""


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text, recorded when applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory``, by version; refuses gaps, duplicates and odd names.

    No file at all is an error too: a package built without its ``*.sql`` files would
    otherwise report "none pending" and leave the database without its tables.
    """
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    if not found:
        raise MigrationError(f"no migration files (NNNN_name.sql) in {directory}")
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..n without gaps, got {versions}")
    return found


def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the pending migrations; return the versions this call applied (may be none)."""
    migrations = discover(directory)
    applied_now: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ledger_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT version, checksum FROM ledger_migrations").fetchall()
            done = {int(version): str(checksum) for version, checksum in rows}
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was edited "
                            "after it was applied; add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO ledger_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now


def applied_versions(url: str) -> list[int]:
    """The versions recorded in the database (empty before the first migration)."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('ledger_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = conn.execute("SELECT version FROM ledger_migrations ORDER BY version").fetchall()
        return [int(row[0]) for row in rows]
