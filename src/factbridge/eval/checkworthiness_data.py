"""Loaders for the check-worthiness sets in ../shared/data/checkworthiness.

* CheckThat! 2022 task 1A (tweets; ar, bg, nl, en, es, tr): TSV with
  topic, tweet_id, tweet_url, tweet_text, class_label (0/1). This copy holds
  train and dev only (the labelled dev_test is kept out of the folder), so
  `dev` is our held-out test for 1A and model selection uses a slice of train.
* CheckThat! 2024 task 1: English (Sentence_id, Text, class_label Yes/No),
  Arabic and Spanish (tweet_id, tweet_url, tweet_text, class_label).
* ClaimBuster (ClaimSpotter two-class train.json): [{sentence_id, label, text}].
* Our own JSONL fixtures: {"text", "language", "label"} per line.

Every example carries the text exactly as the pipeline embeds a post
(`normalize_text` then `strip_urls`), so vectors computed here and vectors
stored by the matching stage are the same thing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from factbridge.errors import InputError
from factbridge.text.normalize import normalize_text
from factbridge.text.urls import strip_urls

csv.field_size_limit(10 * 1024 * 1024)

CLEF2022_LANGUAGES = {"ar": "arabic", "bg": "bulgarian", "nl": "dutch", "en": "english", "es": "spanish", "tr": "turkish"}
CLEF2024_LANGUAGES = {"en": "english", "ar": "arabic", "es": "spanish"}


@dataclass(frozen=True)
class Example:
    text: str  # the embedding text: normalised, links removed
    label: int  # 1 = check-worthy claim
    language: str
    dataset: str  # e.g. "clef2022_1a", "clef2024", "claimbuster", "fixture"
    split: str  # train / dev / test
    source: str  # file:line, for error messages and leakage reports

    @property
    def set_name(self) -> str:
        return f"{self.dataset}/{self.language}/{self.split}"


def post_text(raw: str) -> str:
    """The text the dense encoder sees for a post (pipeline.prepare.embedding_text)."""
    return strip_urls(normalize_text(raw))


def _label(value: str, path: Path, line: int) -> int:
    v = value.strip().lower()
    if v in {"1", "yes", "true"}:
        return 1
    if v in {"0", "no", "false"}:
        return 0
    raise InputError(f"class label must be 0/1 or Yes/No, got {value!r}", source=str(path), line=line, field="class_label")


def read_tsv(path: Path, text_column: str, dataset: str, language: str, split: str) -> list[Example]:
    if not path.exists():
        raise InputError("no such file", source=str(path))
    out: list[Example] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None) or []
        for column in (text_column, "class_label"):
            if column not in header:
                raise InputError(f"missing column '{column}' (header: {header})", source=str(path), line=1, field=column)
        text_at, label_at = header.index(text_column), header.index("class_label")
        for n, row in enumerate(reader, start=2):
            if len(row) <= max(text_at, label_at):
                raise InputError(f"expected {len(header)} columns, got {len(row)}", source=str(path), line=n)
            text = post_text(row[text_at])
            if not text:
                continue  # a tweet that was only a link: nothing to classify
            out.append(Example(text, _label(row[label_at], path, n), language, dataset, split, f"{path.name}:{n}"))
    return out


def read_jsonl(path: str | Path, dataset: str = "fixture", split: str = "test") -> list[Example]:
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", source=str(path))
    out: list[Example] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc.msg}", source=str(path), line=n) from exc
        for key in ("text", "language", "label"):
            if key not in row:
                raise InputError("missing field", source=str(path), line=n, field=key)
        label = row["label"]
        if isinstance(label, bool) or label not in (0, 1, "0", "1", "yes", "no", "Yes", "No"):
            raise InputError(f"label must be 0/1, got {label!r}", source=str(path), line=n, field="label")
        out.append(Example(post_text(str(row["text"])), _label(str(label), path, n), str(row["language"]).lower(), dataset, split, f"{path.name}:{n}"))
    return out


def read_claimbuster(path: Path) -> list[Example]:
    if not path.exists():
        raise InputError("no such file", source=str(path))
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc.msg}", source=str(path), line=exc.lineno) from exc
    out: list[Example] = []
    for n, row in enumerate(rows):
        try:
            text, label = post_text(str(row["text"])), int(row["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad record: {exc}", source=str(path), line=n) from exc
        if text:
            out.append(Example(text, 1 if label == 1 else 0, "en", "claimbuster", "train", f"{path.name}#{n}"))
    return out


@dataclass(frozen=True)
class SetSpec:
    """One labelled file of the shared folder, by its place in our protocol."""

    dataset: str
    language: str
    split: str
    relpath: str
    text_column: str

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.language}/{self.split}"


def shared_sets() -> list[SetSpec]:
    specs: list[SetSpec] = []
    for code, name in CLEF2022_LANGUAGES.items():
        for split in ("dev", "train"):
            specs.append(SetSpec("clef2022_1a", code, split, f"clef2022_t1/1A_checkworthy/CT22_{name}_1A_checkworthy_{split}.tsv", "tweet_text"))
    for code, name in CLEF2024_LANGUAGES.items():
        column = "Text" if code == "en" else "tweet_text"
        for split in ("dev", "train"):
            specs.append(SetSpec("clef2024", code, split, f"clef2024_t1/{name}/{split}.tsv", column))
    return specs


def load_set(root: str | Path, spec: SetSpec) -> list[Example]:
    return read_tsv(Path(root) / spec.relpath, spec.text_column, spec.dataset, spec.language, spec.split)


def iter_available(root: str | Path, split: str | None = None) -> Iterator[tuple[SetSpec, list[Example]]]:
    """Every shared set present under `root` (Spanish 2024 train is absent from this copy)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("check-worthiness data folder not found", source=str(root))
    for spec in shared_sets():
        if split is not None and spec.split != split:
            continue
        if (root / spec.relpath).exists():
            yield spec, load_set(root, spec)
