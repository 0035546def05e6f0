"""Typed errors. Every failure the SDK reports is an :class:`EftcloudError`; its subclasses say
what kind of failure it was, so callers can ``except`` by kind:

========================== ==================================================================
class                      when
========================== ==================================================================
InvalidRequestError        400, 413, 422: a field is missing or invalid (the message names it)
AuthenticationError        401: no key, a wrong or revoked key, an invalid or expired polling token
PermissionDeniedError      403: the key lacks the scope, or belongs to another vendor
NotFoundError              404: unknown route, transaction, event or endpoint (or one the key may not see)
ConflictError              409: a reused PosReference, a completed transaction, a refund beyond what is refundable
RateLimitError             429: device busy, polling too fast, too many attempts (``retry_after``)
ServerError                5xx: the cloud could not answer now (``retry_after`` when it said)
NetworkError               no HTTP answer at all (connection refused, reset, DNS)
RequestTimeoutError        no answer in time (a NetworkError)
WebhookSignatureError      a webhook or callback whose signature does not verify
========================== ==================================================================
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from typing import Any, Optional

__all__ = [
    "EftcloudError",
    "InvalidRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "ServerError",
    "NetworkError",
    "RequestTimeoutError",
    "WebhookSignatureError",
    "error_from_response",
    "parse_retry_after",
]


class EftcloudError(Exception):
    """The base of every error this SDK raises.

    :ivar status: the HTTP status, when the cloud answered
    :ivar body: the parsed JSON body of the answer (``{"error": ...}`` and any extra keys), if any
    :ivar retry_after: ``Retry-After`` of the answer in seconds, when it had one
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        body: Any = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.retry_after = retry_after


class InvalidRequestError(EftcloudError):
    """400, 413 or 422: the request was refused as it is; change it before sending it again."""


class AuthenticationError(EftcloudError):
    """401: no credential, a wrong, revoked or expired key, an invalid or expired polling token."""


class PermissionDeniedError(EftcloudError):
    """403: the credential is valid but may not do this (a missing scope, another vendor)."""


class NotFoundError(EftcloudError):
    """404: nothing there, or nothing this credential may see (answered alike, so ids cannot be probed)."""


class ConflictError(EftcloudError):
    """409: the request contradicts the state: a ``PosReference`` reused for a different request,
    a cancel of a completed transaction, a follow-up that does not fit its payment, a tender over
    what its order has left, a device without the capability the request needs."""

    @property
    def amount_refundable(self) -> Optional[str]:
        """On a refused refund: what is still refundable, in minor units (``amountRefundable``)."""
        return _string_member(self.body, "amountRefundable")

    @property
    def amount_remaining(self) -> Optional[str]:
        """On a refused tender: what the order has left to pay, in minor units (``amountRemaining``)."""
        return _string_member(self.body, "amountRemaining")


class RateLimitError(EftcloudError):
    """429: too many requests, or the device is busy with another transaction; ``retry_after``
    says how many seconds to wait, when the cloud said."""


class ServerError(EftcloudError):
    """5xx: the cloud could not answer now (nothing was stored on a 503); safe to retry the same request."""


class NetworkError(EftcloudError):
    """No HTTP answer: the connection failed or broke. The request may or may not have arrived."""


class RequestTimeoutError(NetworkError):
    """No answer within the timeout (or a transaction still pending when a wait for it ended)."""


class WebhookSignatureError(EftcloudError):
    """A webhook delivery or completion callback whose signature does not verify: do not trust its body.

    :ivar reason: which check failed:

        * ``malformed_header``: the ``Eftcloud-Signature`` header is missing or not
          ``t=<unix seconds>,v1=<64 hex digits>[,v1=...]``
        * ``no_matching_signature``: no ``v1`` is the HMAC of this payload under this secret
          (forged, altered, or another secret)
        * ``timestamp_outside_tolerance``: correctly signed, but ``t`` is further from now than
          the tolerance (possibly a replay)
    """

    MALFORMED_HEADER = "malformed_header"
    NO_MATCHING_SIGNATURE = "no_matching_signature"
    TIMESTAMP_OUTSIDE_TOLERANCE = "timestamp_outside_tolerance"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def error_from_response(status: int, body_text: str, retry_after_header: Optional[str]) -> EftcloudError:
    """The error for an HTTP answer with a non-2xx ``status``: the class by status, the message
    from the body's ``error`` (or the status line when the body is not eftcloud's JSON).
    """
    body = _parse_json(body_text)
    message = _string_member(body, "error") or f"HTTP {status}{_describe_text(body_text)}"
    kind: type[EftcloudError]
    if status in (400, 413, 422):
        kind = InvalidRequestError
    elif status == 401:
        kind = AuthenticationError
    elif status == 403:
        kind = PermissionDeniedError
    elif status == 404:
        kind = NotFoundError
    elif status == 409:
        kind = ConflictError
    elif status == 429:
        kind = RateLimitError
    elif status >= 500:
        kind = ServerError
    else:
        kind = EftcloudError
    return kind(
        message,
        status=status,
        body=body,
        retry_after=parse_retry_after(retry_after_header),
    )


def parse_retry_after(header: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date (counted from ``now``, at
    least 0); None when absent or unreadable."""
    if header is None or not header.strip():
        return None
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        date = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return float(max(0, math.ceil(date.timestamp() - current)))


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _describe_text(text: str) -> str:
    """A short hint of a non-JSON body (a proxy's error page, say) for the message."""
    trimmed = text.strip()
    if not trimmed:
        return ""
    return f": {trimmed[:200]}…" if len(trimmed) > 200 else f": {trimmed}"


def _string_member(value: Any, key: str) -> Optional[str]:
    if isinstance(value, dict):
        member = value.get(key)
        if isinstance(member, str):
            return member
    return None
