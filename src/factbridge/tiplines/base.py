"""The tipline contract: a messenger bot that receives citizens' messages and sends replies.

A tipline only speaks its messenger's protocol: `poll()` returns what arrived
(messages, button presses) as `Incoming`, `send()` delivers a `Reply`. What to
answer is decided in one place for every messenger (`desk.TiplineDesk`). New
messengers register in the `factbridge.tiplines` entry-point group, exactly
like the built-in Telegram and Zalo ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass
class Incoming:
    """One event from a messenger. `user_id` and `chat_id` are the platform's raw ids: the
    desk turns the user id into a pseudonym at once and keeps the chat id only until a
    pending question has been answered."""

    platform: str
    user_id: str
    chat_id: str
    kind: Literal["message", "feedback"] = "message"
    text: str = ""
    message_id: str = ""
    language_hint: str | None = None  # the messenger's interface language, when it tells
    forwarded: bool = False
    urls: list[str] = field(default_factory=list)
    callback_id: str = ""  # feedback: the button press to acknowledge
    data: str = ""  # feedback: the button's payload
    received_at: float = 0.0  # monotonic clock when polled (latency figures)


@dataclass
class Reply:
    chat_id: str
    text: str
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (label, payload)
    reply_to: str = ""
    ack_callback: str = ""  # feedback: acknowledge this button press instead of sending text
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Tipline(Protocol):
    name: str

    def poll(self, timeout: float) -> list[Incoming]:
        """Wait up to `timeout` seconds for events; return those that arrived (maybe none)."""
        ...

    def send(self, reply: Reply) -> None: ...

    def close(self) -> None: ...
