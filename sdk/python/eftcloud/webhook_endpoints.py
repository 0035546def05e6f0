"""``/v1/webhook-endpoints``: where the cloud POSTs events, each signed with the endpoint's
secret (scope ``webhooks:manage``). Verify deliveries with :func:`eftcloud.construct_event`.

Changes are not retried automatically (a repeated create would create a second endpoint);
reads are.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, cast

from ._http import HttpSettings, path_segment, send
from .models import (
    CreatedWebhookEndpoint,
    RotatedSecret,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = ["WebhookEndpoints"]


class WebhookEndpoints:
    """The webhook endpoint routes. Reached as ``client.webhook_endpoints``."""

    def __init__(self, http: HttpSettings) -> None:
        self._http = http

    def create(
        self,
        url: str,
        *,
        event_types: Optional[Sequence[str]] = None,
        description: Optional[str] = None,
    ) -> CreatedWebhookEndpoint:
        """Creates an endpoint delivering ``event_types`` (exact, or ``prefix.*``; omitted: every
        type) to ``url``. The answer carries its ``secret``, shown only here and on rotation.
        """
        body = _present(url=url, eventTypes=_list(event_types), description=description)
        return cast(
            CreatedWebhookEndpoint,
            send(self._http, "POST", "/v1/webhook-endpoints", body=body, retryable=False),
        )

    def list(self) -> List[WebhookEndpoint]:
        """Every endpoint the key may see."""
        page = send(self._http, "GET", "/v1/webhook-endpoints", retryable=True)
        return cast(List[WebhookEndpoint], page["endpoints"])

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        """One endpoint (``we_...``)."""
        return cast(WebhookEndpoint, send(self._http, "GET", _path(endpoint_id), retryable=True))

    def update(
        self,
        endpoint_id: str,
        *,
        url: Optional[str] = None,
        event_types: Optional[Sequence[str]] = None,
        description: Optional[str] = None,
        enabled: Optional[bool] = None,
    ) -> WebhookEndpoint:
        """Changes the given settings; the others stay."""
        body = _present(
            url=url,
            eventTypes=_list(event_types),
            description=description,
            enabled=enabled,
        )
        return cast(
            WebhookEndpoint,
            send(self._http, "PATCH", _path(endpoint_id), body=body, retryable=False),
        )

    def delete(self, endpoint_id: str) -> None:
        """Deletes the endpoint: nothing more is delivered to it."""
        send(self._http, "DELETE", _path(endpoint_id), retryable=False)

    def rotate_secret(self, endpoint_id: str, *, grace_seconds: Optional[int] = None) -> RotatedSecret:
        """A new secret. For ``grace_seconds`` (the cloud's default: a day) deliveries are signed
        with both, so receivers can switch over without missing one."""
        body = _present(graceSeconds=grace_seconds)
        return cast(
            RotatedSecret,
            send(
                self._http,
                "POST",
                f"{_path(endpoint_id)}/rotate-secret",
                body=body,
                retryable=False,
            ),
        )

    def deliveries(self, endpoint_id: str, *, limit: Optional[int] = None) -> List[WebhookDelivery]:
        """The latest delivery attempts to the endpoint, newest first."""
        page = send(
            self._http,
            "GET",
            f"{_path(endpoint_id)}/deliveries",
            query={"limit": limit},
            retryable=True,
        )
        return cast(List[WebhookDelivery], page["deliveries"])

    def redeliver(self, endpoint_id: str, event_id: str) -> Dict[str, int]:
        """Queues one event (``evt_...``) for delivery to the endpoint again."""
        body = {"eventId": event_id}
        return cast(
            Dict[str, int],
            send(
                self._http,
                "POST",
                f"{_path(endpoint_id)}/redeliver",
                body=body,
                retryable=False,
            ),
        )


def _path(endpoint_id: str) -> str:
    return f"/v1/webhook-endpoints/{path_segment(endpoint_id)}"


def _list(values: Optional[Sequence[str]]) -> Optional[List[str]]:
    return list(values) if values is not None else None


def _present(**members: Any) -> Dict[str, Any]:
    """The members that are not None."""
    return {k: v for k, v in members.items() if v is not None}
