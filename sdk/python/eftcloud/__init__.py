"""eftcloud's client SDK: the POS API (pairing, transactions, polling, lookup, cancel, the
timeline, register status, follow-ups, orders, receipts, terminal actions), events, webhook
endpoints, and verification of webhook signatures. Standard library only.

    from eftcloud import Client, Register

    client = Client("https://pay.example.com", api_key="eftk_...",
                    register=Register("7444ae07-...", "Toys Shop", "Till2Go"))
    sale = client.wait_for_completion(client.purchase(1000))
"""

from ._http import API_VERSION, HttpRequest, HttpResponse, Transport, urllib_transport
from ._version import __version__
from .client import Client
from .errors import (
    AuthenticationError,
    ConflictError,
    EftcloudError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    WebhookSignatureError,
    error_from_response,
)
from .events import Events
from .models import Register
from .webhook_endpoints import WebhookEndpoints
from .webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    construct_event,
    sign_payload,
    verify_signature,
)

__all__ = [
    "__version__",
    "API_VERSION",
    "Client",
    "Register",
    "Events",
    "WebhookEndpoints",
    "HttpRequest",
    "HttpResponse",
    "Transport",
    "urllib_transport",
    "DEFAULT_TOLERANCE_SECONDS",
    "SIGNATURE_HEADER",
    "verify_signature",
    "construct_event",
    "sign_payload",
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
]
