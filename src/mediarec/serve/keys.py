"""API keys for ``mediarec serve``: ``mediarec keys add/list/revoke``.

A key is shown once, at creation; the store keeps its salted sha256 only, so a copy of
``$MEDIAREC_HOME/serve/keys.json`` lets no one in. A key reads ``mrk_<id>_<secret>``: the id finds
the record, the secret is checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mediarec.errors import MediarecError
from mediarec.infra.atomic import atomic_write_text

PREFIX = "mrk_"
DEFAULT_RATE = 20.0  # requests per second a key may make, sustained (bursts of twice that)


class KeyRecord(BaseModel):
    id: str
    name: str
    salt: str
    sha256: str
    created: float
    rate: float = DEFAULT_RATE
    revoked: float | None = None

    def public(self) -> dict[str, Any]:
        """What ``keys list`` shows: never the hash or the salt."""
        return {"id": self.id, "name": self.name, "created": self.created, "rate": self.rate,
                "revoked": self.revoked}


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode("utf-8")).hexdigest()


class KeyStore:
    """The keys of one home, read at start and on every change (one small JSON file, 0o600)."""

    def __init__(self, home: str | Path):
        self.path = Path(home) / "serve" / "keys.json"
        self._lock = threading.Lock()

    def _read(self) -> dict[str, KeyRecord]:
        if not self.path.is_file():
            return {}
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
            return {r["id"]: KeyRecord.model_validate(r) for r in rows}
        except (ValueError, KeyError, TypeError) as e:
            raise MediarecError(f"the key store is damaged ({type(e).__name__}); remove it and add keys again") from e

    def _write(self, keys: dict[str, KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps([k.model_dump() for k in keys.values()], indent=2) + "\n",
                          private=True)

    def add(self, name: str, rate: float = DEFAULT_RATE) -> tuple[KeyRecord, str]:
        """A new key: its record and the key itself (shown once, never stored)."""
        if not name.strip():
            raise MediarecError("give the key a name (--name), e.g. the app that will use it")
        if not rate > 0:
            raise MediarecError("--rate must be above 0 (requests per second)")
        with self._lock:
            keys = self._read()
            kid = secrets.token_hex(4)
            while kid in keys:
                kid = secrets.token_hex(4)
            secret, salt = secrets.token_urlsafe(24), secrets.token_hex(16)
            rec = KeyRecord(id=kid, name=name.strip(), salt=salt, sha256=_digest(salt, secret),
                            created=time.time(), rate=rate)
            keys[kid] = rec
            self._write(keys)
        return rec, f"{PREFIX}{kid}_{secret}"

    def list(self) -> list[KeyRecord]:
        return sorted(self._read().values(), key=lambda r: r.created)

    def revoke(self, kid: str) -> KeyRecord:
        with self._lock:
            keys = self._read()
            if kid not in keys:
                raise MediarecError(f"no key with id {kid!r} (`mediarec keys list` shows the ids)")
            if keys[kid].revoked is None:
                keys[kid] = keys[kid].model_copy(update={"revoked": time.time()})
                self._write(keys)
            return keys[kid]

    def load(self) -> "KeyChecker":
        return KeyChecker(self._read())


class KeyChecker:
    """Checks presented keys against the records read at one moment (the server re-reads on change)."""

    def __init__(self, keys: dict[str, KeyRecord]):
        self.keys = keys

    def check(self, presented: str | None) -> KeyRecord | None:
        """The record of a valid, unrevoked key; None for anything else (no detail: never a hint)."""
        if not presented or not presented.startswith(PREFIX):
            return None
        kid, sep, secret = presented[len(PREFIX):].partition("_")
        rec = self.keys.get(kid)
        if not sep or rec is None:
            _digest("0" * 32, secret)  # the same work either way
            return None
        ok = hmac.compare_digest(_digest(rec.salt, secret), rec.sha256)
        return rec if ok and rec.revoked is None else None
