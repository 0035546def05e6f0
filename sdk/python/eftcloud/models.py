"""The shapes of the POS API's answers, as ``/openapi.json`` and docs/pos-api.md describe them.

Answers are returned as the parsed JSON (dicts), never rebuilt: every key the cloud sends is
there, including ones newer than this SDK. These ``TypedDict`` s type them for checkers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, TypedDict, Union

__all__ = [
    "Register",
    "Amount",
    "Transaction",
    "RegisterStatus",
    "TimelineEntry",
    "Timeline",
    "Payment",
    "Event",
    "EventPage",
    "WebhookEndpoint",
    "CreatedWebhookEndpoint",
    "RotatedSecret",
    "WebhookDelivery",
]

Amount = Union[int, str]
"""An amount in minor units (cents): ``500`` or ``"500"`` is 5.00."""


@dataclass(frozen=True)
class Register:
    """A register: the triple a paired POS names itself by, compared exactly by the cloud."""

    register_id: str
    """``POSRegisterID``: unique across the vendor's customers (a UUID is typical)."""
    business_name: str
    """``POSBusinessName``."""
    vendor_name: str
    """``POSVendorName``."""


class Transaction(TypedDict, total=False):
    """The envelope of ``POST /POS/Transaction``, of every poll, lookup, cancel and follow-up.

    ``data`` has PascalCase keys and string values: ``TransactionResult`` (``OK-ACCEPTED``,
    ``OK-DECLINED``, ``CANCELLED``, ... empty while pending), ``Result``, ``ResultText``,
    ``PollingUrl``, ``PosReference``, ``DisplayText`` (while pending), ``Receipt``, ...
    """

    transactionId: str
    transactionTimeStamp: str
    merchantId: str
    deviceId: str
    transactionStatus: str
    """``PENDING`` or ``COMPLETED``."""
    data: Dict[str, str]
    merchantAccessToken: str
    """The polling token."""
    receipts: Dict[str, Any]


class RegisterStatus(TypedDict, total=False):
    """``GET /pos/register``: what a POS wants to know before it starts a sale."""

    paired: bool
    registerName: str
    deviceId: str
    online: bool
    busy: bool
    activeTransactionId: str
    lastSeen: str


class TimelineEntry(TypedDict):
    """One entry of a transaction's timeline."""

    at: str
    event: str
    """``received``, ``offered``, ``accepted``, ``started``, ``prompt``, ``result``, ``completed``, ..."""
    detail: str


class Timeline(TypedDict):
    """``GET /pos/transaction/{id}/events``."""

    transactionId: str
    transactionStatus: str
    events: List[TimelineEntry]


class Payment(TypedDict, total=False):
    """``GET /pos/transaction/{id}/payment``: what a payment comes to with its follow-ups."""

    transactionId: str
    function: str
    currency: str
    approved: bool
    amountTotal: str
    amountTip: str
    amountRefunded: str
    amountRefunding: str
    amountRefundable: str
    voided: bool
    settled: bool
    amountAuthorised: str
    amountCaptured: str
    amountReleased: str
    followUps: List[Dict[str, str]]


class Event(TypedDict):
    """An event of ``/v1/events``, and the body of a webhook delivery."""

    id: str
    """``evt_...``: receivers dedupe by it."""
    cursor: str
    """Opaque: pass it as ``after`` to continue after this event."""
    type: str
    createdAt: str
    schemaVersion: int
    merchantId: Optional[str]
    data: Dict[str, Any]


class EventPage(TypedDict):
    """``GET /v1/events``."""

    events: List[Event]
    nextCursor: str
    """The cursor of the last event returned (or the ``after`` given when none came)."""
    hasMore: bool


class _WebhookEndpointExtras(TypedDict, total=False):
    attempts: int
    """Attempts at the event at the head of its queue (0 while healthy)."""
    previousSecretExpiresAt: Optional[str]
    """While a rotated secret still signs beside the new one: until when."""


class WebhookEndpoint(_WebhookEndpointExtras):
    """A webhook endpoint (``/v1/webhook-endpoints``)."""

    id: str
    url: str
    eventTypes: List[str]
    description: str
    enabled: bool
    merchantId: Optional[str]
    vendor: Optional[str]
    createdAt: str
    failingSince: Optional[str]
    disabledReason: Optional[str]


class CreatedWebhookEndpoint(WebhookEndpoint):
    """A webhook endpoint as created: with its signing secret, shown only here and on rotation."""

    secret: str


class RotatedSecret(TypedDict):
    """``POST /v1/webhook-endpoints/{id}/rotate-secret``."""

    secret: str
    previousSecretExpiresAt: str


class WebhookDelivery(TypedDict):
    """One delivery attempt of an event to an endpoint."""

    eventId: str
    eventType: str
    attempt: int
    delivered: bool
    responseCode: Optional[int]
    error: Optional[str]
    at: str
