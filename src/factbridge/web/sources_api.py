"""API writes for integrations: posts in (batch, idempotent), match a text without storing
it, ClaimReview fact-checks in, and signed webhooks from partners' systems.

Everything enters through `sources.ingest.ingest_items`, the path of files and
connectors: bad rows come back in the response's quarantine report (and are kept
in the quarantine), the good ones go in; sending the same batch twice changes
nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from factbridge.backends.connectors.files import post_from_mapping
from factbridge.errors import Conflict, InputError, NotAuthenticated, NotFound
from factbridge.models import Post, Quarantined
from factbridge.web.api import ActorDep, WebDep

router = APIRouter(prefix="/api/v1", tags=["api"])

MAX_BATCH = 1000
SIGNATURE_HEADER = "X-FactBridge-Signature"
SIGNATURE_TOLERANCE_S = 300


class PostsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    posts: list[dict[str, Any]] = Field(max_length=MAX_BATCH, description="Posts in the fields `factbridge ingest` reads (id, text, created_at, author, urls, likes, shares, ...).")
    platform: str = Field(default="", max_length=40, description="Platform for posts that do not name one.")
    match: bool = Field(default=True, description="Match the new posts against the fact-check library.")


class MatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)
    language: str | None = Field(default=None, max_length=8)
    top_k: int = Field(default=5, ge=1, le=20)


def _items(rows: list[dict[str, Any]], source: str, platform: str) -> list[Post | Quarantined]:
    items: list[Post | Quarantined] = []
    for n, row in enumerate(rows, start=1):
        try:
            items.append(post_from_mapping(row, source, n, platform))
        except InputError as exc:
            items.append(Quarantined(kind="post", source=source, line=n, field=exc.field, reason=exc.reason,
                                     raw=json.dumps(row, ensure_ascii=False, default=str)[:2000]))
    return items


def _ingest(web: Any, org: str, items: list[Any], source: str, match: bool = True) -> dict[str, Any]:
    from factbridge.sources.ingest import ingest_items

    # the server's background processor runs the stages, never this request
    outcome = ingest_items(web.services, org, items, source, match=match, drain=False)
    return outcome.as_dict()


@router.post("/posts")
def ingest_posts(body: PostsBody, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    """Batch ingest (at most 1000 posts). Idempotent: a post is keyed by its id. The
    `quarantined` list of the report names each rejected row (line = position in `posts`),
    its field and why; the other rows go in and are queued for the pipeline stages
    (`queued`), which run in the background."""
    actor.check("posts.ingest")
    source = f"api:{actor.username}"
    outcome = _ingest(web, actor.org, list(_items(body.posts, source, body.platform)), source, body.match)
    return {**outcome["posts"], "queued": outcome["queued"]}


@router.post("/match")
def match_text(body: MatchBody, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    """Which published fact-checks does this text repeat? Nothing is stored."""
    from factbridge.pipeline.prepare import prepare_post

    services = web.services
    post = prepare_post(Post(id="api-match", text=body.text, language=body.language), services.languages)
    if not services.storage.count_factchecks(actor.org):
        return {"language": post.language, "candidates": [], "decided_by": "", "note": "empty fact-check library"}
    result = services.matcher(actor.org).match_posts([post], with_factchecks=True)[0]
    payload = result.model_dump(mode="json", exclude={"post_id"})
    payload["candidates"] = payload["candidates"][: body.top_k]
    for cand in payload["candidates"]:
        if cand.get("factcheck"):
            cand["factcheck"].pop("raw", None)
    return payload


@router.post("/factchecks")
async def import_claimreview(request: Request, actor: ActorDep, web: WebDep) -> dict[str, Any]:
    """Import schema.org ClaimReview JSON-LD (one node, a list, or an @graph). Upsert by URL;
    new fact-checks are embedded and stored posts near them re-matched."""
    from factbridge.pipeline.library import read_factcheck_text

    actor.check("factchecks.import")
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"body must be ClaimReview JSON: {exc}", source="request body") from exc
    source = f"api:{actor.username}"
    items = list(read_factcheck_text(text, source + ".json", "claimreview"))
    outcome = await run_in_threadpool(_ingest, web, actor.org, items, source)
    return outcome["factchecks"]


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`: returns the signature
    when it is valid and recent, else raises NotAuthenticated."""
    parts = dict(p.strip().partition("=")[::2] for p in header.split(",") if "=" in p)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        raise NotAuthenticated(f"send {SIGNATURE_HEADER}: t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>")
    if abs((now or time.time()) - int(stamp)) > SIGNATURE_TOLERANCE_S:
        raise NotAuthenticated(f"signature timestamp is more than {SIGNATURE_TOLERANCE_S} s away from now")
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise NotAuthenticated("bad signature")
    return given


@router.post("/hooks/{org}/{source}")
async def webhook(org: str, source: str, request: Request, web: WebDep) -> dict[str, Any]:
    """Posts pushed by a partner's system to a `webhook` source (`factbridge sources add NAME
    webhook` gives the secret). Signed, timestamped (±5 min) and each signature accepted once."""
    from factbridge.sources.records import Sources, WebhookSignature, WebhookSignatures
    from factbridge.sources.registry import WEBHOOK

    storage = web.services.storage
    found = Sources(storage).get(org, source)
    if not found or found.removed or found.connector != WEBHOOK or not found.secret:
        raise NotFound(f"no webhook source '{source}'")
    body = await request.body()
    signature = verify_signature(found.secret, request.headers.get(SIGNATURE_HEADER, ""), body)
    nonce = f"{source}:{signature}"
    signatures = WebhookSignatures(storage)
    if signatures.seen(org, [nonce]):
        raise Conflict("this signed request was already received (replay)")
    signatures.put(org, WebhookSignature(nonce, source, time.time()))
    try:
        data = json.loads(body)
        parsed = PostsBody.model_validate(data)
    except ValueError as exc:
        raise InputError(f"body must be {{\"posts\": [...]}}: {exc}", source=f"webhook:{source}") from exc
    label = f"webhook:{source}"
    outcome = await run_in_threadpool(_ingest, web, org, list(_items(parsed.posts, label, parsed.platform)), label, parsed.match)
    return {**outcome["posts"], "queued": outcome["queued"]}
