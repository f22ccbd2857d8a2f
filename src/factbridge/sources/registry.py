"""Configured sources: a connector, its options, a schedule and the cursor where it stopped.

One document per source in the org-scoped `sources` collection (`SourceRecord`, read and
written through `Sources`: factbridge.sources.records). `run_source`
fetches from the stored cursor, sends the items through `ingest_items` (the one
ingest path), and only then stores the next cursor: a crash between the two
refetches the same items, which ingest ignores (idempotent), so nothing is lost
or doubled. `run_due` runs every source whose interval has passed (the scheduler
in `factbridge worker` and `factbridge sources run --due`).

A `webhook` source has no connector: partners push posts to
`POST /api/v1/hooks/{org}/{source}` signed with the source's secret.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from factbridge.errors import ConfigError, FactBridgeError, InputError, NotFound
from factbridge.plugins import available, load_backend
from factbridge.pseudonyms import Pseudonymizer
from factbridge.sources.records import SOURCES as SOURCES  # re-exported: where it was
from factbridge.sources.records import SourceRecord, Sources

WEBHOOK = "webhook"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
MAX_PAGES_PER_RUN = 20


def _now() -> datetime:
    return datetime.now(UTC)


def connector_kinds() -> list[str]:
    return sorted([*available("factbridge.connectors"), WEBHOOK])


def build_connector(services: Any, kind: str, options: dict[str, Any]) -> Any:
    cls = load_backend("factbridge.connectors", kind)
    params = inspect.signature(cls).parameters
    kwargs = dict(options)
    if "pseudonymize" in params:
        kwargs["pseudonymize"] = Pseudonymizer.for_data_dir(services.settings.data_dir)
    unknown = [k for k in kwargs if k not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values())]
    if unknown:
        allowed = [p for p in params if p not in {"self", "pseudonymize"}]
        raise InputError(f"unknown option(s) {', '.join(unknown)} for connector '{kind}' (has: {', '.join(allowed)})", field="options")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"connector '{kind}': {exc}", field="options") from exc


def add_source(services: Any, org: str, name: str, kind: str, options: dict[str, Any], interval_s: float = 3600.0) -> SourceRecord:
    sources = Sources(services.storage)
    if not NAME.match(name):
        raise InputError("source names are 1-40 characters: lower-case letters, digits, '_', '-', '.'", field="name")
    existing = sources.get(org, name)
    if existing and not existing.removed:
        raise InputError(f"a source named '{name}' exists (remove it first)", field="name")
    if interval_s < 10:
        raise InputError("interval must be at least 10 seconds", field="interval")
    record = SourceRecord(name, kind, options, float(interval_s), created_at=_now().isoformat())
    if kind == WEBHOOK:
        record = record.with_(secret=secrets.token_hex(32))
    elif kind not in available("factbridge.connectors"):
        raise InputError(f"no connector '{kind}' (have: {', '.join(connector_kinds())})", field="connector")
    else:
        build_connector(services, kind, options)  # options are checked now, not at the first run
    sources.put(org, record)
    return record


def list_sources(storage: Any, org: str) -> list[SourceRecord]:
    return sorted((s for s in Sources(storage).iter(org) if not s.removed), key=lambda s: s.name)


def get_source(storage: Any, org: str, name: str) -> SourceRecord:
    found = Sources(storage).get(org, name)
    if found is None or found.removed:
        raise NotFound(f"no source '{name}' in org '{org}'")
    return found


def remove_source(storage: Any, org: str, name: str) -> None:
    """Stops fetching; what the source brought in stays (FactBridge never deletes content)."""
    source = get_source(storage, org, name)
    Sources(storage).put(org, source.with_(removed=True, removed_at=_now().isoformat(), secret=None))


def run_source(services: Any, org: str, name: str, max_pages: int = MAX_PAGES_PER_RUN) -> dict[str, Any]:
    """Fetch from the cursor until the connector has nothing new (or `max_pages` pages)."""
    from factbridge.sources.ingest import ingest_items

    sources = Sources(services.storage)
    source = get_source(services.storage, org, name)
    if source.connector == WEBHOOK:
        raise ConfigError(f"source '{name}' is a webhook: partners push to it, nothing to fetch")
    connector = build_connector(services, source.connector, source.options)
    started = time.perf_counter()
    summary = {"posts_new": 0, "posts_updated": 0, "posts_unchanged": 0, "factchecks_new": 0, "factchecks_updated": 0, "quarantined": 0, "pages": 0}
    cursor = source.cursor
    status, error = "ok", None
    try:
        # a polite crawler fetches its own page budget once per run (pages_per_run = 1)
        for _ in range(min(max_pages, int(getattr(connector, "pages_per_run", max_pages)))):
            items, next_cursor = connector.fetch(cursor)
            outcome = ingest_items(services, org, items, source=f"source:{name}")
            summary["pages"] += 1
            summary["posts_new"] += outcome.posts.inserted
            summary["posts_updated"] += outcome.posts.updated
            summary["posts_unchanged"] += outcome.posts.unchanged
            summary["factchecks_new"] += outcome.factchecks.inserted
            summary["factchecks_updated"] += outcome.factchecks.updated
            summary["quarantined"] += len(outcome.posts.quarantined) + len(outcome.factchecks.quarantined)
            advanced = next_cursor is not None and next_cursor != cursor
            if next_cursor is not None:
                cursor = next_cursor
                source = dataclasses.replace(source, cursor=cursor)
                sources.put(org, source)  # stored items first, then the cursor
            if not items or not advanced:
                break
    except FactBridgeError as exc:
        status, error = "error", str(exc)
    except OSError as exc:  # network and file errors: recorded, retried at the next interval
        status, error = "error", f"{type(exc).__name__}: {exc}"
    totals = dict(source.totals)
    totals["posts"] = totals.get("posts", 0) + summary["posts_new"]
    totals["factchecks"] = totals.get("factchecks", 0) + summary["factchecks_new"]
    totals["quarantined"] = totals.get("quarantined", 0) + summary["quarantined"]
    totals["runs"] = totals.get("runs", 0) + 1
    sources.put(org, source.with_(cursor=cursor, last_run_at=_now().isoformat(), last_status=status, last_error=error,
                                  last_summary=summary, totals=totals))
    return {"name": name, "status": status, "error": error, "seconds": round(time.perf_counter() - started, 3), **summary}


def due_sources(storage: Any, org: str, now: datetime | None = None) -> list[str]:
    now = now or _now()
    due = []
    for source in list_sources(storage, org):
        if source.connector == WEBHOOK:
            continue
        last = source.last_run_at
        if last is None or (now - datetime.fromisoformat(last)).total_seconds() >= (source.interval_s or 3600):
            due.append(source.name)
    return due


def run_due(services: Any, org: str, on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    results = []
    for name in due_sources(services.storage, org):
        result = run_source(services, org, name)
        results.append(result)
        if on_result:
            on_result(result)
    return results


class SourceScheduler:
    """Runs due sources every `tick_s` seconds in a thread (inside `factbridge worker`), of one
    organisation or (org None) of every organisation the installation knows.
    Several workers may each run one: a source fetched twice is ingested once (idempotent)."""

    def __init__(self, services: Any, org: str | None, stop: threading.Event, tick_s: float = 30.0,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.services, self.org, self.stop, self.tick_s, self.on_result = services, org, stop, tick_s, on_result
        self.runs = 0

    def run(self) -> None:
        import logging

        while not self.stop.is_set():
            try:
                from factbridge.pipeline.process import known_orgs

                for org in [self.org] if self.org else known_orgs(self.services):
                    self.runs += len(run_due(self.services, org, self.on_result))
            except Exception:  # a connector's bug must not stop the schedule: logged with its traceback
                logging.getLogger(__name__).exception("source scheduler: a run failed")
            self.stop.wait(self.tick_s)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="factbridge-sources", daemon=True)
        thread.start()
        return thread


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; numbers and true/false become numbers and booleans."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"options are KEY=VALUE, got '{item}'", field="option")
        v: Any = value.strip()
        if v.lower() in {"true", "false"}:
            v = v.lower() == "true"
        elif re.fullmatch(r"-?\d+", v):
            v = int(v)
        elif re.fullmatch(r"-?\d+\.\d*", v):
            v = float(v)
        out[key.strip().replace("-", "_")] = v
    return out
