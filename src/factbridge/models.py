"""Typed records passed between stages. Storage and the API speak these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Decision = Literal["match", "possible", "none"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Engagement(Record):
    likes: int = 0
    shares: int = 0
    comments: int = 0
    views: int = 0
    followers: int = 0

    @property
    def total(self) -> int:
        return self.likes + self.shares + self.comments


class ImageRecord(Record):
    """An image (or a video keyframe) a post or a fact-check carries: where it came from, its stored
    copy (sha256), its perceptual hashes and the text read from it (OCR). See factbridge/images."""

    source: str  # as given: a path (relative to the file that named it) or a URL
    kind: Literal["image", "video_keyframe"] = "image"
    sha256: str = ""  # of the stored bytes; empty when the image was not fetched
    format: str = ""
    width: int = 0
    height: int = 0
    pdq: str = ""
    pdq_quality: int = 0
    phash: str = ""
    dhash: str = ""
    crop_dhash: list[str] = Field(default_factory=list)  # dHashes of inner crops: a cropped copy meets one (images.hashing)
    ocr_text: str = ""  # the text read from the image, shown as such
    ocr_language: str = ""
    ocr_confidence: float | None = None
    decided_by: str = ""  # hash and OCR versions
    note: str = ""  # why it was not fetched or read, when it was not


class Post(Record):
    """A public social post. `author` is a pseudonymous identifier, never a profile."""

    id: str
    platform: str = "unknown"
    author: str = ""
    created_at: datetime | None = None
    text: str
    urls: list[str] = Field(default_factory=list)
    engagement: Engagement = Field(default_factory=Engagement)
    language: str | None = None
    language_confidence: float | None = None
    language_source: Literal["given", "detected"] | None = None
    norm_text: str = ""
    tokens: str = ""
    source: str = ""
    raw: dict[str, Any] = Field(default_factory=dict)
    images: list[ImageRecord] = Field(default_factory=list)

    @property
    def image_text(self) -> str:
        """The text read from the post's images (OCR), one image per paragraph."""
        return "\n\n".join(i.ocr_text for i in self.images if i.ocr_text.strip())


class FactCheck(Record):
    """A published fact-check (the claim reviewed, who reviewed it and the verdict)."""

    id: str
    claim: str
    title: str = ""
    rating: str = ""
    rating_value: float | None = None
    publisher: str = ""
    url: str = ""
    language: str | None = None
    claim_date: datetime | None = None
    published_at: datetime | None = None
    claimant: str = ""
    source_format: str = ""
    norm_text: str = ""
    tokens: str = ""
    raw: dict[str, Any] = Field(default_factory=dict)
    images: list[ImageRecord] = Field(default_factory=list)

    @property
    def passage(self) -> str:
        """The text the dense encoder sees: headline and claim, without repeating one in the other."""
        return passage_text(self.title, self.claim)


def passage_text(title: str, claim: str) -> str:
    title = (title or "").strip()
    claim = (claim or "").strip()
    if title and title.lower() not in claim.lower():
        return f"{title}. {claim}" if claim else title
    return claim or title


class SignalScore(Record):
    """One retriever's view of a candidate."""

    score: float | None = None
    rank: int | None = None


class MatchCandidate(Record):
    factcheck_id: str
    rank: int
    dense: SignalScore = Field(default_factory=SignalScore)
    lexical: SignalScore = Field(default_factory=SignalScore)
    features: dict[str, float] = Field(default_factory=dict)
    fused_score: float
    decision: Decision
    decided_by: str
    duplicates: list[str] = Field(default_factory=list)
    factcheck: FactCheck | None = None


class MatchResult(Record):
    post_id: str | None = None
    language: str | None
    candidates: list[MatchCandidate]
    decided_by: str

    @property
    def best(self) -> MatchCandidate | None:
        return self.candidates[0] if self.candidates else None


class Quarantined(Record):
    source: str
    line: int | None = None
    field: str | None = None
    reason: str
    raw: str = ""
    kind: str = "post"


class ImportReport(Record):
    source: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: list[Quarantined] = Field(default_factory=list)

    def add(self, other: ImportReport) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.quarantined.extend(other.quarantined)
