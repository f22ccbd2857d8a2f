"""A local stand-in for the Telegram Bot API, on loopback, for tests and `make demo`.

It speaks enough of the Bot API for a long-polling bot: getMe, getUpdates
(long polling with offset and timeout), sendMessage (with inline keyboards),
answerCallbackQuery, editMessageReplyMarkup, deleteWebhook, setMyCommands.
Parameters come as JSON, form fields or query strings, like the real API.

The other side, a citizen's phone, is a small JSON interface under /_client:

    POST /_client/send   {"user_id": 42, "text": "...", "language_code": "vi", "forward": false}
                          -> {"update_id": 7, "message_id": 3}
    POST /_client/press  {"user_id": 42, "message_id": 5, "data": "fb:...:1"}
    GET  /_client/messages?chat_id=42&after=0&wait=5
                          -> the bot's messages to that chat after message id `after`
                             (waits up to `wait` seconds for the first one)

`factbridge tipline try "text"` uses it; tests drive it through `BotApiClient`.
Nothing here talks to Telegram.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOT_USER = {"id": 1000001, "is_bot": True, "first_name": "FactBridge", "username": "factbridge_demo_bot",
            "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}


class BotApiState:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # the bot's messages, in order
        self.callback_answers: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)

    # -- the citizen's side --------------------------------------------------------
    def user_message(self, user_id: int, text: str, language_code: str = "en", forward: bool = False, forward_channel: str = "") -> dict[str, Any]:
        with self.cond:
            message_id = next(self._message_ids)
            message: dict[str, Any] = {
                "message_id": message_id, "date": int(time.time()), "text": text,
                "chat": {"id": user_id, "type": "private", "first_name": "Citizen"},
                "from": {"id": user_id, "is_bot": False, "first_name": "Citizen", "language_code": language_code},
            }
            if forward_channel:  # forwarded from a public channel
                message["forward_origin"] = {"type": "channel", "date": int(time.time()) - 60, "message_id": 12,
                                             "chat": {"id": -1001234, "type": "channel", "title": forward_channel, "username": forward_channel}}
            elif forward:
                message["forward_origin"] = {"type": "hidden_user", "sender_user_name": "Someone", "date": int(time.time()) - 60}
            update = {"update_id": next(self._update_ids), "message": message}
            self.updates.append(update)
            self.cond.notify_all()
            return {"update_id": update["update_id"], "message_id": message_id}

    def press(self, user_id: int, message_id: int, data: str) -> dict[str, Any]:
        with self.cond:
            original = next((m for m in self.sent if m["message_id"] == message_id), None)
            callback = {
                "id": f"cb{next(self._update_ids)}", "chat_instance": str(user_id), "data": data,
                "from": {"id": user_id, "is_bot": False, "first_name": "Citizen"},
            }
            if original is not None:
                callback["message"] = original
            update = {"update_id": next(self._update_ids), "callback_query": callback}
            self.updates.append(update)
            self.cond.notify_all()
            return {"update_id": update["update_id"], "callback_id": callback["id"]}

    def messages(self, chat_id: int, after: int = 0, wait: float = 0.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        with self.cond:
            while True:
                found = [m for m in self.sent if m["chat"]["id"] == chat_id and m["message_id"] > after]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self.cond.wait(left)

    # -- the bot's side (Bot API methods) ------------------------------------------
    def call(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append(method)
        handler = getattr(self, "api_" + method.lower(), None)
        if handler is None:
            raise ApiError(404, f"Not Found: method {method} is not served by the stand-in")
        return handler(params)

    def api_getme(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    def api_deletewebhook(self, params: dict[str, Any]) -> Any:
        return True

    def api_setmycommands(self, params: dict[str, Any]) -> Any:
        return True

    def api_getupdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 50.0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        with self.cond:
            if offset:  # confirms everything before it, as Telegram does
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while True:
                ready = [u for u in self.updates if u["update_id"] >= offset][:limit]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    return ready
                self.cond.wait(left)

    def api_sendmessage(self, params: dict[str, Any]) -> Any:
        if "chat_id" not in params or not str(params.get("text", "")).strip():
            raise ApiError(400, "Bad Request: chat_id and a non-empty text are required")
        chat_id = int(params["chat_id"])
        with self.cond:
            message: dict[str, Any] = {
                "message_id": next(self._message_ids), "date": int(time.time()), "text": str(params["text"]),
                "chat": {"id": chat_id, "type": "private", "first_name": "Citizen"}, "from": BOT_USER,
            }
            markup = params.get("reply_markup")
            if isinstance(markup, str):
                markup = json.loads(markup)
            if markup:
                message["reply_markup"] = markup
            self.sent.append(message)
            self.cond.notify_all()
            return message

    def api_answercallbackquery(self, params: dict[str, Any]) -> Any:
        with self.cond:
            self.callback_answers.append(dict(params))
            self.cond.notify_all()
        return True

    def api_editmessagereplymarkup(self, params: dict[str, Any]) -> Any:
        with self.cond:
            for m in self.sent:
                if m["message_id"] == int(params.get("message_id", 0)):
                    m.pop("reply_markup", None)
                    return m
        return True


class ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _decode_value(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo print their own
        pass

    def _params(self) -> dict[str, Any]:
        parsed = urllib.parse.urlsplit(self.path)
        params: dict[str, Any] = {k: _decode_value(v[-1]) for k, v in urllib.parse.parse_qs(parsed.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if body and ctype.startswith("application/json"):
            params.update(json.loads(body))
        elif body and ctype.startswith("application/x-www-form-urlencoded"):
            params.update({k: _decode_value(v[-1]) for k, v in urllib.parse.parse_qs(body.decode()).items()})
        return params

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        state = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        try:
            params = self._params()
        except (ValueError, UnicodeDecodeError) as exc:
            self._send(400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"})
            return
        if path.startswith("/_client/"):
            result: Any
            try:
                if path == "/_client/send":
                    result = state.user_message(int(params["user_id"]), str(params["text"]), str(params.get("language_code") or "en"),
                                                bool(params.get("forward")), str(params.get("forward_channel") or ""))
                elif path == "/_client/press":
                    result = state.press(int(params["user_id"]), int(params["message_id"]), str(params["data"]))
                elif path == "/_client/messages":
                    result = state.messages(int(params["chat_id"]), int(params.get("after") or 0), min(float(params.get("wait") or 0), 30.0))
                else:
                    self._send(404, {"error": "unknown client path"})
                    return
            except (KeyError, ValueError) as exc:
                self._send(400, {"error": f"bad parameter: {exc}"})
                return
            self._send(200, result)
            return
        # /bot<token>/<method>
        parts = path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot") or len(parts[0]) < 4:
            self._send(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        try:
            result = state.call(parts[1], params)
        except ApiError as exc:
            self._send(exc.code, {"ok": False, "error_code": exc.code, "description": exc.description})
            return
        self._send(200, {"ok": True, "result": result})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: BotApiState) -> None:
        super().__init__(address, _Handler)
        self.state = state


class BotApiServer:
    """The stand-in on 127.0.0.1 (port 0: any free port), served from a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("the Bot API stand-in only listens on loopback")
        self.state = BotApiState()
        self._server = _Server((host, port), self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="botapi-stand-in", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def bot_base_url(self) -> str:
        """What the bot library takes as its base URL (the token follows)."""
        return f"{self.url}/bot"

    def start(self) -> BotApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.state.cond:
            self.state.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BotApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running_botapi(port: int = 0) -> Iterator[BotApiServer]:
    server = BotApiServer(port=port).start()
    try:
        yield server
    finally:
        server.stop()


class BotApiClient:
    """The citizen's side of a running stand-in, over HTTP (used by `factbridge tipline try`)."""

    def __init__(self, url: str, timeout: float = 35.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def send(self, user_id: int, text: str, language_code: str = "en", forward: bool = False, forward_channel: str = "") -> dict[str, Any]:
        return self._post("/_client/send", {"user_id": user_id, "text": text, "language_code": language_code, "forward": forward,
                                            "forward_channel": forward_channel})

    def press(self, user_id: int, message_id: int, data: str) -> dict[str, Any]:
        return self._post("/_client/press", {"user_id": user_id, "message_id": message_id, "data": data})

    def messages(self, chat_id: int, after: int = 0, wait: float = 0.0) -> list[dict[str, Any]]:
        return self._post("/_client/messages", {"chat_id": chat_id, "after": after, "wait": wait})
