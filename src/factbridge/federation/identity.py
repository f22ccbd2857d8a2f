"""The deployment's Ed25519 identity, its key statements, and a partner's key ring.

Our keys live in `data_dir/federation/` (private keys as PEM files readable by the owner only,
generated on first use; never in code or settings). What partners need to follow our keys is a
list of signed *statements*, published at `/federation/v1/keys`:

    {"type": "key", "key_id", "public_key", "created_at", "endorsed_by", "signature"}
        a key, signed by the key that endorses it: the first key by itself (partners pin it
        with `partners add --key`), every later key by the key it replaces (rotation);
    {"type": "revoke", "key_id", "revoked_at", "reason", "signed_by", "signature"}
        a key is revoked (signed by any of our keys that is not itself revoked).

A partner's `KeyRing` starts from the pinned key and takes in a statement only when a key it
already trusts signed it, so a feed can never introduce a key of its own choosing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from factbridge.errors import ConfigError, InputError, NotFound
from factbridge.federation.canonical import b64d, b64e, canonical_bytes

KEY_PREFIX = "ed25519:"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def key_id_of(raw_public: bytes) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def public_key_text(raw_public: bytes) -> str:
    return KEY_PREFIX + b64e(raw_public)


def parse_public_key(text: str, field: str = "key") -> bytes:
    """`ed25519:<base64url of the 32 raw bytes>` -> the raw bytes (InputError naming the field)."""
    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        raise InputError(f"a public key looks like {KEY_PREFIX}<base64url>, got {text[:30]!r}", field=field)
    raw = b64d(text[len(KEY_PREFIX):], field)
    if len(raw) != 32:
        raise InputError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}", field=field)
    return raw


def sign_body(private: Ed25519PrivateKey, body: dict[str, Any]) -> str:
    """Signature (base64url) of the body's canonical JSON, the body's own `signature` left out."""
    return b64e(private.sign(canonical_bytes({k: v for k, v in body.items() if k != "signature"})))


def signature_valid(raw_public: bytes, body: dict[str, Any], signature: str) -> bool:
    try:
        sig = b64d(signature, "signature")
        Ed25519PublicKey.from_public_bytes(raw_public).verify(sig, canonical_bytes({k: v for k, v in body.items() if k != "signature"}))
    except (InvalidSignature, InputError, ValueError):
        return False
    return True


@dataclass
class OwnKey:
    key_id: str
    private: Ed25519PrivateKey

    @property
    def raw_public(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def public_text(self) -> str:
        return public_key_text(self.raw_public)


class Identity:
    """Our Ed25519 keys and statements in `data_dir/federation` (created on first use)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir) / "federation"
        self.keys_dir = self.root / "keys"
        self.statements_path = self.root / "statements.json"

    # -- files ---------------------------------------------------------------
    def statements(self) -> list[dict[str, Any]]:
        if not self.statements_path.exists():
            return []
        try:
            data = json.loads(self.statements_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.statements_path}: unreadable key statements: {exc}") from exc
        if not isinstance(data, list):
            raise ConfigError(f"{self.statements_path}: expected a list of key statements")
        return data

    def _write_statements(self, statements: list[dict[str, Any]]) -> None:
        tmp = self.statements_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(statements, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.statements_path)  # atomic: readers see the old list or the new one

    def _save_private(self, private: Ed25519PrivateKey, key_id: str) -> None:
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        path = self.keys_dir / f"{key_id}.pem"
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)

    def _load_private(self, key_id: str) -> Ed25519PrivateKey:
        path = self.keys_dir / f"{key_id}.pem"
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: the private key of our active key {key_id} is missing") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 private key")
        return private

    def salt(self) -> bytes:
        """A secret of this deployment that makes editors' pseudonyms unguessable from their names."""
        path = self.root / "pseudonym.salt"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())

    # -- keys ----------------------------------------------------------------
    def revoked(self) -> dict[str, dict[str, Any]]:
        return {s["key_id"]: s for s in self.statements() if s.get("type") == "revoke"}

    def key_ids(self) -> list[str]:
        return [s["key_id"] for s in self.statements() if s.get("type") == "key"]

    def active(self) -> OwnKey:
        """The signing key: the newest key that is not revoked; the first one is made on first use."""
        revoked = self.revoked()
        live = [k for k in self.key_ids() if k not in revoked]
        if not live:
            if self.key_ids():
                raise ConfigError("every key of this deployment is revoked: run `factbridge partners rotate-key`")
            return self.rotate()
        key_id = live[-1]
        return OwnKey(key_id, self._load_private(key_id))

    def ensure(self) -> OwnKey:
        return self.active()

    def rotate(self) -> OwnKey:
        """A new signing key, endorsed by the one it replaces (self-signed when it is the first)."""
        self.root.mkdir(parents=True, exist_ok=True)
        statements = self.statements()
        revoked = self.revoked()
        live = [k for k in self.key_ids() if k not in revoked]
        private = Ed25519PrivateKey.generate()
        new = OwnKey("", private)
        new.key_id = key_id_of(new.raw_public)
        endorser = OwnKey(live[-1], self._load_private(live[-1])) if live else new
        statement: dict[str, Any] = {"type": "key", "key_id": new.key_id, "public_key": new.public_text,
                                     "created_at": now_iso(), "endorsed_by": endorser.key_id}
        statement["signature"] = sign_body(endorser.private, statement)
        self._save_private(private, new.key_id)
        self._write_statements([*statements, statement])
        return new

    def revoke(self, key_id: str, reason: str) -> dict[str, Any]:
        """Revoke one of our keys (signed by a live key; a new one is made first if it was the last)."""
        if key_id not in self.key_ids():
            raise NotFound(f"no key {key_id} in this deployment (keys: {', '.join(self.key_ids()) or 'none'})")
        revoked = self.revoked()
        if key_id in revoked:
            return revoked[key_id]
        live = [k for k in self.key_ids() if k not in revoked and k != key_id]
        signer = OwnKey(live[-1], self._load_private(live[-1])) if live else self.rotate()
        statement: dict[str, Any] = {"type": "revoke", "key_id": key_id, "revoked_at": now_iso(),
                                     "reason": reason.strip() or "revoked", "signed_by": signer.key_id}
        statement["signature"] = sign_body(signer.private, statement)
        self._write_statements([*self.statements(), statement])
        # the private key is kept (renamed) so nothing is lost, but it can no longer be loaded to sign
        path = self.keys_dir / f"{key_id}.pem"
        if path.exists():
            os.replace(path, self.keys_dir / f"{key_id}.pem.revoked")
        return statement


