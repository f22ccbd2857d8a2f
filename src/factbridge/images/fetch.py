"""Fetching an image URL (only when `images_fetch` is on), with linkrisk's SSRF guard.

The host is resolved once and every address checked (`linkrisk.resolve.checked_addresses`:
no private, loopback, link-local... address); the connection goes to the checked
address with the real Host header and TLS server name; redirects are followed
(at most 3) through the same checks; the body is read up to the size limit and
not one byte more; nothing but the bytes is kept (they are then decoded under
the image limits, never executed).
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urljoin, urlsplit

from factbridge.errors import InputError
from factbridge.linkrisk.resolve import ResolutionRefused, _PinnedHTTPSConnection, checked_addresses

USER_AGENT = "FactBridge-images/1.0 (+fact-checking; fetches one image)"
MAX_REDIRECTS = 3


def fetch_image(url: str, max_bytes: int, timeout: float, where: str, allow_loopback: bool = False) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise InputError(f"image URL must be http(s): {url}", source=where)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            address = checked_addresses(parts.hostname, port, allow_loopback)[0]
        except ResolutionRefused as exc:
            raise InputError(f"image URL refused: {exc}", source=where) from exc
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = _PinnedHTTPSConnection(address, port, parts.hostname, timeout, ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(address, port, timeout=timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", path, headers={"Host": parts.netloc, "User-Agent": USER_AGENT, "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status in {301, 302, 303, 307, 308} and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location") or "")
                continue
            if resp.status != 200:
                raise InputError(f"image URL answered HTTP {resp.status}: {url}", source=where)
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise InputError(f"image of {length} bytes is over the limit of {max_bytes}: {url}", source=where)
            data = resp.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise InputError(f"image is over the limit of {max_bytes} bytes: {url}", source=where)
            return data
        except (OSError, http.client.HTTPException) as exc:
            raise InputError(f"image URL could not be fetched: {exc}", source=where) from exc
        finally:
            conn.close()
    raise InputError(f"image URL: more than {MAX_REDIRECTS} redirects: {url}", source=where)
