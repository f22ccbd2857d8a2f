"""Typed records of the images' collection, with its one accessor (the style of
`factbridge.pipeline.records`):

- `image_matches` (written by the images stage, `images.processing.images_stage`): one
  `PostImageMatches` per post with images (key: the post id), its `ImageMatch`es, through
  `ImageMatches`.

`to_doc(from_doc(d)) == d` for every stored document, with the keys in the order they were
always written, so the JSON API's `image_matches` and `factbridge images post --json` are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from factbridge.backends.storage.base import DocumentStore
from factbridge.docfields import integer as _int

IMAGE_MATCHES = "image_matches"


@dataclass(frozen=True)
class ImageMatch:
    """One of a post's images is a near-duplicate of a fact-checked image: both images (source,
    sha256), the distances (dHash bits decide; PDQ and pHash bits as evidence) and the rule."""

    post_image: int
    post_image_source: str
    post_image_sha256: str
    factcheck_id: str
    factcheck_image_source: str
    factcheck_image_sha256: str
    distance: int
    pdq_distance: int
    phash_distance: int
    decision: str  # match | possible
    decided_by: str

    def to_doc(self) -> dict[str, Any]:
        return {"post_image": self.post_image, "post_image_source": self.post_image_source, "post_image_sha256": self.post_image_sha256,
                "factcheck_id": self.factcheck_id, "factcheck_image_source": self.factcheck_image_source,
                "factcheck_image_sha256": self.factcheck_image_sha256, "distance": self.distance, "pdq_distance": self.pdq_distance,
                "phash_distance": self.phash_distance, "decision": self.decision, "decided_by": self.decided_by}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ImageMatch:
        return cls(post_image=_int(doc.get("post_image")), post_image_source=str(doc.get("post_image_source") or ""),
                   post_image_sha256=str(doc.get("post_image_sha256") or ""), factcheck_id=str(doc.get("factcheck_id") or ""),
                   factcheck_image_source=str(doc.get("factcheck_image_source") or ""),
                   factcheck_image_sha256=str(doc.get("factcheck_image_sha256") or ""), distance=_int(doc.get("distance")),
                   pdq_distance=_int(doc.get("pdq_distance")), phash_distance=_int(doc.get("phash_distance")),
                   decision=str(doc.get("decision") or ""), decided_by=str(doc.get("decided_by") or ""))


@dataclass(frozen=True)
class PostImageMatches:
    """The near-duplicates the images stage found for one post's images (none: an empty list)."""

    post_id: str
    matches: list[ImageMatch] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return {"post_id": self.post_id, "matches": [m.to_doc() for m in self.matches]}

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> PostImageMatches:
        matches = doc.get("matches")
        return cls(post_id=str(doc.get("post_id") or post_id),
                   matches=[ImageMatch.from_doc(m) for m in matches if isinstance(m, Mapping)] if isinstance(matches, list) else [])


class ImageMatches:
    """The one accessor of the `image_matches` collection."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, post_ids: Sequence[str]) -> dict[str, PostImageMatches]:
        docs = self.storage.get_docs(org, IMAGE_MATCHES, list(post_ids)) if post_ids else {}
        return {i: PostImageMatches.from_doc(i, d) for i, d in docs.items()}

    def of_post(self, org: str, post_id: str) -> list[ImageMatch]:
        """The post's image matches ([] when its images were not compared or matched nothing)."""
        found = self.get(org, [post_id]).get(post_id)
        return list(found.matches) if found is not None else []

    def put(self, org: str, entries: Sequence[PostImageMatches]) -> None:
        """Store the stage's results (sorted by the number of matches)."""
        self.storage.put_docs(org, IMAGE_MATCHES, [(e.post_id, e.to_doc(), float(len(e.matches))) for e in entries])
