"""`factbridge tipline ...`: citizens' questions in messengers (Telegram, Zalo), and
`factbridge bench tipline` (answer latency)."""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.error
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from factbridge.cli.app import _state, app, bench_app
from factbridge.console import console, err_console
from factbridge.errors import ConfigError, InputError

tipline_app = typer.Typer(help="Tiplines: citizens ask in Telegram or Zalo, FactBridge answers with published fact-checks.", no_args_is_help=True)
app.add_typer(tipline_app, name="tipline")

DEMO_TOKEN = "000000:demo-stand-in"


def start_demo_tipline(services: Any, port: int | None = None) -> tuple[Any, threading.Event, str, threading.Thread]:
    """The bundled Bot API stand-in on 127.0.0.1 and a Telegram tipline polling it, in threads
    (for `factbridge demo --serve`). Returns the server, the stop event, the Bot API URL and
    the tipline's thread (it ends once the questions it took are stored)."""
    from factbridge.testing.botapi import BotApiServer
    from factbridge.tiplines import TiplineDesk, TiplineRunner, open_tipline

    server = BotApiServer(port=services.settings.tipline_botapi_port if port is None else port).start()
    tipline = open_tipline("telegram", services.settings, token=DEMO_TOKEN, api_url=server.bot_base_url)
    runner = TiplineRunner(tipline, TiplineDesk(services, services.settings.org), poll_timeout=5.0, followup_every=10.0)
    runner.warm()  # the first citizen does not wait for the model and the library to load
    stop = threading.Event()
    thread = runner.start_thread(stop)
    return server, stop, server.url, thread


@tipline_app.command("run")
def tipline_run(
    ctx: typer.Context,
    platform: Annotated[str, typer.Argument(help="Messenger: telegram (long polling) or zalo (webhook receiver).")] = "telegram",
    poll_timeout: Annotated[float, typer.Option(help="Seconds one long poll waits for messages.")] = 25.0,
    followup_every: Annotated[float, typer.Option(help="Seconds between passes that answer pending questions.")] = 30.0,
) -> None:
    """Answer citizens' messages until stopped (Ctrl-C)."""
    from factbridge.tiplines import TiplineDesk, TiplineRunner, open_tipline

    services = _state(ctx).services()
    tipline = open_tipline(platform, services.settings)
    runner = TiplineRunner(tipline, TiplineDesk(services, services.settings.org), poll_timeout=poll_timeout, followup_every=followup_every,
                           on_reply=lambda ev, reply, s: err_console.print(f"replied in {s * 1000:.0f} ms ({ev.kind})"))
    err_console.print(f"tipline {platform} answering for org {services.settings.org}; Ctrl-C stops")
    stop = threading.Event()
    try:
        runner.run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        tipline.close()
    console.print(f"handled {runner.handled} messages, {runner.errors} errors")


