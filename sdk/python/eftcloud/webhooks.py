"""Verifying ``Eftcloud-Signature``, the header of webhook deliveries (and of completion
callbacks and SMS webhook requests, which are signed the same way)::

    Eftcloud-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">[,v1=<...>]

keyed with the UTF-8 bytes of the secret string (``whsec_`` prefix included). During a secret
rotation's grace period a second ``v1`` made with the old secret follows; a delivery is genuine
when any ``v1`` matches and ``t`` is within the tolerance (300 s) of now.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any, List, Optional, Tuple, Union

from .errors import WebhookSignatureError

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "SIGNATURE_HEADER",
    "verify_signature",
    "construct_event",
    "sign_payload",
]

DEFAULT_TOLERANCE_SECONDS = 300
"""How far ``t`` may be from now, in seconds, by default."""

SIGNATURE_HEADER = "Eftcloud-Signature"
"""The header the cloud signs deliveries with."""

Payload = Union[str, bytes]
"""The raw body, exactly as received: its bytes, or a string (taken as UTF-8)."""

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_V1 = re.compile(r"[0-9a-fA-F]{64}")


def verify_signature(
    payload: Payload,
    header: Optional[str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: Optional[float] = None,
) -> None:
    """Checks that ``payload`` was signed by the holder of ``secret``, and recently.

    :param payload: the raw request body, exactly as received (not re-serialised JSON)
    :param header: the ``Eftcloud-Signature`` header's value
    :param secret: the endpoint's ``whsec_...`` secret (or the callback secret for callbacks)
    :param tolerance: largest accepted ``|now - t|`` in seconds
    :param now: now in unix seconds (default: the clock)
    :raises WebhookSignatureError: ``malformed_header``, ``no_matching_signature`` or
        ``timestamp_outside_tolerance``
    """
    timestamp, signatures = _parse_header(header)
    expected = _sign(payload, secret, timestamp)
    # Every value is compared in constant time; which one matched is no secret.
    if not any(hmac.compare_digest(candidate, expected) for candidate in signatures):
        raise WebhookSignatureError(
            WebhookSignatureError.NO_MATCHING_SIGNATURE,
            "No v1 signature of Eftcloud-Signature matches the payload: not signed with this secret, or altered",
        )
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise WebhookSignatureError(
            WebhookSignatureError.TIMESTAMP_OUTSIDE_TOLERANCE,
            f"Eftcloud-Signature timestamp {timestamp} is more than {tolerance:g} s from now ({current:.0f})",
        )


def construct_event(
    payload: Payload,
    header: Optional[str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: Optional[float] = None,
) -> Any:
    """Verifies the signature (as :func:`verify_signature`) and parses the body: the event of a
    webhook delivery (a dict, see :class:`eftcloud.models.Event`), or the envelope of a
    completion callback."""
    verify_signature(payload, header, secret, tolerance=tolerance, now=now)
    return json.loads(payload)


def sign_payload(payload: Payload, secret: str, timestamp: Optional[int] = None) -> str:
    """The ``Eftcloud-Signature`` value the cloud would send for ``payload`` at ``timestamp``
    (unix seconds, default now): for testing a receiver."""
    t = str(int(time.time()) if timestamp is None else int(timestamp))
    return f"t={t},v1={_sign(payload, secret, t).hex()}"


def _sign(payload: Payload, secret: str, timestamp: str) -> bytes:
    body = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).digest()


def _parse_header(header: Optional[str]) -> Tuple[str, List[bytes]]:
    """Reads ``t=<digits>`` (exactly once) and every ``v1=<64 hex digits>`` (at least one);
    other schemes are ignored, so that a future ``v2`` does not break today's receivers.
    """

    def malformed(why: str) -> WebhookSignatureError:
        return WebhookSignatureError(
            WebhookSignatureError.MALFORMED_HEADER,
            f"Malformed Eftcloud-Signature header: {why}",
        )

    if not isinstance(header, str) or not header.strip():
        raise malformed("missing or empty")
    timestamp: Optional[str] = None
    signatures: List[bytes] = []
    for item in header.split(","):
        key, equals, value = item.partition("=")
        if not equals:
            raise malformed(f"'{item.strip()}' is not key=value")
        key, value = key.strip(), value.strip()
        if key == "t":
            if timestamp is not None:
                raise malformed("more than one t")
            if not _TIMESTAMP.fullmatch(value):
                raise malformed("t is not a number of unix seconds")
            timestamp = value
        elif key == "v1":
            if not _V1.fullmatch(value):
                raise malformed("a v1 value is not 64 hex digits")
            signatures.append(bytes.fromhex(value))
    if timestamp is None:
        raise malformed("no t")
    if not signatures:
        raise malformed("no v1 signature")
    return timestamp, signatures
