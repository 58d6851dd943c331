"""Every error `kairo_ros.api` raises.

    KairoError                      base: catch this to catch everything below
    ├── KairoArgumentError          an argument is unusable before any request
    │                               (an empty ID, an unknown format)
    ├── KairoCredentialsError       no API key, or the key file cannot be read
    ├── KairoConnectionError        transport: the URL could not be reached or
    │                               did not answer within the deadline
    ├── KairoResponseError          a 2xx answer that is not the JSON expected
    ├── KairoIntegrityError         a download whose sha256 differs from the stated one
    └── KairoApiError               the API answered with an error (status, code, message)
        ├── KairoBadRequestError    400 invalid_request (and 413 payload_too_large)
        ├── KairoUnauthorizedError  401: the key is missing, wrong or revoked
        ├── KairoForbiddenError     403: e.g. an expired or tampered download link
        ├── KairoNotFoundError      404: unknown ID, or another workspace's
        ├── KairoConflictError      409: e.g. promoting an unfinished version
        ├── KairoValidationError    422: the message names the field
        ├── KairoRateLimitedError   429: `retry_after_s` says when to come back
        └── KairoServerError        5xx
            └── KairoUnavailableError  503

Messages say what went wrong and what to do, and name the URL involved
(without its query string, which may carry a signature); they never carry
the API key.
"""

from __future__ import annotations


class KairoError(Exception):
    """Base of every error of the Kairo API client."""

    code = "kairo_error"


class KairoArgumentError(KairoError, ValueError):
    """An argument is unusable before any request is made (empty ID, unknown format)."""

    code = "invalid_argument"


class KairoCredentialsError(KairoError):
    """No API key was found, or the key file could not be read."""

    code = "credentials"


class KairoConnectionError(KairoError):
    """The URL could not be reached, or did not answer within the deadline."""

    code = "unreachable"

    def __init__(self, url: str, reason: str, tries: int = 1) -> None:
        what = reason if tries == 1 else f"{reason} ({tries} tries)"
        super().__init__(f"could not reach {url}: {what}; check that the Kairo backend runs there "
                         f"and that api_url is right")
        self.url = url
        self.reason = reason
        self.tries = tries


class KairoResponseError(KairoError):
    """A successful status with a body that is not what the API documents."""

    code = "bad_response"


class KairoIntegrityError(KairoError):
    """A downloaded file's sha256 differs from the one the API stated."""

    code = "integrity"

    def __init__(self, url: str, expected_sha256: str, actual_sha256: str) -> None:
        super().__init__(f"download from {url} has sha256 {actual_sha256}, expected {expected_sha256}; "
                         f"nothing was written; request the export again")
        self.url = url
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256


class KairoApiError(KairoError):
    """The API answered with an error: HTTP `status`, stable `code`, human `message`."""

    def __init__(self, status: int, code: str, message: str, method: str, url: str) -> None:
        hint = _HINTS.get(status, "")
        super().__init__(f"{method} {url} answered {status} {code}: {message}{hint}")
        self.status = status
        self.code = code
        self.api_message = message
        self.method = method
        self.url = url


class KairoBadRequestError(KairoApiError):
    """400 invalid_request, 413 payload_too_large."""


class KairoUnauthorizedError(KairoApiError):
    """401: the key is missing, wrong or revoked."""


class KairoForbiddenError(KairoApiError):
    """403: not allowed, e.g. an expired or tampered download link."""


class KairoNotFoundError(KairoApiError):
    """404: no such object in this key's workspace."""


class KairoConflictError(KairoApiError):
    """409: the object's state does not allow it (yet)."""


class KairoValidationError(KairoApiError):
    """422: a field is missing or wrong; the message names it."""


class KairoRateLimitedError(KairoApiError):
    """429: too many requests; `retry_after_s` is the server's Retry-After (or None)."""

    def __init__(self, status: int, code: str, message: str, method: str, url: str,
                 retry_after_s: float | None = None) -> None:
        super().__init__(status, code, message, method, url)
        self.retry_after_s = retry_after_s


class KairoServerError(KairoApiError):
    """5xx: the backend failed; retry later."""


class KairoUnavailableError(KairoServerError):
    """503: the backend is up but cannot serve now."""


_HINTS = {
    401: "; check KAIRO_API_KEY or the api_key_file parameter",
    403: "; for a download link, request the export again",
    404: "; check the ID: it must exist in this API key's workspace",
    429: "; retry later",
    503: "; retry later",
}

_BY_STATUS: dict[int, type[KairoApiError]] = {
    400: KairoBadRequestError,
    401: KairoUnauthorizedError,
    403: KairoForbiddenError,
    404: KairoNotFoundError,
    409: KairoConflictError,
    413: KairoBadRequestError,
    422: KairoValidationError,
    429: KairoRateLimitedError,
    503: KairoUnavailableError,
}


def api_error_class(status: int) -> type[KairoApiError]:
    """The exception class for an HTTP error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return KairoServerError if status >= 500 else KairoApiError
