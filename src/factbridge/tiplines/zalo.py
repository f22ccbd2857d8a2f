"""Zalo Official Account tipline.

Zalo delivers a user's messages to an OA only by webhook (there is no polling
API), so this tipline runs a small webhook receiver (`host`:`port`, path
`/zalo/webhook`; put it behind the HTTPS address registered in the Zalo
developer console). Each event must carry `X-ZEvent-Signature: mac=<hex>` with
mac = SHA-256(app_id + raw body + timestamp + OA secret key), as Zalo signs
them; others are refused with 401. Events read: `user_send_text` and
`user_send_link` (links); `follow`/`unfollow` are ignored.

Replies go to the OA API `POST {api_url}/v3.0/oa/message/cs` with the
`access_token` header; feedback buttons are `oa.query.hide` buttons whose
payload (`#fb:<reply id>:1`) comes back as a text message. Verified against
the loopback stand-in in tests/test_tiplines.py (the request and event shapes
of Zalo's published OA API v3 documentation), not against Zalo itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from factbridge.errors import ConfigError, FactBridgeError
from factbridge.linkrisk.urls import extract_urls
from factbridge.tiplines.base import Incoming, Reply

DEFAULT_API_URL = "https://openapi.zalo.me"
WEBHOOK_PATH = "/zalo/webhook"
FEEDBACK_PREFIX = "#fb:"


def zalo_signature(app_id: str, body: bytes, timestamp: str, oa_secret: str) -> str:
    return hashlib.sha256(app_id.encode() + body + timestamp.encode() + oa_secret.encode()).hexdigest()


def event_to_incoming(event: dict[str, Any]) -> Incoming | None:
    name = event.get("event_name")
    sender = str((event.get("sender") or {}).get("id") or "")
    message = event.get("message") or {}
    if not sender or name not in {"user_send_text", "user_send_link"}:
        return None
    text = str(message.get("text") or "")
    urls = [str((a.get("payload") or {}).get("url")) for a in message.get("attachments") or [] if (a.get("payload") or {}).get("url")]
    if text.startswith(FEEDBACK_PREFIX):
        return Incoming("zalo", sender, sender, kind="feedback", data=text[1:], received_at=time.monotonic())
    return Incoming("zalo", sender, sender, text=text, message_id=str(message.get("msg_id") or ""),
                    urls=list(dict.fromkeys([*extract_urls(text), *urls])), received_at=time.monotonic())


class _Receiver(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        tipline = self.server.tipline
        length = int(self.headers.get("Content-Length") or 0)
        if self.path.split("?")[0] != WEBHOOK_PATH or length > 1_000_000:
            self._answer(404 if length <= 1_000_000 else 413, {"error": "not found"})
            return
        body = self.rfile.read(length)
        try:
            event = json.loads(body)
            timestamp = str(event.get("timestamp", ""))
        except (ValueError, AttributeError):
            self._answer(400, {"error": "body must be a JSON object"})
            return
        given = (self.headers.get("X-ZEvent-Signature") or "").removeprefix("mac=")
        expected = zalo_signature(tipline.app_id, body, timestamp, tipline.oa_secret)
        if not hmac.compare_digest(given, expected):
            self._answer(401, {"error": "bad signature"})
            return
        incoming = event_to_incoming(event)
        if incoming is not None:
            tipline.events.put(incoming)
        self._answer(200, {"ok": True})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], tipline: ZaloTipline) -> None:
        super().__init__(address, _Receiver)
        self.tipline = tipline


class ZaloTipline:
    name = "zalo"

    def __init__(self, access_token: str, oa_secret: str, app_id: str = "", api_url: str = DEFAULT_API_URL,
                 host: str = "127.0.0.1", port: int = 8767, timeout: float = 10.0, **_: Any) -> None:
        if not access_token or not oa_secret:
            raise ConfigError("the Zalo tipline needs zalo_access_token and zalo_oa_secret (FACTBRIDGE_ZALO_ACCESS_TOKEN, FACTBRIDGE_ZALO_OA_SECRET)")
        self.access_token, self.oa_secret, self.app_id = access_token, oa_secret, app_id
        self.api_url, self.timeout = api_url.rstrip("/"), timeout
        self.events: queue.Queue[Incoming] = queue.Queue()
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="zalo-webhook", daemon=True)
        self._thread.start()

    @property
    def webhook_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{WEBHOOK_PATH}"

    def poll(self, timeout: float) -> list[Incoming]:
        try:
            events = [self.events.get(timeout=max(timeout, 0.001))]
        except queue.Empty:
            return []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def send(self, reply: Reply) -> None:
        if reply.ack_callback and not reply.text:
            return  # Zalo has no button acknowledgement
        message: dict[str, Any] = {"text": reply.text}
        if reply.buttons:
            message["attachment"] = {"type": "template", "payload": {"buttons": [
                {"title": label[:100], "type": "oa.query.hide", "payload": FEEDBACK_PREFIX + data.removeprefix("fb:")} for label, data in reply.buttons]}}
        body = json.dumps({"recipient": {"user_id": reply.chat_id}, "message": message}, ensure_ascii=False).encode()
        request = urllib.request.Request(f"{self.api_url}/v3.0/oa/message/cs", data=body, method="POST",
                                         headers={"Content-Type": "application/json", "access_token": self.access_token})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except OSError as exc:
            raise FactBridgeError(f"Zalo OA API: {exc}") from exc
        if answer.get("error", 0) != 0:
            raise FactBridgeError(f"Zalo OA API error {answer.get('error')}: {answer.get('message')}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
