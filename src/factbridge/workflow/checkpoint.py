"""Signed checkpoints of the audit chain, kept outside the database.

The hash chain proves that the log was not edited *unless* someone with write
access to the database recomputes every hash from the edited entry to the end
(and the head). A checkpoint anchors the chain head outside the database: a
small JSON file `{org, seq, hash, at}` signed with an Ed25519 key. The key is
made on first use in the data folder (`audit-signing.key`, mode 0600; its public
half beside it), never in code or in the database. `AuditLog.append` writes a
new checkpoint after every entry, `factbridge audit checkpoint` writes one on
demand, and `verify` checks that the entry the latest checkpoint names still
has the hash the checkpoint signed: a chain recomputed end to end (or cut
short below the checkpoint) no longer does.

A copy of the checkpoints (and the public key) kept elsewhere, or a partner
that received the signed head (see `signed_head`), anchors it further: whoever
holds the data folder can re-sign.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from factbridge.errors import ConfigError

KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
CHECKPOINT_DIR = "audit-checkpoints"
SIGNED_FIELDS = ("org", "seq", "hash", "at", "key_id")


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps({k: body[k] for k in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Checkpoints:
    """The signing key and the latest checkpoint per organisation, in one folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._key: Ed25519PrivateKey | None = None

    # -- the key ---------------------------------------------------------------
    def _private_key(self) -> Ed25519PrivateKey:
        if self._key is not None:
            return self._key
        path = self.folder / KEY_FILE
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            self.folder.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: of two processes making the key at once, one wins and both use its key
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
                public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                _write_atomic(self.folder / PUBLIC_KEY_FILE, public)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 private key")
        self._key = loaded
        return loaded

    def public_key(self) -> Ed25519PublicKey:
        return self._private_key().public_key()

    def key_id(self) -> str:
        raw = self.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return raw.hex()

    # -- checkpoints -------------------------------------------------------------
    def path(self, org: str) -> Path:
        return self.folder / CHECKPOINT_DIR / f"{org}.json"

    def sign(self, org: str, seq: int, head_hash: str) -> dict[str, Any]:
        body: dict[str, Any] = {"org": org, "seq": seq, "hash": head_hash, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                                "key_id": self.key_id()}
        body["signature"] = self._private_key().sign(_canonical(body)).hex()
        return body

    def write(self, org: str, seq: int, head_hash: str, *, force: bool = False) -> dict[str, Any]:
        """Sign and store the head, unless a checkpoint of a later entry is already there (two
        processes appending: the file only moves forward). `force` (the operator's `audit
        checkpoint`, e.g. after restoring a backup on purpose) stores it whatever is there."""
        current = self.latest(org)
        if not force and current is not None and not current.get("unreadable") and int(current.get("seq", 0)) > seq:
            return current
        body = self.sign(org, seq, head_hash)
        _write_atomic(self.path(org), json.dumps(body, indent=1).encode("utf-8"))
        return body

    def latest(self, org: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path(org).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"unreadable": True}
        return data if isinstance(data, dict) else {"unreadable": True}

    def problem(self, body: dict[str, Any], org: str) -> str | None:
        """Why a checkpoint cannot be trusted, or None."""
        if body.get("unreadable") or not all(k in body for k in (*SIGNED_FIELDS, "signature")):
            return f"the checkpoint file of org {org} is unreadable or incomplete"
        if body["org"] != org:
            return f"the checkpoint file of org {org} is for org {body['org']}"
        if body["key_id"] != self.key_id():
            return f"the checkpoint of org {org} was signed by another key ({str(body['key_id'])[:16]}...)"
        try:
            self.public_key().verify(bytes.fromhex(str(body["signature"])), _canonical(body))
        except (InvalidSignature, ValueError):
            return f"the checkpoint signature of org {org} is invalid (the file was edited)"
        return None