@tipline_app.command("botapi")
def tipline_botapi(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: the tipline_botapi_port setting).")] = None,
) -> None:
    """Serve the bundled Telegram Bot API stand-in on 127.0.0.1 (for trying the bot offline)."""
    from factbridge.testing.botapi import BotApiServer

    settings = _state(ctx).services().settings
    server = BotApiServer(port=settings.tipline_botapi_port if port is None else port).start()
    console.print(f"Bot API stand-in on {server.url}. In another terminal: FACTBRIDGE_TELEGRAM_API_URL={server.bot_base_url} "
                  f"FACTBRIDGE_TELEGRAM_TOKEN={DEMO_TOKEN} factbridge tipline run; then factbridge tipline try \"...\" --botapi {server.url}",
                  soft_wrap=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


@tipline_app.command("try")
def tipline_try(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="What a citizen sends.")],
    botapi: Annotated[str | None, typer.Option(help="URL of a running Bot API stand-in (default http://127.0.0.1:<tipline_botapi_port>, started by `make demo`).")] = None,
    user_id: Annotated[int, typer.Option(help="The citizen's Telegram user id (the stand-in's).")] = 4242,
    language_code: Annotated[str, typer.Option(help="The citizen's app language.")] = "en",
    forward: Annotated[bool, typer.Option(help="Send it as a forwarded message.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 15.0,
) -> None:
    """Chat with the demo tipline as a citizen: send TEXT, print the answer and how long it took."""
    from factbridge.testing.botapi import BotApiClient

    url = botapi or f"http://127.0.0.1:{_state(ctx).services().settings.tipline_botapi_port}"
    client = BotApiClient(url)
    try:
        t0 = time.perf_counter()
        sent = client.send(user_id, text, language_code, forward)
        replies = client.messages(user_id, after=sent["message_id"], wait=wait)
        elapsed = time.perf_counter() - t0
    except (urllib.error.URLError, ConnectionError) as exc:
        raise ConfigError(f"no Bot API stand-in answers at {url} ({exc}): start `make demo` (or `factbridge demo --serve`) first") from exc
    if not replies:
        raise InputError(f"no answer within {wait:.0f} s: is a tipline polling {url}? (`factbridge demo --serve` starts one)")
    time.sleep(0.3)  # a warning and a fact-check can come as two messages
    replies = client.messages(user_id, after=sent["message_id"])
    for reply in replies:
        buttons = [b["text"] for row in (reply.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
        console.print(f"[bold]bot:[/] {escape(reply['text'])}" + (f"  [dim]{escape(' | '.join(buttons))}[/]" if buttons else ""))
    console.print(f"answered in {elapsed * 1000:.0f} ms")


@tipline_app.command("stats")
def tipline_stats_cmd(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="Days shown.")] = 14,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Questions, answers, warnings, hand-overs to the desk, follow-ups and feedback per day and language."""
    from factbridge.tiplines.desk import STAT_KEYS, tipline_stats

    services = _state(ctx).services()
    rows = tipline_stats(services.storage, services.settings.org, days)
    if as_json:
        console.print_json(json.dumps([row.to_doc() for row in rows]))
        return
    table = Table(title="Tipline")
    for col in ("day", "language", *STAT_KEYS):
        table.add_column(col)
    for row in rows:
        table.add_row(row.day, row.language, *(str(row[k]) for k in STAT_KEYS))
    console.print(table)


@bench_app.command("tipline")
def bench_tipline(
    ctx: typer.Context,
    questions: Annotated[int, typer.Option(help="Questions sent (claims of the library's fact-checks, cycled).")] = 20,
    pause: Annotated[float, typer.Option(help="Seconds between questions (0: back to back, the desk's storing competes for the CPU).")] = 0.0,
    verbose: Annotated[bool, typer.Option("--verbose", help="Print each question's latency.")] = False,
) -> None:
    """Answer latency of the Telegram tipline for already-debunked claims: a citizen's message
    through the bundled Bot API stand-in (loopback HTTP, long polling) to the fact-check reply.
    Uses the organisation's library (run `factbridge demo` first for the sample)."""
    from factbridge.testing.botapi import BotApiClient

    services = _state(ctx).services()
    org = services.settings.org
    claims = [fc.claim for fc in services.storage.iter_factchecks(org)]
    if not claims:
        raise InputError("the fact-check library is empty: run `factbridge demo` (or import fact-checks) first")
    services.matcher(org)  # loaded once, as in a running tipline
    server, stop, url, thread = start_demo_tipline(services, port=0)
    client = BotApiClient(url)
    latencies: list[float] = []
    answered = 0
    try:
        for n in range(questions):
            t0 = time.perf_counter()
            sent = client.send(10_000 + n, claims[n % len(claims)])
            replies = client.messages(10_000 + n, after=sent["message_id"], wait=10.0)
            latencies.append(time.perf_counter() - t0)
            if verbose:
                console.print(f"{n}: {latencies[-1] * 1000:.0f} ms")
            answered += any(r.get("reply_markup") for r in replies)
            time.sleep(pause)
    finally:
        stop.set()
        thread.join(timeout=120)  # the questions are stored for the desk before the storage closes
        server.stop()
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    console.print(f"tipline: {len(ms)} questions, {answered} answered with a fact-check; latency p50 {statistics.median(ms):.0f} ms, "
                  f"p95 {p95:.0f} ms, max {ms[-1]:.0f} ms (embedder {services.embedder.id})")
