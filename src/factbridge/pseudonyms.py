"""Pseudonymous account ids: a keyed HMAC of the platform's own id.

The key is a random secret kept in data_dir (created on first use, readable by
the owner only), so the same account always maps to the same pseudonym inside
one installation (needed for rate limits, opt-out, coordination), while nobody
without the key can go back from a pseudonym to the account, a phone number or
a profile. Rotating the file breaks the link with everything stored before.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = "pseudonym.key"


def load_secret(data_dir: str | Path) -> bytes:
    path = Path(data_dir) / SECRET_FILE
    if path.exists():
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    # O_EXCL: two processes starting at once must not each write their own key
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex())
    return key


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym key must have at least 16 bytes")
        self._key = key

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> Pseudonymizer:
        return cls(load_secret(data_dir))

    def __call__(self, platform: str, account_id: str | int) -> str:
        """`platform:` + 20 hex characters of HMAC-SHA256(key, platform NUL id)."""
        if account_id in (None, ""):
            return ""
        digest = hmac.new(self._key, f"{platform}\x00{account_id}".encode(), hashlib.sha256).hexdigest()
        return f"{platform}:{digest[:20]}"
