"""One typed settings table. Precedence: defaults < file < FACTBRIDGE_* env < CLI flags.

Nothing is read at import time: `load_settings()` is called by the composition
root (services.py) or the CLI, with the environment passed in explicitly.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from factbridge.errors import ConfigError


def _meta(help: str, parse: Callable[[str], Any] | None = None) -> dict[str, Any]:
    return {"help": help, "parse": parse}


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _opt_float(value: str) -> float | None:
    return None if value.strip() in {"", "none", "auto"} else float(value)


@dataclass(frozen=True)
class Settings:
    data_dir: str = field(default=".factbridge", metadata=_meta("Folder for the embedded database, indexes and caches."))
    storage_url: str = field(default="", metadata=_meta("Database URL: sqlite:///path.db, sqlite:///:memory: or postgresql://... Empty means sqlite in data_dir."))
    queue_url: str = field(default="local://", metadata=_meta("Stream for pipeline work: local:// (in-process) or nats://host:port."))
    org: str = field(default="default", metadata=_meta("Organisation scope used by the CLI."))
    embedder: str = field(default="e5", metadata=_meta("Embedder backend name (entry point in factbridge.embedders): e5, sentence-transformers, hashing."))
    embedder_path: str = field(default="", metadata=_meta("Local model path for embedders that load one (sentence-transformers)."))
    embed_threads: int = field(default=2, metadata=_meta("CPU threads for the bundled embedder.", int))
    embed_batch: int = field(default=16, metadata=_meta("Texts per embedding batch.", int))
    embed_cache: str = field(default="", metadata=_meta("Embedding cache file (text hash -> vector). Empty: data_dir/embeddings.sqlite; 'off' disables."))
    embed_cache_seed: str = field(default="", metadata=_meta("Read-only embedding caches consulted before embedding (os.pathsep-separated files or folders of *.sqlite)."))
    languages: str = field(default="vi,km,fr,en", metadata=_meta("Languages the identifier prefers; others are still reported when confident."))
    match_top_k: int = field(default=5, metadata=_meta("Fact-checks reported per post.", int))
    match_candidates: int = field(default=50, metadata=_meta("Candidates each retriever passes to fusion.", int))
    match_fusion: str = field(default="learned", metadata=_meta("Fusion of lexical and dense rankings: learned (shipped re-ranker), rrf or dense."))
    match_threshold: float | None = field(default=None, metadata=_meta("Fused score for a 'match' decision; empty uses the value tuned on dev data.", _opt_float))
    possible_threshold: float | None = field(default=None, metadata=_meta("Fused score for a 'possible' decision; empty uses the tuned value.", _opt_float))
    match_centering: bool = field(default=True, metadata=_meta("Subtract per-language mean vectors before dense matching (cross-lingual matching).", _bool))
    rrf_k: int = field(default=60, metadata=_meta("Constant k of reciprocal rank fusion.", int))
    linkrisk_protected_domains: str = field(default="", metadata=_meta("Protected (official) domains for look-alike detection: empty = the shipped list, FILE = only FILE, +FILE = shipped list plus FILE (TSV, see data/protected_domains.tsv)."))
    linkrisk_flag_threshold: float = field(default=0.5, metadata=_meta("Link risk score (0..1) at which a link is flagged.", float))
    linkrisk_resolve: bool = field(default=False, metadata=_meta("Follow shortened links (HEAD/GET without body, public addresses only) to score where they lead.", _bool))
    linkrisk_resolve_timeout: float = field(default=3.0, metadata=_meta("Connect and read timeout in seconds for each hop when following shortened links.", float))
    linkrisk_resolve_max_redirects: int = field(default=5, metadata=_meta("Most redirects followed for one shortened link.", int))
    host: str = field(default="127.0.0.1", metadata=_meta("Address `factbridge serve` listens on."))
    port: int = field(default=8765, metadata=_meta("Port `factbridge serve` listens on.", int))
    public_url: str = field(default="", metadata=_meta("Base URL of the public fact-check pages written into ClaimReview; empty: the address the request came in on."))
    rating_scale: str = field(default="True,Mostly true,Mixture,Mostly false,False,Misleading,Unproven,Satire", metadata=_meta("Verdicts editors choose from (comma-separated ClaimReview text ratings)."))
    upload_max_bytes: int = field(default=5_000_000, metadata=_meta("Largest evidence file accepted, in bytes.", int))
    login_rate_limit: str = field(default="5/300", metadata=_meta("Failed sign-ins allowed per account and per client: COUNT/SECONDS."))
    public_rate_limit: str = field(default="5/600", metadata=_meta("Public reports and appeals accepted per client: COUNT/SECONDS."))
    password_hash_time_cost: int = field(default=3, metadata=_meta("Argon2id passes per password hash (raise on fast servers).", int))
    password_hash_memory_kib: int = field(default=65536, metadata=_meta("Argon2id memory per password hash, KiB.", int))
    session_hours: float = field(default=12.0, metadata=_meta("How long a web sign-in lasts.", float))
    log_level: str = field(default="WARNING", metadata=_meta("Python logging level."))

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return f"sqlite:///{Path(self.data_dir) / 'factbridge.db'}"

    @property
    def resolved_embed_cache(self) -> str | None:
        if self.embed_cache == "off":
            return None
        return self.embed_cache or str(Path(self.data_dir) / "embeddings.sqlite")

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


ENV_PREFIX = "FACTBRIDGE_"


def setting_docs() -> list[tuple[str, Any, str]]:
    """(name, default, help) for every setting: the CLI and docs render this table."""
    return [(f.name, f.default, f.metadata["help"]) for f in fields(Settings)]


def _coerce(name: str, raw: Any, source: str) -> Any:
    spec = {f.name: f for f in fields(Settings)}[name]
    parse = spec.metadata.get("parse")
    if not isinstance(raw, str):
        return raw
    try:
        return parse(raw) if parse else raw
    except ValueError as exc:
        raise ConfigError(f"{source}: setting '{name}': {exc}") from exc


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    env = os.environ if env is None else env
    path = Path(config_file) if config_file else None
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        section = data.get("factbridge", data)
        for key, raw in section.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown setting '{key}'")
            values[key] = _coerce(key, raw, str(path))
    for key in known:
        env_key = ENV_PREFIX + key.upper()
        if env_key in env:
            values[key] = _coerce(key, env[env_key], env_key)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise ConfigError(f"unknown setting '{key}'")
        values[key] = _coerce(key, raw, f"--{key.replace('_', '-')}")
    return Settings(**values)
