"""One HTTP exchange with the cloud: URL, headers, JSON, the timeout, error typing, and the
automatic retries of requests that are safe to repeat."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Union

from ._version import __version__
from .errors import (
    EftcloudError,
    NetworkError,
    RequestTimeoutError,
    ServerError,
    error_from_response,
)

API_VERSION = "2026-12-01"
"""The API version this SDK is written against, sent as ``Eftcloud-Version``."""

QueryValue = Union[str, int, float, bool, None]

RETRY_BASE_DELAY = 0.5
"""First retry delay in seconds; it doubles with each retry, unless the cloud says ``Retry-After``."""
RETRY_MAX_DELAY = 5.0
"""Longest delay between two retries, in seconds."""
LONG_POLL_MARGIN = 10.0
"""What a long-poll's timeout gets on top of its ``wait``, in seconds."""


@dataclass(frozen=True)
class HttpRequest:
    """One request as the transport sends it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: Optional[bytes]
    timeout: float
    """Seconds to wait for the answer."""


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer, whatever its status."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header names in lower case."""


Transport = Callable[[HttpRequest], HttpResponse]
"""Sends a request and returns the answer (any status), or raises :class:`NetworkError`."""


def urllib_transport(request: HttpRequest) -> HttpResponse:
    """The default transport, over ``urllib.request``."""
    prepared = urllib.request.Request(
        request.url,
        data=request.body,
        headers=dict(request.headers),
        method=request.method,
    )
    what = f"{request.method} {urllib.parse.urlsplit(request.url).path}"
    try:
        with urllib.request.urlopen(prepared, timeout=request.timeout) as answer:
            return HttpResponse(answer.status, answer.read(), _lower(answer.headers))
    except urllib.error.HTTPError as answer:
        with answer:
            return HttpResponse(answer.code, answer.read(), _lower(answer.headers))
    except urllib.error.URLError as error:
        if isinstance(error.reason, socket.timeout):
            raise RequestTimeoutError(f"{what}: no answer within {request.timeout:g} s") from error
        raise NetworkError(f"{what}: {error.reason}") from error
    except socket.timeout as error:
        raise RequestTimeoutError(f"{what}: no answer within {request.timeout:g} s") from error
    except (OSError, http.client.HTTPException) as error:
        raise NetworkError(f"{what}: {error!r}") from error


@dataclass(frozen=True)
class HttpSettings:
    """The settings every request uses (from the client's arguments)."""

    base_url: str
    """Without a trailing slash."""
    api_key: Optional[str]
    api_version: str
    timeout: float
    max_retries: int
    transport: Transport


def send(
    settings: HttpSettings,
    method: str,
    path: str,
    *,
    query: Optional[Mapping[str, QueryValue]] = None,
    body: Optional[Mapping[str, Any]] = None,
    retryable: bool,
    wait: Optional[float] = None,
) -> Any:
    """Sends a request and returns its parsed JSON body (None for an empty body), or raises the
    typed error.

    :param path: below the base URL, starting with ``/``, its segments already encoded
    :param body: sent as JSON
    :param retryable: the request may be sent again after a network error or a 5xx: it reads
        only, or it carries a ``PosReference`` so that the cloud answers a repeat with the
        original. It is then sent up to ``max_retries`` more times.
    :param wait: a long-poll's ``wait`` in seconds: the timeout is extended by it
    """
    headers = {
        "Accept": "application/json",
        "Eftcloud-Version": settings.api_version,
        "User-Agent": f"eftcloud-python/{__version__}",
    }
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode("utf-8")
    timeout = settings.timeout + (wait + LONG_POLL_MARGIN if wait else 0)
    request = HttpRequest(method, build_url(settings.base_url, path, query), headers, data, timeout)
    attempt = 0
    while True:
        try:
            return _send_once(settings.transport, request)
        except (NetworkError, ServerError) as error:
            if not retryable or attempt >= settings.max_retries:
                raise
            time.sleep(_retry_delay(error, attempt))
            attempt += 1


def _send_once(transport: Transport, request: HttpRequest) -> Any:
    response = transport(request)
    text = response.body.decode("utf-8", errors="replace")
    if not 200 <= response.status < 300:
        raise error_from_response(response.status, text, response.headers.get("retry-after"))
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise EftcloudError(
            f"{request.method} {request.url}: the answer is not JSON",
            status=response.status,
        ) from error


def normalize_base_url(base_url: str) -> str:
    """The cloud's base URL without a trailing slash; a SmartConnect-style environment URL
    (``https://host/POS``) becomes the cloud's (``https://host``)."""
    parts = urllib.parse.urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http or https URL, not {base_url!r}")
    path = re.sub(r"/pos$", "", parts.path.rstrip("/"), flags=re.IGNORECASE)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def build_url(base_url: str, path: str, query: Optional[Mapping[str, QueryValue]] = None) -> str:
    """``{base}{path}?{query}``, leaving out None values; booleans as ``true``/``false``."""
    pairs = [(k, _query_text(v)) for k, v in (query or {}).items() if v is not None]
    return f"{base_url}{path}" + (f"?{urllib.parse.urlencode(pairs)}" if pairs else "")


def path_segment(value: str) -> str:
    """``value`` as one path segment, percent-encoded."""
    return urllib.parse.quote(value, safe="")


def _query_text(value: QueryValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _retry_delay(error: EftcloudError, attempt: int) -> float:
    if isinstance(error, ServerError) and error.retry_after is not None:
        return min(error.retry_after, RETRY_MAX_DELAY)
    return min(RETRY_BASE_DELAY * 2.0**attempt, RETRY_MAX_DELAY)


def _lower(headers: Any) -> Dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
