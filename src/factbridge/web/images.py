"""The images of a post and of the fact-checks its images match, for the signed-in workspace.

Images are served only through a post of the signed-in user's organisation
(`/posts/{id}/images/{n}`, `/posts/{id}/image-matches/{i}`): the content-addressed
store is shared, the right to see an image is not. They go out with their sniffed
type, `nosniff`, a CSP that allows nothing, and never as HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from factbridge.backends.storage.base import DocumentStore
from factbridge.errors import NotFound
from factbridge.images.records import ImageMatch, ImageMatches
from factbridge.web.deps import PageActorDep as ActorDep

router = APIRouter(include_in_schema=False)
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox", "Cache-Control": "private, max-age=3600"}


def image_matches(storage: DocumentStore, org: str, post_id: str) -> list[ImageMatch]:
    return ImageMatches(storage).of_post(org, post_id)


def _stored(request: Request, sha256: str) -> FileResponse:
    from factbridge.images.store import ImageStore

    path = ImageStore(Path(request.app.state.web.services.settings.data_dir) / "images").get(sha256)
    if path is None:
        raise NotFound("image not stored")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lstrip(".")], headers=HEADERS, content_disposition_type="inline")


@router.get("/posts/{post_id}/images/{n}")
def post_image(post_id: str, n: int, request: Request, actor: ActorDep) -> FileResponse:
    post = request.app.state.web.services.storage.get_post(actor.org, post_id)
    if not 0 <= n < len(post.images) or not post.images[n].sha256:
        raise NotFound(f"post {post_id} has no stored image {n}")
    return _stored(request, post.images[n].sha256)


@router.get("/posts/{post_id}/image-matches/{i}")
def matched_factcheck_image(post_id: str, i: int, request: Request, actor: ActorDep) -> FileResponse:
    storage = request.app.state.web.services.storage
    storage.get_post(actor.org, post_id)  # the post must be this organisation's
    matches = image_matches(storage, actor.org, post_id)
    if not 0 <= i < len(matches):
        raise NotFound(f"post {post_id} has no image match {i}")
    return _stored(request, matches[i].factcheck_image_sha256)
