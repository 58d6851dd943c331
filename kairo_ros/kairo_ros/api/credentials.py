"""The API key: where it comes from, and a holder that never prints it.

The key comes from a key file (when one is named: an explicit setting wins)
or from the `KAIRO_API_KEY` environment variable. It is never a ROS
parameter value, never logged, and never part of a repr or an exception.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

from kairo_ros.api.errors import KairoCredentialsError

API_KEY_ENV = "KAIRO_API_KEY"


class ApiKey:
    """An API key whose str() and repr() are redacted; `reveal()` gives the key."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise KairoCredentialsError("the API key is empty")
        if any(c.isspace() for c in value):
            raise KairoCredentialsError("the API key contains whitespace; the key file must hold only the key")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would write the key to wherever the pickle goes.
        raise TypeError("ApiKey cannot be pickled")


def load_api_key(key_file: str | os.PathLike[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> ApiKey:
    """The key from `key_file` when given, else from KAIRO_API_KEY.

    Raises KairoCredentialsError (naming the file or the variable, never a
    key) when neither gives one.
    """
    env = os.environ if environ is None else environ
    if key_file:
        path = pathlib.Path(key_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KairoCredentialsError(f"cannot read the API key file {path}: {exc.strerror or exc}; "
                                        f"write the key into it or unset api_key_file") from None
        try:
            return ApiKey(text)
        except KairoCredentialsError as exc:
            raise KairoCredentialsError(f"API key file {path}: {exc}") from None
    value = env.get(API_KEY_ENV, "")
    if not value.strip():
        raise KairoCredentialsError(f"no API key: set {API_KEY_ENV} or name a key file (api_key_file parameter)")
    return ApiKey(value)
