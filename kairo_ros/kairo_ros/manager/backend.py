"""The manager's link to the Models API: one shared client, made when first needed.

Made lazily so that a manager started before its key was provisioned
starts anyway and answers "no API key: ..." until the key appears; dropped
on 401 so that a rotated key file is read again on the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from kairo_ros.api import KairoApiClient, KairoUnauthorizedError, load_api_key
from kairo_ros.manager.params import ManagerParams

T = TypeVar("T")


class BackendLink:
    def __init__(self, params: ManagerParams) -> None:
        self._params = params
        self._client: KairoApiClient | None = None
        self._lock = threading.Lock()

    def call(self, operation: Callable[[KairoApiClient], T]) -> T:
        """Run `operation` with the client; KairoError subclasses pass through."""
        client = self._get()
        try:
            return operation(client)
        except KairoUnauthorizedError:
            self._forget(client)
            raise

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _get(self) -> KairoApiClient:
        with self._lock:
            if self._client is None:
                key = load_api_key(self._params.api_key_file or None)
                self._client = KairoApiClient(self._params.api_url, key, timeout_s=self._params.request_timeout_s)
            return self._client

    def _forget(self, client: KairoApiClient) -> None:
        # Not closed here: other threads may still be using it; it goes with its last user.
        with self._lock:
            if self._client is client:
                self._client = None
