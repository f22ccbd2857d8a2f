"""The images of a post in the workspace and the API: the text read from them, shown as such and
escaped; the near-duplicate fact-checked image beside the post's, with the distances; images served
only through a post of the signed-in user's organisation, never sniffable as HTML."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from webenv import ORG_A, WebEnv

from factbridge.images.processing import ImageProcessor, images_stage
from factbridge.pipeline.ingest import import_factcheck_files, ingest_file

IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images" / "img"


def _seed(env: WebEnv, tmp_path: Path) -> None:
    services = env.services
    shutil.copy(IMAGES / "vi-05.png", tmp_path / "notice.png")
    shutil.copy(IMAGES / "vi-05-resize.jpg", tmp_path / "shared.jpg")
    review = {"@type": "ClaimReview", "url": "https://check.example.org/fc/banknote", "claimReviewed": "A new 1 million dong banknote",
              "reviewRating": {"alternateName": "False"}, "image": {"@type": "ImageObject", "contentUrl": "notice.png"}}
    (tmp_path / "fc.json").write_text(json.dumps(review), encoding="utf-8")
    processor = ImageProcessor(data_dir=Path(services.settings.data_dir), ocr=False)
    import_factcheck_files(services.storage, ORG_A, [tmp_path / "fc.json"], services.languages, images=processor)
    (tmp_path / "posts.jsonl").write_text(json.dumps({"id": "img-post", "author": "acct-9", "images": ["shared.jpg"]}) + "\n", encoding="utf-8")
    posts = ingest_file(services.storage, ORG_A, tmp_path / "posts.jsonl", services.languages, images=processor).posts
    # OCR is tested in tests/test_images.py; here the text read is set, with markup in it, to see it escaped
    post = posts[0]
    post = post.model_copy(update={"images": [post.images[0].model_copy(update={"ocr_text": "Tin nóng <script>alert(1)</script>", "ocr_language": "vi"})]})
    services.storage.upsert_posts(ORG_A, [post])
    images_stage(services, ORG_A, [post])


def test_post_page_and_api_show_images_text_and_matches(env: WebEnv, tmp_path: Path) -> None:
    _seed(env, tmp_path)
    page = env.login("a-viewer").get("/posts/img-post")
    assert page.status_code == 200
    assert "Text read from the image" in page.text and "Tin nóng &lt;script&gt;" in page.text and "<script>alert" not in page.text
    assert "https://check.example.org/fc/banknote" in page.text and "image-match-1" in page.text
    client = env.login("a-viewer")
    own = client.get("/posts/img-post/images/0")
    assert own.status_code == 200 and own.headers["content-type"] == "image/jpeg" and own.headers["x-content-type-options"] == "nosniff"
    assert own.content == (tmp_path / "shared.jpg").read_bytes()
    theirs = client.get("/posts/img-post/image-matches/0")
    assert theirs.status_code == 200 and theirs.content == (tmp_path / "notice.png").read_bytes()
    assert client.get("/posts/img-post/images/5").status_code == 404
    # another organisation cannot reach the image through its own session
    assert env.login("b-editor").get("/posts/img-post/images/0").status_code == 404
    detail = env.api("a-viewer").get("/api/v1/posts/img-post").json()
    assert detail["image_text"].startswith("Tin nóng")
    (m,) = detail["image_matches"]
    assert m["decision"] == "match" and m["factcheck_id"] == "https://check.example.org/fc/banknote" and m["distance"] <= 35
