"""Storage backends. `open_storage(url)` picks one by URL scheme."""

from __future__ import annotations

from factbridge.backends.storage.base import Storage
from factbridge.plugins import load_backend


def open_storage(url: str) -> Storage:
    scheme = url.split(":", 1)[0].lower()
    if scheme in {"postgres", "postgresql"}:
        scheme = "postgresql"
    cls = load_backend("factbridge.storage", scheme)
    storage: Storage = cls(url)
    storage.migrate()
    return storage


__all__ = ["Storage", "open_storage"]
