"""The dashboard's sign-in sessions (kairo_backend.ui): one row per signed-in browser.

The browser holds a random token; only its hash is stored, beside the hash of
the API key it signed in with, so revoking that key ends its sessions at once.
Each session has its own CSRF token, which every state-changing form carries.
"""

from __future__ import annotations

import hashlib
import secrets

from kairo_backend.core import security
from kairo_backend.core.util import now
from kairo_backend.store.db import Store
from kairo_backend.store.rows import NewSession, SessionRow, as_row

SESSION_TTL_S = 12 * 3600  # a working day; signing in again needs the key


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Sessions:
    def __init__(self, store: Store) -> None:
        self.store = store  # its table: kairo_backend/store/migrations (0004)

    def create(self, key: str) -> tuple[str, NewSession] | None:
        """A new session for a valid key: (the browser's token, the session), else None."""
        ws = self.store.workspace_for_key(key)
        if ws is None:
            return None
        token = secrets.token_urlsafe(32)
        t = now()
        session: NewSession = {"workspace_id": ws, "csrf_token": secrets.token_urlsafe(32),
                   "created_at": t, "expires_at": t + SESSION_TTL_S}
        with self.store.tx() as c:
            c.execute("DELETE FROM ui_sessions WHERE expires_at<?", (t,))
            c.execute("INSERT INTO ui_sessions (token_hash, key_hash, workspace_id, csrf_token,"
                      " created_at, expires_at) VALUES (?,?,?,?,?,?)",
                      (_token_hash(token), security.hash_key(key), ws,
                       session["csrf_token"], t, session["expires_at"]))
        return token, session

    def get(self, token: str) -> SessionRow | None:
        """The live session of `token`: unexpired, and its key not revoked."""
        if not token:
            return None
        row = self.store.conn.execute(
            "SELECT s.workspace_id, s.csrf_token, s.created_at, s.expires_at,"
            " w.name AS workspace FROM ui_sessions s"
            " JOIN api_keys k ON k.key_hash=s.key_hash AND k.revoked_at IS NULL"
            " JOIN workspaces w ON w.id=s.workspace_id"
            " WHERE s.token_hash=? AND s.expires_at>?", (_token_hash(token), now())).fetchone()
        return as_row(SessionRow, row) if row else None

    def end(self, token: str) -> None:
        with self.store.tx() as c:
            c.execute("DELETE FROM ui_sessions WHERE token_hash=?", (_token_hash(token),))
