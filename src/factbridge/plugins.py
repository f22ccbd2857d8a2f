"""Backend registries. Built-in backends are declared as entry points in
pyproject.toml exactly like third-party ones (datasette's DEFAULT_PLUGINS idea):
`load_backend("factbridge.storage", "sqlite")` finds both the same way.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from factbridge.errors import ConfigError

# Used only when the package metadata is unavailable (running from a source tree
# that was never installed); kept identical to pyproject.toml, which a test checks.
BUILTIN: dict[str, dict[str, str]] = {
    "factbridge.storage": {
        "sqlite": "factbridge.backends.storage.sqlite:SQLiteStorage",
        "postgresql": "factbridge.backends.storage.postgres:PostgresStorage",
    },
    "factbridge.embedders": {
        "e5": "factbridge.backends.embedders.e5:E5Embedder",
        "hashing": "factbridge.backends.embedders.hashing:HashingEmbedder",
        "sentence-transformers": "factbridge.backends.embedders.sentence_transformers:SentenceTransformersEmbedder",
    },
    "factbridge.connectors": {
        "jsonl": "factbridge.backends.connectors.files:JSONLConnector",
        "csv": "factbridge.backends.connectors.files:CSVConnector",
        "rss": "factbridge.backends.connectors.rss:RSSConnector",
        "claimreview-sitemap": "factbridge.backends.connectors.claimreview_sitemap:ClaimReviewSitemapConnector",
        "telegram-export": "factbridge.backends.connectors.telegram_export:TelegramExportConnector",
        "mastodon": "factbridge.backends.connectors.mastodon:MastodonConnector",
        "bluesky": "factbridge.backends.connectors.bluesky:BlueskyConnector",
        "meta-content-library": "factbridge.backends.connectors.meta_csv:MetaContentLibraryConnector",
        "youtube-comments": "factbridge.backends.connectors.youtube:YouTubeCommentsConnector",
    },
    "factbridge.queues": {
        "local": "factbridge.backends.queue.local:LocalQueue",
        "nats": "factbridge.backends.queue.nats:NatsQueue",
    },
    # pipeline stages (factbridge.pipeline.stages): ordered by their declared needs, not here
    "factbridge.stages": {
        "embedding": "factbridge.pipeline.ingest:EMBEDDING_STAGE",
        "matching": "factbridge.pipeline.ingest:MATCHING_STAGE",
        "linkrisk": "factbridge.linkrisk.stage:STAGE",
        "images": "factbridge.images.processing:STAGE",
        "narratives": "factbridge.pipeline.narratives:STAGE",
        "bursts": "factbridge.pipeline.bursts:STAGE",
        "coordination": "factbridge.pipeline.coordination:STAGE",
        "checkworthiness": "factbridge.pipeline.checkworthiness:STAGE",
        "triage": "factbridge.pipeline.triage:STAGE",
    },
    "factbridge.tiplines": {
        "telegram": "factbridge.tiplines.telegram:TelegramTipline",
        "zalo": "factbridge.tiplines.zalo:ZaloTipline",
    },
}


def available(group: str) -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=group)}
    return found or dict(BUILTIN.get(group, {}))


def load_backend(group: str, name: str) -> Any:
    targets = available(group)
    if name not in targets:
        raise ConfigError(f"no {group.split('.')[-1]} backend named '{name}' (have: {', '.join(sorted(targets))})")
    module, _, attr = targets[name].partition(":")
    return getattr(importlib.import_module(module), attr)
