"""The client of the POS API: pairing, transactions, polling, lookup, cancel, the timeline,
register status, a payment's follow-ups, orders, receipts and terminal actions
(docs/pos-api.md), with ``client.events`` and ``client.webhook_endpoints`` for the ``/v1`` routes.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Dict, Mapping, Optional, Sequence, cast

from ._http import (
    API_VERSION,
    HttpSettings,
    QueryValue,
    Transport,
    normalize_base_url,
    path_segment,
    send,
    urllib_transport,
)
from .errors import RateLimitError, RequestTimeoutError
from .events import Events
from .models import Amount, Payment, Register, RegisterStatus, Timeline, Transaction
from .webhook_endpoints import WebhookEndpoints

__all__ = ["Client"]

# Wire names of the keyword arguments that map one to one onto request fields.
_WIRE_NAMES = {
    "amount_total": "AmountTotal",
    "amount_cash": "AmountCash",
    "amount_auth": "AmountAuth",
    "amount_final": "AmountFinal",
    "amount_tip": "AmountTip",
    "amount_tax": "AmountTax",
    "transaction_reference": "TransactionReference",
    "date": "Date",
    "sale_data": "SaleData",
    "callback_url": "PosNotificationCallbackUrl",
    "currency": "Currency",
    "order_id": "OrderId",
    "original_transaction_id": "OriginalTransactionId",
    "original_pos_reference": "OriginalPosReference",
    "pos_reference": "PosReference",
    "email": "Email",
    "phone": "Phone",
    "copy": "Copy",
    "prompt": "Prompt",
    "timeout_seconds": "TimeoutSeconds",
    "min_length": "MinLength",
    "max_length": "MaxLength",
    "min": "Min",
    "max": "Max",
    "decimals": "Decimals",
    "options": "Options",
    "caption": "Caption",
    "lines": "Lines",
    "clear": "Clear",
    "reverse": "Reverse",
}


class Client:
    """A client of one cloud, for one register. Stateless apart from its settings: share one.

    :param base_url: the cloud (``https://pay.example.com``); a SmartConnect-style environment
        URL ending in ``/POS`` is taken too
    :param register: this POS register, sent with every POS request; needed for every method
        but those of ``events`` and ``webhook_endpoints``
    :param api_key: an API key (``eftk_...``) sent as ``Authorization: Bearer``; keyless
        SmartConnect mode without
    :param api_version: ``Eftcloud-Version`` (default :data:`API_VERSION`)
    :param timeout: per-request timeout in seconds; long-polls get their ``wait`` on top
    :param max_retries: automatic retries of a request that is safe to repeat, after a network
        error, a timeout or a 5xx (0 turns them off). Transaction starts are safe: see
        :meth:`start_transaction`
    :param transport: what sends the HTTP requests (default: ``urllib.request``)
    """

    def __init__(
        self,
        base_url: str,
        *,
        register: Optional[Register] = None,
        api_key: Optional[str] = None,
        api_version: str = API_VERSION,
        timeout: float = 30.0,
        max_retries: int = 2,
        transport: Transport = urllib_transport,
    ) -> None:
        self._http = HttpSettings(
            base_url=normalize_base_url(base_url),
            api_key=(api_key or "").strip() or None,
            api_version=api_version,
            timeout=timeout,
            max_retries=max_retries,
            transport=transport,
        )
        self.register = register
        """This register, as configured."""
        self.events = Events(self._http)
        """``/v1/events``."""
        self.webhook_endpoints = WebhookEndpoints(self._http)
        """``/v1/webhook-endpoints``."""

    # ---- Pairing ---------------------------------------------------------------------------

    def pair(
        self,
        code: str,
        register_name: str,
        *,
        contact_name: Optional[str] = None,
        address: Optional[str] = None,
        city: Optional[str] = None,
        state: Optional[str] = None,
        zip_code: Optional[str] = None,
        email: Optional[str] = None,
        phone: Optional[str] = None,
    ) -> Dict[str, str]:
        """Pairs this register with the device showing ``code`` (8 digits; spaces and dashes are
        dropped), naming it ``register_name`` on the device. Codes are single-use: this request
        is never retried automatically. Answers ``{"result": "success"}``."""
        digits = re.sub(r"[\s-]", "", code)
        body = {
            **self._register_fields(),
            "POSRegisterName": register_name,
            "ContactName": contact_name,
            "Address": address,
            "City": city,
            "State": state,
            "ZipCode": zip_code,
            "Email": email,
            "Phone": phone,
        }
        return cast(
            Dict[str, str],
            send(
                self._http,
                "PUT",
                f"/POS/Pairing/{path_segment(digits)}",
                body={k: v for k, v in body.items() if v is not None},
                retryable=False,
            ),
        )

    # ---- Transactions ----------------------------------------------------------------------

    def start_transaction(
        self,
        transaction_type: str,
        *,
        amount_total: Optional[Amount] = None,
        amount_cash: Optional[Amount] = None,
        amount_auth: Optional[Amount] = None,
        amount_final: Optional[Amount] = None,
        transaction_reference: Optional[str] = None,
        date: Optional[str] = None,
        sale_data: Optional[Any] = None,
        order_id: Optional[str] = None,
        original_transaction_id: Optional[str] = None,
        original_pos_reference: Optional[str] = None,
        pos_reference: Optional[str] = None,
        callback_url: Optional[str] = None,
        currency: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Starts a transaction of any function (``POST /POS/Transaction``, async mode); the
        answer is ``PENDING``: follow it with :meth:`wait_for_completion` or :meth:`poll`.

        :param transaction_type: ``Card.Purchase``, ``Card.Refund``, ``Terminal.GetStatus``, ...
            (docs/pos-api.md §7, which also says which amounts each needs)
        :param sale_data: the basket (``{"version": "1.0.0", "saleData": {...}}``), a dict or its JSON text
        :param pos_reference: the request's idempotency key (at most 128 printable characters):
            the same register and reference always answer the one original transaction, and the
            device is never asked twice. When omitted the SDK generates a UUID and reuses it for
            its own automatic retries, so a retry after a lost answer can never charge twice.
            Give your own (the sale's id) to be able to retry across process restarts and to
            :meth:`lookup` by it.
        :param callback_url: ``PosNotificationCallbackUrl``: where the completed envelope is POSTed, signed
        :param currency: ISO 4217 (``AUD``, ``JPY``); amounts are in its minor units
        :param fields: other request fields by their wire names, sent as given
        """
        return self._start(
            "/POS/Transaction",
            {"TransactionMode": "ASYNC", "TransactionType": transaction_type},
            _wire(
                amount_total=amount_total,
                amount_cash=amount_cash,
                amount_auth=amount_auth,
                amount_final=amount_final,
                transaction_reference=transaction_reference,
                date=date,
                sale_data=sale_data,
                order_id=order_id,
                original_transaction_id=original_transaction_id,
                original_pos_reference=original_pos_reference,
                callback_url=callback_url,
                currency=currency,
                fields=fields,
            ),
            pos_reference,
        )

    def purchase(
        self,
        amount_total: Amount,
        *,
        pos_reference: Optional[str] = None,
        sale_data: Optional[Any] = None,
        order_id: Optional[str] = None,
        callback_url: Optional[str] = None,
        currency: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Starts a ``Card.Purchase`` of ``amount_total`` (minor units); see :meth:`start_transaction`."""
        return self.start_transaction(
            "Card.Purchase",
            amount_total=amount_total,
            pos_reference=pos_reference,
            sale_data=sale_data,
            order_id=order_id,
            callback_url=callback_url,
            currency=currency,
            fields=fields,
        )

    def refund(
        self,
        amount_total: Amount,
        *,
        original_transaction_id: Optional[str] = None,
        original_pos_reference: Optional[str] = None,
        pos_reference: Optional[str] = None,
        callback_url: Optional[str] = None,
        currency: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Starts a ``Card.Refund`` of ``amount_total``: unreferenced (SmartConnect's), or of a
        payment given by id or reference. For a refund of a payment by its id there is also
        :meth:`refund_payment`."""
        return self.start_transaction(
            "Card.Refund",
            amount_total=amount_total,
            original_transaction_id=original_transaction_id,
            original_pos_reference=original_pos_reference,
            pos_reference=pos_reference,
            callback_url=callback_url,
            currency=currency,
            fields=fields,
        )

    def poll(self, transaction: Mapping[str, Any], *, wait: Optional[float] = None) -> Transaction:
        """Polls a transaction once by its ``transactionId`` and ``merchantAccessToken`` (an
        envelope); with ``wait`` (seconds, at most 60) a long-poll that answers as soon as it
        completes. Polls without ``wait`` closer together than the cloud's minimum interval
        (2 s) are refused with :class:`RateLimitError`."""
        return cast(
            Transaction,
            send(
                self._http,
                "GET",
                f"/pos/transaction/{path_segment(transaction['transactionId'])}",
                query={
                    "merchantAccessToken": transaction["merchantAccessToken"],
                    "wait": wait,
                },
                retryable=True,
                wait=wait,
            ),
        )

    def wait_for_completion(
        self,
        transaction: Transaction,
        *,
        timeout: float = 180.0,
        wait_seconds: float = 30,
    ) -> Transaction:
        """Long-polls until the transaction is ``COMPLETED`` and returns it.

        :param timeout: give up after this many seconds with :class:`RequestTimeoutError`
            (then look it up later: :meth:`lookup`)
        :param wait_seconds: each long-poll's ``wait`` (at most 60)
        """
        deadline = time.monotonic() + timeout
        current = transaction
        while current.get("transactionStatus") != "COMPLETED":
            remaining = int(deadline - time.monotonic())
            if remaining <= 0:
                raise RequestTimeoutError(
                    f"Transaction {transaction['transactionId']} is still "
                    f"{current.get('transactionStatus')} after {timeout:g} s"
                )
            try:
                current = self.poll(current, wait=min(wait_seconds, 60, remaining))
            except RateLimitError as error:
                time.sleep(error.retry_after if error.retry_after is not None else 2)
        return current

    def lookup(
        self,
        *,
        pos_reference: Optional[str] = None,
        transaction_id: Optional[str] = None,
        wait: Optional[float] = None,
    ) -> Transaction:
        """Finds a transaction of this register by its ``PosReference`` or its id, for the whole
        retention period (long after its polling token expired); ``wait`` long-polls."""
        if (pos_reference is None) == (transaction_id is None):
            raise TypeError("lookup takes one of pos_reference and transaction_id")
        return cast(
            Transaction,
            self._get(
                "/pos/lookup",
                {
                    "PosReference": pos_reference,
                    "TransactionId": transaction_id,
                    "wait": wait,
                },
                wait,
            ),
        )

    def cancel(self, transaction_id: str, *, wait: Optional[float] = None) -> Transaction:
        """Asks to cancel a transaction of this register: ``CANCELLED`` at once if its device had
        not started it, otherwise the device is asked and its real outcome stands (``wait``
        holds the answer until it is known). A completed transaction: :class:`ConflictError`.
        """
        return cast(
            Transaction,
            self._post(
                f"/pos/transaction/{path_segment(transaction_id)}/cancel",
                {},
                retryable=False,
                wait=wait,
            ),
        )

    def timeline(self, transaction_id: str) -> Timeline:
        """What happened to a transaction, with timestamps, oldest first."""
        return cast(
            Timeline,
            self._get(f"/pos/transaction/{path_segment(transaction_id)}/events", {}),
        )

    def register_status(self) -> RegisterStatus:
        """Whether this register is paired, and its device online and busy."""
        return cast(RegisterStatus, self._get("/pos/register", {}))

    # ---- A payment's life by reference (docs/pos-api.md §9.9) -------------------------------
    # Each follow-up takes pos_reference (generated when omitted, as for start_transaction),
    # wait (hold the answer up to that many seconds until it completes), currency,
    # callback_url and fields.

    def refund_payment(
        self,
        transaction_id: str,
        amount_total: Amount,
        *,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        currency: Optional[str] = None,
        callback_url: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Refunds ``amount_total`` of an approved payment, from this register (any of its merchant's)."""
        return self._follow_up(
            transaction_id,
            "refund",
            _wire(
                amount_total=amount_total,
                currency=currency,
                callback_url=callback_url,
                fields=fields,
            ),
            pos_reference,
            wait,
        )

    def void_payment(
        self,
        transaction_id: str,
        *,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        callback_url: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Reverses an approved payment before its device settles; once."""
        return self._follow_up(
            transaction_id,
            "void",
            _wire(callback_url=callback_url, fields=fields),
            pos_reference,
            wait,
        )

    def adjust_tip(
        self,
        transaction_id: str,
        amount_tip: Amount,
        *,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        callback_url: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Sets the tip of an approved purchase (0 removes it), before settlement."""
        return self._follow_up(
            transaction_id,
            "adjust",
            _wire(amount_tip=amount_tip, callback_url=callback_url, fields=fields),
            pos_reference,
            wait,
        )

    def increment_authorisation(
        self,
        transaction_id: str,
        amount_total: Amount,
        *,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        callback_url: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Tops up an approved ``Card.Authorise`` by ``amount_total``."""
        return self._follow_up(
            transaction_id,
            "increment",
            _wire(amount_total=amount_total, callback_url=callback_url, fields=fields),
            pos_reference,
            wait,
        )

    def capture_payment(
        self,
        transaction_id: str,
        amount_final: Amount,
        *,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        callback_url: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Completes a pre-authorisation for ``amount_final`` (up to what is authorised)."""
        return self._follow_up(
            transaction_id,
            "capture",
            _wire(amount_final=amount_final, callback_url=callback_url, fields=fields),
            pos_reference,
            wait,
        )

    def release_authorisation(
        self,
        transaction_id: str,
        *,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        callback_url: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Releases a pre-authorisation."""
        return self._follow_up(
            transaction_id,
            "release",
            _wire(callback_url=callback_url, fields=fields),
            pos_reference,
            wait,
        )

    def payment(self, transaction_id: str) -> Payment:
        """What a payment comes to with its follow-ups: refunded, refundable, voided, captured."""
        return cast(
            Payment,
            self._get(f"/pos/transaction/{path_segment(transaction_id)}/payment", {}),
        )

    # ---- Orders with split tenders (§9.10) -------------------------------------------------

    def create_order(
        self,
        amount_total: Amount,
        *,
        pos_reference: Optional[str] = None,
        currency: Optional[str] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Creates an order of ``amount_total``, to be paid by tenders (``purchase(...,
        order_id=...)``) on any device of the merchant. Idempotent by ``PosReference``,
        generated when omitted."""
        return cast(
            Dict[str, Any],
            self._start(
                "/pos/orders",
                {},
                _wire(amount_total=amount_total, currency=currency, fields=fields),
                pos_reference,
            ),
        )

    def order(self, order_id: str) -> Dict[str, Any]:
        """An order with its tenders."""
        return cast(Dict[str, Any], self._get(f"/pos/orders/{path_segment(order_id)}", {}))

    def cancel_order(self, order_id: str, *, reverse: bool = False) -> Dict[str, Any]:
        """Cancels an order; with ``reverse`` every approved tender is voided or refunded."""
        body = _wire(reverse=reverse or None)
        return cast(
            Dict[str, Any],
            self._post(f"/pos/orders/{path_segment(order_id)}/cancel", body, retryable=True),
        )

    # ---- Receipts by email or SMS (§9.11) --------------------------------------------------

    def send_receipt(
        self,
        transaction_id: str,
        *,
        email: Optional[str] = None,
        phone: Optional[str] = None,
        copy: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Queues the receipt of a completed transaction to ``email`` and/or ``phone``
        (``copy``: ``customer``, the default, or ``merchant``); idempotent per address.
        """
        body = _wire(email=email, phone=phone, copy=copy)
        return cast(
            Dict[str, Any],
            self._post(
                f"/pos/transaction/{path_segment(transaction_id)}/receipt",
                body,
                retryable=True,
            ),
        )

    def receipt(self, transaction_id: str) -> Dict[str, Any]:
        """A transaction's receipts as data and the state of each delivery."""
        return cast(
            Dict[str, Any],
            self._get(f"/pos/transaction/{path_segment(transaction_id)}/receipt", {}),
        )

    # ---- Terminal actions (§9.12) ----------------------------------------------------------

    def display(
        self,
        *,
        lines: Optional[Sequence[Mapping[str, Any]]] = None,
        amount_total: Optional[Amount] = None,
        amount_tax: Optional[Amount] = None,
        currency: Optional[str] = None,
        clear: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Shows the cart (``lines`` of ``description``, ``quantity``, ``unitPrice``,
        ``amount``) on the customer's screen, or clears it; the same cart again changes nothing.
        """
        body = _wire(
            lines=lines,
            amount_total=amount_total,
            amount_tax=amount_tax,
            currency=currency,
            clear=clear,
        )
        return cast(Dict[str, Any], self._post("/pos/register/display", body, retryable=True))

    def request_input(
        self,
        input_kind: str,
        prompt: str,
        *,
        timeout_seconds: Optional[int] = None,
        min_length: Optional[int] = None,
        max_length: Optional[int] = None,
        min: Optional[float] = None,
        max: Optional[float] = None,
        decimals: Optional[int] = None,
        options: Optional[Sequence[str]] = None,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Asks the customer for input on the device (``input_kind``: ``signature``, ``email``,
        ``phone``, ``number``, ``text``, ``selection``, ``confirmation``): a job, answered like a
        transaction start."""
        body = _wire(
            prompt=prompt,
            timeout_seconds=timeout_seconds,
            min_length=min_length,
            max_length=max_length,
            min=min,
            max=max,
            decimals=decimals,
            options=list(options) if options is not None else None,
            fields=fields,
        )
        return self._start("/pos/register/input", {"InputKind": input_kind}, body, pos_reference, wait)

    def print_slip(
        self,
        lines: Sequence[Mapping[str, Any]],
        *,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Prints a slip on the device's printer (``lines`` of kind ``text``, ``qr``,
        ``barcode``, ``feed``, ``cut``): a job, answered like a transaction start."""
        return self._start(
            "/pos/register/print",
            {"Lines": list(lines)},
            _wire(fields=fields),
            pos_reference,
            wait,
        )

    def show_qr(
        self,
        qr_data: str,
        *,
        caption: Optional[str] = None,
        timeout_seconds: Optional[int] = None,
        pos_reference: Optional[str] = None,
        wait: Optional[float] = None,
        fields: Optional[Mapping[str, Any]] = None,
    ) -> Transaction:
        """Shows a QR code on the device: a job, answered like a transaction start."""
        body = _wire(caption=caption, timeout_seconds=timeout_seconds, fields=fields)
        return self._start("/pos/register/qr", {"QrData": qr_data}, body, pos_reference, wait)

    # ---- Plumbing --------------------------------------------------------------------------

    def _follow_up(
        self,
        transaction_id: str,
        action: str,
        body: Dict[str, Any],
        pos_reference: Optional[str],
        wait: Optional[float],
    ) -> Transaction:
        return self._start(
            f"/pos/transaction/{path_segment(transaction_id)}/{action}",
            {},
            body,
            pos_reference,
            wait,
        )

    def _start(
        self,
        path: str,
        fixed: Mapping[str, Any],
        body: Mapping[str, Any],
        pos_reference: Optional[str],
        wait: Optional[float] = None,
    ) -> Transaction:
        """POSTs a request that starts something on a device, with its ``PosReference``
        (generated when not given), so that the automatic retries of :func:`send` are answered
        with the original."""
        reference = pos_reference if pos_reference is not None else str(uuid.uuid4())
        return cast(
            Transaction,
            self._post(
                path,
                {**fixed, **body, "PosReference": reference},
                retryable=True,
                wait=wait,
            ),
        )

    def _post(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        retryable: bool,
        wait: Optional[float] = None,
    ) -> Any:
        return send(
            self._http,
            "POST",
            path,
            query={"wait": wait},
            body={**self._register_fields(), **body},
            retryable=retryable,
            wait=wait,
        )

    def _get(self, path: str, query: Mapping[str, QueryValue], wait: Optional[float] = None) -> Any:
        return send(
            self._http,
            "GET",
            path,
            query={**self._register_fields(), **query},
            retryable=True,
            wait=wait,
        )

    def _register_fields(self) -> Dict[str, str]:
        if self.register is None:
            raise TypeError("This call needs the register: pass register=Register(...) to the Client")
        return {
            "POSRegisterID": self.register.register_id,
            "POSBusinessName": self.register.business_name,
            "POSVendorName": self.register.vendor_name,
        }


def _wire(*, fields: Optional[Mapping[str, Any]] = None, **options: Any) -> Dict[str, Any]:
    """Request fields from keyword arguments: names mapped to their wire names, integer amounts
    as strings, None left out, ``fields`` merged in as given."""
    out: Dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name.startswith("amount_") and isinstance(value, int):
            value = str(value)
        out[_WIRE_NAMES[name]] = value
    out.update(fields or {})
    return out
