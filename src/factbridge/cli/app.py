"""The `factbridge` command line: the Typer app, its sub-apps and the state shared by every
command (settings and services, built once per invocation)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from factbridge import __version__
from factbridge.console import cells, console, err_console, esc
from factbridge.demo_data import demo_data_fallback
from factbridge.errors import FactBridgeError, InputError
from factbridge.services import Services
from factbridge.settings import load_settings, setting_sections

app = typer.Typer(
    help="FactBridge: find, triage and share fact-checks of social posts across languages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
factchecks_app = typer.Typer(help="The fact-check library.", no_args_is_help=True)
eval_app = typer.Typer(help="Quality measurements on labelled data; each prints its figures.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed and memory measurements; each prints its figures.", no_args_is_help=True)
train_app = typer.Typer(help="Reproduce the shipped models from the shared training data.", no_args_is_help=True)
app.add_typer(factchecks_app, name="factchecks")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")


class State:
    def __init__(self, overrides: dict[str, Any], config: Path | None) -> None:
        self.overrides = overrides
        self.config = config
        self._services: Services | None = None

    def services(self, **extra: Any) -> Services:
        if self._services is None:
            settings = load_settings(self.config, overrides={**self.overrides, **extra})
            demo = None if "data_dir" in self.overrides else demo_data_fallback(settings)
            if demo is not None:
                err_console.print(f"[dim]no database in {settings.data_dir}: using the demo data in {demo} (from `make demo`); "
                                  f"--data-dir {settings.data_dir} starts your own[/]")
                settings = settings.replace(data_dir=str(demo))
            logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
            self._services = Services(settings)
        return self._services

    def fresh_services(self, **extra: Any) -> Services:
        """Services of their own with these settings on top (a bench's run on its own store),
        not the command's shared ones (`services`, made once: `extra` does not change them
        later). The caller closes them."""
        return Services(load_settings(self.config, overrides={**self.overrides, **extra}))

    def close(self) -> None:
        if self._services:
            self._services.close()


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State) if isinstance(ctx.obj, State) else ctx.obj


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="Settings file (TOML).", envvar="FACTBRIDGE_CONFIG")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Folder for the embedded database and caches.")] = None,
    storage_url: Annotated[str | None, typer.Option(help="sqlite:///file.db or postgresql://...")] = None,
    queue_url: Annotated[str | None, typer.Option(help="local:// (stages run in ingest) or nats://host:port (workers run them).")] = None,
    org: Annotated[str | None, typer.Option(help="Organisation scope.")] = None,
    embedder: Annotated[str | None, typer.Option(help="Embedder backend: e5, sentence-transformers, hashing.")] = None,
    embed_cache: Annotated[str | None, typer.Option(help="Embedding cache file, or 'off'.")] = None,
    embed_cache_seed: Annotated[str | None, typer.Option(help="Read-only embedding caches to consult first (files or folders).")] = None,
) -> None:
    overrides = {"data_dir": data_dir, "storage_url": storage_url, "queue_url": queue_url, "org": org, "embedder": embedder, "embed_cache": embed_cache, "embed_cache_seed": embed_cache_seed}
    ctx.obj = State({k: v for k, v in overrides.items() if v is not None}, config)
    ctx.call_on_close(ctx.obj.close)


@app.command()
def version() -> None:
    """Print the FactBridge version."""
    console.print(f"factbridge {__version__}")


@app.command()
def settings(ctx: typer.Context) -> None:
    """Show every setting by section: name, key in its [section], value in force, default and meaning."""
    current = load_settings(_state(ctx).config, overrides=_state(ctx).overrides)
    table = Table(title="Settings (file < FACTBRIDGE_* env < CLI)")
    for col in ("section", "name", "key", "value", "default", "help"):
        table.add_column(col)
    for section, key, name, default, help_text in setting_sections():
        table.add_row(*cells(section, name, key if key != name else "", getattr(current, name), default, help_text))
    console.print(table)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the data folder and bring the database schema up to date."""
    from factbridge.federation.identity import Identity

    services = _state(ctx).services()
    version_ = services.storage.schema_version()
    console.print(f"storage ready: {esc(services.settings.resolved_storage_url)} (schema v{version_})")
    period, periods = getattr(services.storage, "post_period_s", None), getattr(services.storage, "post_periods", None)
    if period is not None and periods is not None:  # PostgreSQL: post vectors kept by period
        console.print(f"post vectors by periods of {period() / 3600:g} h ({len(periods())} so far; vector_period_hours)")
    console.print(f"federation key: {esc(Identity(services.settings.data_dir).active().key_id)} (`factbridge partners identity`)")


def _print_quarantine(rows: list[Any], limit: int = 20) -> None:
    if not rows:
        return
    table = Table(title=f"Quarantined rows ({len(rows)})", title_style="bold yellow")
    for col in ("source", "line", "field", "reason"):
        table.add_column(col)
    for q in rows[:limit]:
        table.add_row(*cells(q.source, q.line or "", q.field or "", q.reason))
    err_console.print(table)
    if len(rows) > limit:
        err_console.print(f"... and {len(rows) - limit} more (factbridge quarantine)")



def main() -> None:
    # the commands register themselves on `app` when their modules are imported
    import factbridge.cli  # noqa: F401

    try:
        app()
    except FactBridgeError as exc:
        err_console.print(f"[bold red]error:[/] {esc(exc)}", highlight=False)
        sys.exit(2 if isinstance(exc, InputError) else 1)
