"""`factbridge images ...`, `factbridge eval images`, `factbridge bench images`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import _state, app, bench_app, eval_app
from factbridge.console import console, progress_bar

images_app = typer.Typer(help="Images and screenshots: text read from them (OCR), near-duplicates of fact-checked images.", no_args_is_help=True)
app.add_typer(images_app, name="images")

SetOption = Annotated[Path, typer.Option("--set", help="Image set folder with manifest.jsonl (made by its make_images.py).")]


@eval_app.command("images")
def eval_images(
    image_set: SetOption = Path("tests/fixtures/images"),
    split: Annotated[str, typer.Option(help="tune (thresholds are chosen here), report (the figures to quote) or all.")] = "report",
    ocr: Annotated[bool, typer.Option("--ocr/--no-ocr", help="Also measure OCR (needs Debian's tesseract-ocr).")] = True,
    workers: Annotated[int, typer.Option(help="OCR processes (one tesseract each).")] = 2,
    threshold: Annotated[int | None, typer.Option(help="dHash match threshold to evaluate (default: the shipped one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Image matching precision/recall and OCR character error rate per language, on one split of the image set."""
    from factbridge.eval.images import evaluate_matching, evaluate_ocr, load_manifest

    total = len(load_manifest(image_set, split))
    with progress_bar(f"hashing ({split})", total) as advance:
        match = evaluate_matching(image_set, split, threshold, advance)
    ocr_report = None
    if ocr:
        n = sum(1 for r in load_manifest(image_set, split) if r.get("text"))
        with progress_bar(f"OCR ({split})", n) as advance:
            ocr_report = evaluate_ocr(image_set, split, workers, progress=advance)
    if as_json:
        sys.stdout.write(json.dumps({"matching": match.__dict__ | {"core": match.core.__dict__, "everything": match.everything.__dict__},
                                     "ocr": ocr_report.__dict__ if ocr_report else None}, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    table = Table(title=f"Image matching, {split} split (dHash-256 <= {match.core.threshold} bits)")
    for col in ("copies", "precision", "recall", "matched", "wrong", "queries", "distractors matched"):
        table.add_column(col, overflow="fold")
    for name, f in (("jpeg, resize, crop <= 10%", match.core), ("all five alterations", match.everything)):
        table.add_row(name, f"{f.precision:.3f}", f"{f.recall:.3f}", str(f.matched), str(f.wrong), str(f.queries), f"{f.distractors_matched}/{f.distractors}")
    console.print(table)
    console.print("recall by alteration: " + ", ".join(f"{t} {r:.2f}" for t, r in match.everything.recall_by_transform.items()))
    console.print(f"largest threshold with precision >= 0.98 on this split: {match.best_threshold}")
    if ocr_report:
        table = Table(title=f"OCR character error rate, {split} split ({sum(ocr_report.images.values())} images)")
        for col in ("language", "images", "CER", "by copy", "script/language detected"):
            table.add_column(col)
        for lang in sorted(ocr_report.cer):
            by = ", ".join(f"{t} {c:.3f}" for t, c in sorted(ocr_report.cer_by_transform[lang].items()))
            det = ", ".join(f"{k} {v}" for k, v in sorted(ocr_report.detected[lang].items()))
            table.add_row(lang, str(ocr_report.images[lang]), f"{ocr_report.cer[lang]:.4f}", by, det)
        console.print(table)
        for image_id, cer, text in ocr_report.worst[:3]:
            console.print(f"[dim]worst: {escape(image_id)} CER {cer:.3f}: {escape(text[:80])!r}[/]")


@bench_app.command("images")
def bench_images(
    image_set: SetOption = Path("tests/fixtures/images"),
    workers: Annotated[int, typer.Option(help="OCR processes (one tesseract each).")] = 2,
    ocr_images: Annotated[int, typer.Option(help="Images to read with OCR (the text-bearing ones of the set, in order).")] = 60,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Hashing and OCR throughput (images/s) on the image set: decode + PDQ + pHash + dHash + crop dHashes; OCR with script detection."""
    import resource

    from factbridge.eval.images import _open, load_manifest, run_ocr
    from factbridge.images.hashing import image_hashes

    def cpu_seconds() -> float:  # this process and every finished child (the OCR workers and their tesseracts)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    rows = load_manifest(image_set, "all")
    load_before = os.getloadavg()[0]
    with progress_bar("hashing", len(rows)) as advance:
        start, cpu = time.perf_counter(), cpu_seconds()
        for row in rows:
            image_hashes(_open(image_set, row), with_crops=True)  # as ingest does
            advance(1)
        hash_s, hash_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    text_rows = [r for r in rows if r.get("text")][:ocr_images]
    with progress_bar(f"OCR ({workers} workers)", len(text_rows)) as advance:
        start, cpu = time.perf_counter(), cpu_seconds()
        run_ocr([(r["id"], str(image_set / r["file"])) for r in text_rows], workers, advance)
        ocr_s, ocr_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    load = os.getloadavg()[0]
    figures: dict[str, Any] = {
        "hashed": len(rows), "hash_images_per_s": len(rows) / hash_s, "hash_cpu_s_per_image": hash_cpu / len(rows),
        "ocr_images": len(text_rows), "ocr_workers": workers, "ocr_images_per_s": len(text_rows) / ocr_s,
        "ocr_cpu_s_per_image": ocr_cpu / max(1, len(text_rows)),
        "cpus": os.cpu_count(), "load_average_1m_before": load_before, "load_average_1m_after": load,
    }
    # what the CPU time allows when the cores are this work's alone (the wall-clock figures
    # above fall with whatever else runs on the machine)
    figures["ocr_images_per_s_cpu_bound"] = workers / figures["ocr_cpu_s_per_image"] if ocr_cpu else None
    if as_json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
        return
    console.print(f"hashing: {figures['hash_images_per_s']:.1f} images/s ({len(rows)} images, one process; "
                  f"{figures['hash_cpu_s_per_image'] * 1000:.0f} ms CPU per image)")
    console.print(f"OCR: {figures['ocr_images_per_s']:.2f} images/s ({len(text_rows)} images, {workers} workers; "
                  f"{figures['ocr_cpu_s_per_image']:.2f} s CPU per image, {figures['ocr_images_per_s_cpu_bound'] or 0:.2f} images/s "
                  f"when {workers} cores are free)")
    console.print(f"[dim]{os.cpu_count()} CPUs, load average {load_before:.2f} before, {load:.2f} after "
                  "(other work on the machine counts against the wall-clock figures)[/]")


@images_app.command("read")
def images_read(
    files: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, GIF, WebP).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Hash an image and read its text (script detected first), as ingest does."""
    from factbridge.images.hashing import image_hashes
    from factbridge.images.ocr import read_text
    from factbridge.images.store import ImageLimits, decode, read_local

    out: list[dict[str, Any]] = []
    for path in files:
        img = decode(read_local(path, ImageLimits(), str(path)), ImageLimits(), str(path))
        hashes = image_hashes(img)
        result = read_text(img)
        out.append({"file": str(path), "width": img.width, "height": img.height, **hashes.as_dict(), "ocr_text": result.text,
                    "ocr_language": result.language, "ocr_confidence": result.confidence, "decided_by": result.decided_by})
    if as_json:
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        return
    for item in out:
        console.print(f"[bold]{escape(item['file'])}[/] {item['width']}x{item['height']} PDQ {item['pdq'][:16]}... (quality {item['pdq_quality']}) pHash {item['phash']}")
        console.print(f"text read from the image ({item['ocr_language'] or 'none'}, confidence {item['ocr_confidence']:.0f}):")
        console.print(escape(item["ocr_text"]) or "[dim](none)[/]")
        console.print(f"[dim]{escape(item['decided_by'])}[/]")


@images_app.command("match")
def images_match(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Image files to compare with the stored fact-checked images.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare images with this organisation's fact-checked images: each near-duplicate with its pair and distances."""
    from factbridge.images.hashing import image_hashes
    from factbridge.images.processing import load_library_index
    from factbridge.images.store import ImageLimits, decode, read_local

    services = _state(ctx).services()
    index = load_library_index(services.storage, services.settings.org)
    out: list[dict[str, Any]] = []
    for path in files:
        img = decode(read_local(path, ImageLimits(), str(path)), ImageLimits(), str(path))
        h = image_hashes(img)
        out.append({"file": str(path), "matches": [m.as_dict() for m in index.match(h.dhash, h.pdq, h.phash)]})
    if as_json:
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        return
    console.print(f"{len(index)} fact-checked images in the library")
    for item in out:
        table = Table(title=escape(item["file"]), title_justify="left")
        for col in ("decision", "fact-check", "library image", "dHash", "PDQ", "pHash"):
            table.add_column(col)
        for m in item["matches"]:
            table.add_row(m["decision"], escape(m["key"]), escape(m["library_source"] or m["library_sha256"][:12]), str(m["distance"]), str(m["pdq_distance"]), str(m["phash_distance"]))
        console.print(table if item["matches"] else f"{escape(item['file'])}: no fact-checked image near it")
    if out and out[0]["matches"]:
        console.print(f"[dim]{escape(out[0]['matches'][0]['decided_by'])}[/]")


@images_app.command("post")
def images_post(
    ctx: typer.Context,
    post_id: Annotated[str, typer.Argument(help="Id of a stored post.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A stored post's images: the text read from each, its hashes, and the fact-checked images it repeats."""
    from factbridge.web.images import image_matches

    services = _state(ctx).services()
    org = services.settings.org
    post = services.storage.get_post(org, post_id)
    matches = image_matches(services.storage, org, post_id)
    if as_json:
        sys.stdout.write(json.dumps({"post_id": post.id, "text": post.text, "image_text": post.image_text,
                                     "images": [i.model_dump(mode="json", exclude={"crop_dhash"}) for i in post.images],
                                     "image_matches": [m.to_doc() for m in matches]}, indent=2, ensure_ascii=False) + "\n")
        return
    console.print(f"[bold]post {escape(post.id)}[/]: {escape(post.text) or '[dim](no text of its own)[/]'}")
    for n, img in enumerate(post.images):
        console.print(f"\n[bold]image {n}[/] {escape(img.source)} {img.width}x{img.height} sha256 {img.sha256[:16] or '-'} {escape(img.note)}")
        if img.ocr_text:
            console.print(f"text read from the image ({img.ocr_language}, confidence {img.ocr_confidence or 0:.0f}):")
            console.print(escape(img.ocr_text))
        console.print(f"[dim]{escape(img.decided_by)}[/]")
    if matches:
        table = Table(title="Fact-checked images this post's images repeat", title_justify="left")
        for col in ("decision", "post image", "fact-check", "fact-check image", "dHash", "PDQ", "pHash"):
            table.add_column(col, overflow="fold")
        for m in matches:
            table.add_row(m.decision, escape(m.post_image_source), escape(m.factcheck_id), escape(m.factcheck_image_source),
                          str(m.distance), str(m.pdq_distance), str(m.phash_distance))
        console.print(table)
        console.print(f"[dim]{escape(matches[0].decided_by)}[/]")
