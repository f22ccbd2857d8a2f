"""`factbridge indexes list` / `prune`: the embedded indexes and matcher snapshots kept in
data_dir/indexes, which of them the configured embedder reads, and removing the others."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from factbridge.cli.app import _state, app
from factbridge.console import cells, console
from factbridge.pipeline.saved_indexes import SavedIndex, prunable, prune, saved_indexes

indexes_app = typer.Typer(help="The embedded indexes and matcher snapshots in data_dir/indexes.", no_args_is_help=True)
app.add_typer(indexes_app, name="indexes")

KEEP_HELP = "Another embedder id whose files stay (one a second deployment on the same data_dir uses); repeatable."


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _row(entry: SavedIndex, keep: set[str]) -> dict[str, object]:
    state = "in use" if entry.embedder in keep else ("another embedder" if entry.embedder else entry.kind)
    return {"name": entry.name, "kind": entry.kind, "embedder": entry.embedder, "items": entry.items, "bytes": entry.size,
            "files": len(entry.files), "modified": datetime.fromtimestamp(entry.modified, UTC).isoformat(timespec="seconds"),
            "state": state, **({"problem": entry.problem} if entry.problem else {})}


def _table(title: str, rows: list[dict[str, object]]) -> Table:
    table = Table(title=title)
    for col in ("kind", "embedder", "items", "size", "files", "modified (UTC)", "state", "name"):
        table.add_column(col, justify="right" if col in ("items", "size", "files") else "left")
    for r in rows:
        items = "" if r["items"] is None else f"{r['items']:,}"
        table.add_row(*cells(r["kind"], r["embedder"] or "", items, _megabytes(int(str(r["bytes"]))), r["files"],
                             str(r["modified"])[:19], r["state"], f"{r['name']}{' — ' + str(r['problem']) if r.get('problem') else ''}"))
    return table


@indexes_app.command("list")
def list_indexes(
    ctx: typer.Context,
    keep: Annotated[list[str] | None, typer.Option(help=KEEP_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every index and snapshot in data_dir/indexes: its embedder, items, size on disk, and
    whether the configured embedder reads it."""
    services = _state(ctx).services()
    in_use = {services.embedder.id, *(keep or [])}
    rows = [_row(e, in_use) for e in saved_indexes(services.settings.data_dir)]
    sizes = getattr(services.storage, "post_period_sizes", None)  # PostgreSQL: the post vectors' periods
    periods = sizes() if sizes is not None else None
    if as_json:
        print(json.dumps({"data_dir": services.settings.data_dir, "embedder": services.embedder.id, "entries": rows,
                          **({"post_periods": periods} if periods is not None else {})}, indent=2))
        return
    console.print(_table(f"{services.settings.data_dir}/indexes (embedder in use: {services.embedder.id})", rows))
    console.print(f"{len(rows)} entries, {_megabytes(sum(int(str(r['bytes'])) for r in rows))}")
    if periods is not None:
        table = Table(title="PostgreSQL: post vectors by period (one HNSW graph each; vector_period_hours)")
        for col in ("period", "from (UTC)", "to", "rows (estimate)", "vectors", "graphs"):
            table.add_column(col, justify="right" if col in ("rows (estimate)", "vectors", "graphs") else "left")
        for r in periods:
            table.add_row(*cells(r["table"], str(r["from"] or "no known time")[:16], str(r["to"] or "")[:16], f"{r['rows_estimate']:,}",
                                 _megabytes(int(r["table_bytes"])), _megabytes(int(r["index_bytes"]))))
        console.print(table)
        console.print(f"{len(periods)} periods, {_megabytes(sum(int(r['table_bytes']) + int(r['index_bytes']) for r in periods))}")


@indexes_app.command("prune")
def prune_indexes(
    ctx: typer.Context,
    keep: Annotated[list[str] | None, typer.Option(help=KEEP_HELP)] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Remove them (without it: only say what would go).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Remove the indexes and snapshots of embedders other than the configured one (and
    --keep), and files left by saves that never finished (older than an hour). Only derived
    files go: every vector stays in the store, and an index is built again from it when its
    embedder is used again."""
    services = _state(ctx).services()
    data_dir = services.settings.data_dir
    in_use = {services.embedder.id, *(keep or [])}
    chosen = prunable(saved_indexes(data_dir), in_use)
    rows = [_row(e, in_use) for e in chosen]
    freed = prune(data_dir, chosen) if yes else 0
    if as_json:
        print(json.dumps({"removed" if yes else "would_remove": rows, "bytes_freed": freed}, indent=2))
        return
    if not chosen:
        console.print(f"nothing to prune in {data_dir}/indexes (embedder in use: {services.embedder.id})")
        return
    console.print(_table("removed" if yes else "would remove (dry run: --yes removes them)", rows))
    total = sum(int(str(r["bytes"])) for r in rows)
    console.print(f"freed {_megabytes(freed)}" if yes else f"{len(rows)} entries, {_megabytes(total)}")
