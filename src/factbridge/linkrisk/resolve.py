"""Following shortened links to where they lead — off by default, SSRF-guarded.

Enabled with the ``linkrisk_resolve`` setting (or ``--resolve`` on
``factbridge linkrisk check``). For each hop:

* only http and https; the host is resolved once and EVERY address it
  resolves to is checked: private, loopback, link-local, multicast, reserved,
  unspecified, carrier-grade NAT and other non-global addresses are refused
  (loopback is allowed only when the caller says so, which only tests do);
* the connection goes to the checked address itself (no second DNS lookup a
  rebinding attacker could answer differently), with the original Host header
  and TLS server name;
* HEAD first; GET only if HEAD is refused (405/501) — and the body is never
  read: the response is closed as soon as the status line and headers arrive;
* strict connect/read timeouts, an overall deadline, a redirect limit and loop
  detection; every redirect target goes through the same checks. The deadline
  holds even against a server that sends its headers a byte at a time (each
  read under the read timeout): a watchdog shuts the socket when it passes.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from factbridge.settings import Settings

REDIRECTS = {301, 302, 303, 307, 308}
_UNREACHABLE = {errno.EADDRNOTAVAIL, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EAFNOSUPPORT, errno.ECONNREFUSED}
USER_AGENT = "FactBridge-linkrisk/1.0 (+link safety check; no content fetched)"


class ResolutionRefused(Exception):
    """A hop was not attempted because it would reach a forbidden address."""


@dataclass
class Hop:
    url: str
    status: int | None = None
    address: str | None = None
    method: str = "HEAD"
    error: str | None = None


@dataclass
class Resolution:
    start: str
    final_url: str | None
    hops: list[Hop] = field(default_factory=list)
    error: str | None = None  # why the chain stopped early (refused, loop, limit, timeout)
    refused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start, "final_url": self.final_url, "error": self.error, "refused": self.refused,
            "hops": [{"url": h.url, "status": h.status, "address": h.address, "method": h.method, "error": h.error} for h in self.hops],
        }


# Special-purpose IPv6 ranges that Python's `is_global` still calls global: 6to4 (2002::/16
# embeds any IPv4 address, a private one included), deprecated site-local (fec0::/10, routed
# inside a site), NAT64 (embeds IPv4), the new documentation range and SRv6 segment ids.
_SPECIAL_V6 = tuple(ipaddress.ip_network(n) for n in ("2002::/16", "fec0::/10", "64:ff9b::/96", "64:ff9b:1::/48",
                                                      "3fff::/20", "5f00::/16", "2001::/23"))


def address_allowed(ip: str, allow_loopback: bool = False) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return allow_loopback
    if isinstance(addr, ipaddress.IPv6Address) and any(addr in net for net in _SPECIAL_V6):
        return False
    # is_global is False for private, link-local, multicast (mostly), reserved,
    # unspecified, shared (100.64/10), documentation and benchmarking ranges.
    return bool(addr.is_global) and not addr.is_multicast and not addr.is_reserved


def checked_addresses(host: str, port: int, allow_loopback: bool = False) -> list[str]:
    """Resolve `host` and refuse if ANY of its addresses is forbidden (a name that
    also points inside the network is not followed at all)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolutionRefused(f"cannot resolve {host}: {exc.strerror}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ResolutionRefused(f"{host} has no address")
    bad = [a for a in addresses if not address_allowed(a, allow_loopback)]
    if bad:
        raise ResolutionRefused(f"{host} resolves to a non-public address ({', '.join(bad)})")
    return addresses


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    """Shut a connection's socket from another thread: a read blocked in it returns at once."""
    cut.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with SNI and certificate checks for the real host name."""

    def __init__(self, address: str, port: int, server_name: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


@dataclass
class Resolver:
    timeout: float = Settings().linkrisk.resolve_timeout  # per connect and per read
    max_redirects: int = Settings().linkrisk.resolve_max_redirects
    deadline: float = 10.0  # whole chain
    allow_loopback: bool = False  # tests only
    context: ssl.SSLContext | None = None

    def resolve(self, url: str) -> Resolution:
        result = Resolution(start=url, final_url=None)
        started = time.monotonic()
        seen: set[str] = set()
        current = url
        for _ in range(self.max_redirects + 1):
            if current in seen:
                result.error = f"redirect loop back to {current}"
                return result
            seen.add(current)
            if time.monotonic() - started > self.deadline:
                result.error = f"deadline of {self.deadline:.0f} s passed"
                return result
            hop = Hop(url=current)
            result.hops.append(hop)
            try:
                status, location = self._request(current, hop, min(self.timeout, self.deadline - (time.monotonic() - started)), started + self.deadline)
            except ResolutionRefused as exc:
                hop.error = str(exc)
                result.error, result.refused = str(exc), True
                return result
            except (OSError, http.client.HTTPException, ValueError) as exc:
                hop.error = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - started >= self.deadline:  # the watchdog cut a slow server off
                    hop.error = f"deadline of {self.deadline:g} s passed while waiting for {current} ({hop.error})"
                result.error = hop.error
                return result
            if status in REDIRECTS and location:
                current = urljoin(current, location)
                continue
            result.final_url = current
            return result
        result.error = f"more than {self.max_redirects} redirects"
        return result

    def _request(self, url: str, hop: Hop, timeout: float, end: float) -> tuple[int, str | None]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in {"http", "https"} or not parts.hostname:
            raise ResolutionRefused(f"not following a {scheme or 'relative'} link: {url}")
        port = parts.port or (443 if scheme == "https" else 80)
        addresses = checked_addresses(parts.hostname, port, self.allow_loopback)
        # Try the checked addresses in order (a name may list ::1 before 127.0.0.1),
        # moving on only when a connection cannot be made at all.
        for n, address in enumerate(addresses):
            try:
                return self._exchange(scheme, address, port, parts, hop, timeout, end)
            except OSError as exc:
                # gaierror: a literal address of a family this machine lacks (no IPv6)
                unreachable = isinstance(exc, ConnectionRefusedError | socket.gaierror) or exc.errno in _UNREACHABLE
                if not unreachable or n == len(addresses) - 1:
                    raise
        raise ResolutionRefused(f"{parts.hostname} has no address")  # not reached: addresses is never empty

    def _exchange(self, scheme: str, address: str, port: int, parts: SplitResult, hop: Hop, timeout: float, end: float) -> tuple[int, str | None]:
        assert parts.hostname is not None
        hop.address = address
        connect_to = f"[{address}]" if ":" in address else address  # http.client strips the brackets
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
        for method in ("HEAD", "GET"):
            hop.method = method
            conn = self._connection(scheme, connect_to, port, parts.hostname, max(timeout, 0.05))
            # Each read is bounded by `timeout`; the watchdog bounds them all (the chain's deadline).
            cut = threading.Event()
            watchdog = threading.Timer(max(0.0, end - time.monotonic()), _cut, args=(conn, cut))
            watchdog.daemon = True
            watchdog.start()
            try:
                conn.request(method, target, headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"})
                response = conn.getresponse()  # reads the status line and headers only
                status, location = response.status, response.getheader("Location")
            finally:
                watchdog.cancel()
                conn.close()  # never read the body
            if cut.is_set():  # cut off mid-headers: what was read is not an answer
                raise TimeoutError("the server had not finished its headers")
            hop.status = status
            if method == "HEAD" and status in {405, 501}:
                continue
            return status, location
        return hop.status or 0, None

    def _connection(self, scheme: str, address: str, port: int, server_name: str, timeout: float) -> http.client.HTTPConnection:
        if scheme == "https":
            return _PinnedHTTPSConnection(address, port, server_name, timeout, self.context or ssl.create_default_context())
        return http.client.HTTPConnection(address, port, timeout=timeout)


class ResolutionBudget:
    """A total time for following links, shared by every link of one batch of the link-risk
    stage: slow short links in many posts cannot hold a batch (and what waits on it) for
    long. Once spent, links are not followed and say so (scored on what they are)."""

    def __init__(self, resolver: Resolver, seconds: float) -> None:
        self.resolver = resolver
        self.seconds = seconds
        self.end = time.monotonic() + max(seconds, 0.0)
        self.followed = 0
        self.not_followed = 0

    def resolve(self, url: str) -> Resolution:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            self.not_followed += 1
            return Resolution(start=url, final_url=None, error=f"not followed: this batch's link resolution budget of {self.seconds:g} s was spent")
        self.followed += 1
        return replace(self.resolver, deadline=min(self.resolver.deadline, remaining)).resolve(url)
