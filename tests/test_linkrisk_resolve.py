"""Following short links against a real HTTP server on 127.0.0.1: redirect chains,
loops, limits, timeouts, HEAD->GET fallback, and the SSRF guard. Every test sends
a handful of requests to loopback only; nothing else is ever contacted (forbidden
addresses are refused before any connection is made)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from factbridge.linkrisk import urls as urls_module
from factbridge.linkrisk.resolve import (
    ResolutionRefused,
    Resolver,
    address_allowed,
    checked_addresses,
)
from factbridge.linkrisk.scoring import LinkRiskScorer
from factbridge.testing.loopback import serving


class Handler(BaseHTTPRequestHandler):
    log: list[tuple[str, str]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def _route(self) -> None:
        Handler.log.append((self.command, self.path))
        port = self.server.server_address[1]
        routes = {
            "/a": (301, "/b"),
            "/b": (302, f"http://127.0.0.1:{port}/c"),
            "/c": (200, None),
            "/loop1": (302, "/loop2"),
            "/loop2": (302, "/loop1"),
            "/private": (302, "http://10.0.0.1/admin"),
            "/metadata": (307, "http://169.254.169.254/latest/meta-data/"),
            "/to-localhost-name": (302, f"http://localhost:{port}/c"),
            "/phish": (302, f"http://localhost:{port}/c/setup.exe"),
            "/c/setup.exe": (200, None),
        }
        if self.path.startswith("/chain"):
            n = int(self.path.removeprefix("/chain"))
            status, location = (302, f"/chain{n + 1}") if n < 20 else (200, None)
        elif self.path == "/slow":
            time.sleep(1.5)
            status, location = 200, None
        elif self.path == "/dribble":  # a slowloris: one header byte every 0.2 s, each read well under the timeout
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self.wfile.flush()
            with contextlib.suppress(OSError):
                for byte in b"X-Padding: " + b"a" * 40:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            return
        elif self.path == "/nohead":
            if self.command == "HEAD":
                status, location = 405, None
            else:
                status, location = 302, "/c"
        elif self.path == "/bigbody":
            self.send_response(405 if self.command == "HEAD" else 200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            if self.command == "GET":
                self.wfile.flush()
                time.sleep(1.5)  # the body comes late: a client that read it would time out
                with contextlib.suppress(OSError):
                    self.wfile.write(b"x" * 1_000_000)
            return
        else:
            status, location = routes.get(self.path, (404, None))
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = _route
    do_GET = _route


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(Handler) as url:
        yield url


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(timeout=0.5, max_redirects=5, deadline=5.0, allow_loopback=True)


def test_redirect_chain(server: str, resolver: Resolver) -> None:
    result = resolver.resolve(f"{server}/a")
    assert result.error is None
    assert result.final_url == f"{server}/c"
    assert [h.status for h in result.hops] == [301, 302, 200]
    assert all(h.method == "HEAD" for h in result.hops)


def test_loop_and_limit(server: str, resolver: Resolver) -> None:
    loop = resolver.resolve(f"{server}/loop1")
    assert loop.final_url is None and "loop" in (loop.error or "")
    limit = resolver.resolve(f"{server}/chain0")
    assert limit.final_url is None and "more than 5 redirects" in (limit.error or "")
    assert len(limit.hops) == 6


def test_redirect_to_private_or_metadata_address_is_refused(server: str, resolver: Resolver) -> None:
    for path, target in (("/private", "10.0.0.1"), ("/metadata", "169.254.169.254")):
        result = resolver.resolve(f"{server}{path}")
        assert result.refused and result.final_url is None
        assert target in (result.error or "")
        assert result.hops[-1].status is None  # never connected


def test_loopback_refused_unless_allowed(server: str) -> None:
    strict = Resolver(timeout=0.5)
    before = len(Handler.log)
    result = strict.resolve(f"{server}/a")
    assert result.refused and "127.0.0.1" in (result.error or "")
    assert len(Handler.log) == before  # no request reached the server
    allowed = Resolver(timeout=0.5, allow_loopback=True)
    named = allowed.resolve(f"{server}/to-localhost-name")
    assert named.final_url is not None and named.final_url.endswith("/c")


def test_timeout(server: str, resolver: Resolver) -> None:
    started = time.monotonic()
    result = resolver.resolve(f"{server}/slow")
    assert result.final_url is None and "timed out" in (result.error or "").lower()
    assert time.monotonic() - started < 1.4


def test_deadline_holds_against_a_server_dribbling_its_headers(server: str) -> None:
    resolver = Resolver(timeout=0.5, deadline=1.0, allow_loopback=True)
    started = time.monotonic()
    result = resolver.resolve(f"{server}/dribble")
    took = time.monotonic() - started
    assert result.final_url is None and "deadline of 1 s passed" in (result.error or ""), result.error
    assert took < 1.6, f"the resolver waited {took:.1f} s for a server that never finishes its headers"


def test_head_refused_then_get_without_body(server: str, resolver: Resolver) -> None:
    result = resolver.resolve(f"{server}/nohead")
    assert result.final_url == f"{server}/c"
    assert result.hops[0].method == "GET"
    started = time.monotonic()
    big = Resolver(timeout=0.5, allow_loopback=True).resolve(f"{server}/bigbody")
    assert big.error is None and big.final_url == f"{server}/bigbody"
    assert [h.method for h in big.hops] == ["GET"] and big.hops[0].status == 200
    assert time.monotonic() - started < 1.0  # headers only: the late body was never awaited


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("8.8.8.8", True), ("1.1.1.1", True), ("2001:4860:4860::8888", True),
        ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False), ("127.0.0.1", False), ("0.0.0.0", False),
        ("169.254.169.254", False), ("100.64.0.1", False), ("224.0.0.1", False), ("240.0.0.1", False),
        ("255.255.255.255", False), ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:10.0.0.1", False),
        ("ff02::1", False), ("192.0.2.1", False),
    ],
)
def test_address_policy(ip: str, allowed: bool) -> None:
    assert address_allowed(ip) is allowed


def test_names_resolving_to_loopback_are_refused() -> None:
    with pytest.raises(ResolutionRefused):
        checked_addresses("localhost", 80)
    assert checked_addresses("localhost", 80, allow_loopback=True)


def test_scorer_follows_short_links_only_when_enabled(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Treat the test server as a shortener for this test only.
    monkeypatch.setattr(urls_module, "SHORTENERS", urls_module.SHORTENERS | {"127.0.0.1"})
    off = LinkRiskScorer().score(f"{server}/phish")
    assert off.resolution is None
    scorer = LinkRiskScorer(resolver=Resolver(timeout=0.5, allow_loopback=True))
    risk = scorer.score(f"{server}/phish")
    assert risk.resolution is not None and risk.resolution["final_url"] == f"{server}/c/setup.exe".replace("127.0.0.1", "localhost")
    destination = [r for r in risk.reasons if r.code == "destination"]
    assert destination and "executable_download" in destination[0].evidence["reasons"]
    assert risk.flagged and risk.decided_by.endswith("; resolved")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{httpd.server_address[1]}", str(cert)
    httpd.shutdown()
    httpd.server_close()


def test_https_pinned_address_keeps_server_name(tls_server: tuple[str, str]) -> None:
    import ssl

    base, cert = tls_server
    trusted = Resolver(timeout=1.0, allow_loopback=True, context=ssl.create_default_context(cafile=cert))
    result = trusted.resolve(f"{base}/c")
    assert result.error is None and result.final_url == f"{base}/c"
    assert result.hops[0].address in {"127.0.0.1", "::1"}  # connected to the checked address, verified as "localhost"
    untrusted = Resolver(timeout=1.0, allow_loopback=True).resolve(f"{base}/c")
    assert untrusted.final_url is None and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")


def test_next_address_when_the_first_cannot_be_reached(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from factbridge.linkrisk import resolve as resolve_module

    # A name listing an address nobody listens on first (as "localhost" may list ::1).
    monkeypatch.setattr(resolve_module, "checked_addresses", lambda host, port, allow_loopback=False: ["127.0.0.2", "127.0.0.1"] if port == 1 else ["::1", "127.0.0.1"])
    result = Resolver(timeout=0.5, allow_loopback=True).resolve(f"{server}/c")
    assert result.error is None and result.hops[0].address == "127.0.0.1"
