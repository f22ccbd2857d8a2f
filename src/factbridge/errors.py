"""One exception tree for FactBridge. No HTTP codes here: the web layer maps them.

    FactBridgeError
    ├── ConfigError            a setting is missing, malformed or inconsistent
    ├── DependencyMissing      an optional extra is not installed
    ├── InputError             bad input: names the source, line and field
    │   └── QuarantinedRow     one row of a file was set aside (kept, with its reason)
    ├── NotFound               an object does not exist in this organisation's scope
    ├── Conflict               the request contradicts the current state
    │   └── PreconditionFailed a conditional write found another state than it expected
    ├── PermissionDenied       the caller may not do this
    │   └── NotAuthenticated   nobody is signed in (or the token is unknown)
    ├── RateLimited            too many attempts from one client; try again later
    ├── StorageError           the database failed or its schema is not what we expect
    ├── QueueError             the work queue (NATS JetStream) failed or cannot be reached
    ├── EmbedderMismatch       vectors from one embedder met an index built with another
    └── ModelError             a bundled or user model cannot be loaded or used
"""

from __future__ import annotations


class FactBridgeError(Exception):
    """Base of every error FactBridge raises on purpose."""


class ConfigError(FactBridgeError):
    pass


class DependencyMissing(FactBridgeError):
    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'factbridge[{extra}]'"
        )
        self.package = package
        self.extra = extra


class InputError(FactBridgeError):
    """Bad input. `source`, `line` and `field` say where, when known."""

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = ""
        if self.source:
            where = self.source
            if self.line is not None:
                where += f":{self.line}"
        if self.field:
            where += f" field '{self.field}'" if where else f"field '{self.field}'"
        return f"{where}: {self.reason}" if where else self.reason


class QuarantinedRow(InputError):
    pass


class NotFound(FactBridgeError):
    pass


class Conflict(FactBridgeError):
    """`current` carries what the caller needs to retry (e.g. the case's current version)."""

    def __init__(self, message: str, current: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.current = current or {}


class PreconditionFailed(Conflict):
    """A conditional write (`Storage.put_docs_batch(expect=...)`) found the document in another
    state than expected: nothing of the write was stored. `key` is (org, collection, id)."""

    def __init__(self, message: str, key: tuple[str, str, str]) -> None:
        super().__init__(message)
        self.key = key


class PermissionDenied(FactBridgeError):
    pass


class NotAuthenticated(PermissionDenied):
    pass


class RateLimited(FactBridgeError):
    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageError(FactBridgeError):
    pass


class QueueError(FactBridgeError):
    pass


class EmbedderMismatch(FactBridgeError):
    pass


class ModelError(FactBridgeError):
    pass
