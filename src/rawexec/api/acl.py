"""ACL tokens for the HTTP API: bootstrap once, store only hashes, check each request.

Tokens live in ``<data_dir>/acl-tokens.json`` (mode 0600), written atomically. A token's secret
is shown in the bootstrap response (and, as in Nomad, to its holder by ``/v1/acl/token/self``);
the file keeps its SHA-256, which is enough for a 122-bit random secret (no slow hash needed:
there is nothing to brute-force). ``BootstrapSecret`` lets the operator choose the secret (a UUID).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from rawexec.errors import InvalidConfigError, RawExecError

__all__ = ["ACLBootstrapDoneError", "ACLDisabledError", "ACLToken", "InvalidBootstrapSecretError",
           "PermissionDeniedError", "TokenStore"]

TOKENS_FILE = "acl-tokens.json"
_VERSION = 1
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class ACLDisabledError(RawExecError):
    """ACL endpoints were called on an agent without ``acl { enabled = true }``."""

    grpc_code = "FAILED_PRECONDITION"

    def __init__(self) -> None:
        super().__init__("ACL support disabled")


class ACLBootstrapDoneError(RawExecError):
    """``acl bootstrap`` was already done."""

    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, reset_index: int) -> None:
        super().__init__(f"ACL bootstrap already done (reset index: {reset_index})")


class InvalidBootstrapSecretError(RawExecError):
    """``BootstrapSecret`` is not a UUID (Nomad's text: ``invalid acl token``, HTTP 400)."""

    grpc_code = "INVALID_ARGUMENT"

    def __init__(self) -> None:
        super().__init__("invalid acl token")


class PermissionDeniedError(RawExecError):
    """A request without a valid token (HTTP 403)."""

    grpc_code = "PERMISSION_DENIED"

    def __init__(self, message: str = "Permission denied") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class ACLToken:
    """One token (the secret only when just created)."""

    accessor_id: str
    name: str
    type: str
    create_time_ns: int
    create_index: int
    secret_id: str = ""

    def to_api(self) -> dict[str, Any]:
        """Nomad's ``ACLToken`` JSON."""
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.create_time_ns / 1e9))
        frac = self.create_time_ns % 1_000_000_000
        return {
            "AccessorID": self.accessor_id, "SecretID": self.secret_id, "Name": self.name, "Type": self.type,
            "Policies": None, "Roles": None, "Global": True, "ExpirationTime": None,
            "CreateTime": f"{created}.{frac:09d}Z", "CreateIndex": self.create_index,
            "ModifyIndex": self.create_index,
        }


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenStore:
    """The agent's tokens, kept hashed in ``<data_dir>/acl-tokens.json``."""

    def __init__(self, data_dir: str, *, enabled: bool) -> None:
        self.enabled = enabled
        self.path = os.path.join(data_dir, TOKENS_FILE)
        self._lock = threading.Lock()
        self._tokens: list[dict[str, Any]] = []
        self._bootstrap_index = 0
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise InvalidConfigError(f"{self.path}: cannot read the ACL token file: {e}; "
                                     "restore it or remove it and bootstrap again") from None
        if not isinstance(doc, dict) or doc.get("Version") != _VERSION or not isinstance(doc.get("Tokens"), list):
            raise InvalidConfigError(f"{self.path}: not an ACL token file of this version; "
                                     "restore it or remove it and bootstrap again")
        self._tokens = [t for t in doc["Tokens"] if isinstance(t, dict) and isinstance(t.get("SecretHash"), str)]
        self._bootstrap_index = int(doc.get("BootstrapIndex", 0))

    def _save(self) -> None:
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"Version": _VERSION, "BootstrapIndex": self._bootstrap_index, "Tokens": self._tokens}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @property
    def bootstrapped(self) -> bool:
        return self._bootstrap_index > 0

    def bootstrap(self, secret: str | None = None) -> ACLToken:
        """Create the management token, once. Raises :class:`ACLBootstrapDoneError` after that.

        ``secret`` (the API's ``BootstrapSecret``, Nomad 1.4+) becomes the token's SecretID; it must
        be a UUID (:class:`InvalidBootstrapSecretError` otherwise). Without it one is generated.
        """
        if not self.enabled:
            raise ACLDisabledError()
        with self._lock:
            if self._bootstrap_index:
                raise ACLBootstrapDoneError(self._bootstrap_index)
            if secret and not _UUID_RE.fullmatch(secret):
                raise InvalidBootstrapSecretError()
            secret = secret or str(uuid.uuid4())
            tok = ACLToken(accessor_id=str(uuid.uuid4()), name="Bootstrap Token", type="management",
                           create_time_ns=time.time_ns(), create_index=len(self._tokens) + 1, secret_id=secret)
            self._tokens.append({"AccessorID": tok.accessor_id, "Name": tok.name, "Type": tok.type,
                                 "CreateTime": tok.create_time_ns, "CreateIndex": tok.create_index,
                                 "SecretHash": _hash(secret)})
            self._bootstrap_index = tok.create_index
            self._save()
            return tok

    def resolve(self, secret: str | None) -> ACLToken:
        """The token for ``secret``; :class:`PermissionDeniedError` when missing or unknown."""
        if not secret:
            raise PermissionDeniedError()
        digest = _hash(secret)
        for t in self._tokens:
            if hmac.compare_digest(t["SecretHash"], digest):
                return ACLToken(accessor_id=t["AccessorID"], name=t["Name"], type=t["Type"],
                                create_time_ns=t["CreateTime"], create_index=t["CreateIndex"])
        raise PermissionDeniedError("ACL token not found")
