"""API keys (only a hash is stored) and HMAC-signed download links."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_PREFIX = "kai_live_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_hex(16)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id(key: str) -> str:
    """The key's public name (from its hash; the same one migrated keys get)."""
    return "key_" + hash_key(key)[:12]


def key_prefix(key: str) -> str:
    """The first characters of a key, enough to recognise it, never to use it."""
    return key[:len(KEY_PREFIX) + 4]


def load_or_create_secret(path: Path) -> bytes:
    """The per-data-dir signing secret, created on first use (mode 0600)."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.hex().encode())
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return secret


def sign(secret: bytes, resource: str, expires: int) -> str:
    msg = f"{resource}\n{expires}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def verify(secret: bytes, resource: str, expires: int, signature: str, now: float) -> bool:
    """True when the signature matches and the link has not expired."""
    expected = sign(secret, resource, expires)
    return hmac.compare_digest(expected, signature) and now <= expires