@contextmanager
def folder_lock(identity: Identity, name: str) -> Iterator[None]:
    """An exclusive lock across the processes of this deployment (web server, CLI, push handler):
    they share the data folder, where the keys are."""
    identity.root.mkdir(parents=True, exist_ok=True)
    with open(identity.root / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class KeyRing:
    """A partner's keys as we know them: pinned, endorsed by a trusted key, or revoked.

    `keys` maps key id -> {"public_key", "status": "trusted"|"revoked", "via", "revoked_at", "reason"}."""

    def __init__(self, keys: dict[str, dict[str, Any]]) -> None:
        self.keys = {k: dict(v) for k, v in keys.items()}

    @classmethod
    def pinned(cls, public_key: str) -> KeyRing:
        raw = parse_public_key(public_key)
        return cls({key_id_of(raw): {"public_key": public_key_text(raw), "status": "trusted", "via": "pinned"}})

    def trusted(self, key_id: str) -> bool:
        return self.keys.get(key_id, {}).get("status") == "trusted"

    def raw(self, key_id: str) -> bytes:
        return parse_public_key(self.keys[key_id]["public_key"])

    def apply(self, statements: Iterable[dict[str, Any]]) -> list[str]:
        """Take in the statements signed by keys we trust; returns what changed, in words.
        Statements signed by anyone else are ignored (they cannot add or revoke anything)."""
        pending = [s for s in statements if isinstance(s, dict)]
        changes: list[str] = []
        progress = True
        while progress:
            progress = False
            for statement in list(pending):
                kind = statement.get("type")
                signer = statement.get("endorsed_by") if kind == "key" else statement.get("signed_by")
                key_id = str(statement.get("key_id", ""))
                if not isinstance(signer, str) or signer not in self.keys:
                    continue
                if kind == "revoke" and key_id not in self.keys:
                    continue  # about a key we may learn of later in this list
                pending.remove(statement)
                # a revoked key cannot endorse new keys; it may still have signed its own revocation
                if kind == "key" and not self.trusted(signer):
                    continue
                if not signature_valid(self.raw(signer), statement, str(statement.get("signature", ""))):
                    continue
                if kind == "key" and key_id not in self.keys:
                    try:
                        raw = parse_public_key(str(statement.get("public_key", "")))
                    except InputError:
                        continue
                    if key_id_of(raw) != key_id:
                        continue
                    self.keys[key_id] = {"public_key": public_key_text(raw), "status": "trusted", "via": f"endorsed by {signer}"}
                    changes.append(f"key {key_id} added (endorsed by {signer})")
                    progress = True
                elif kind == "revoke" and key_id in self.keys and self.keys[key_id]["status"] != "revoked":
                    self.keys[key_id].update(status="revoked", revoked_at=statement.get("revoked_at"), reason=statement.get("reason", ""))
                    changes.append(f"key {key_id} revoked ({statement.get('reason', '')})")
                    progress = True
        return changes
