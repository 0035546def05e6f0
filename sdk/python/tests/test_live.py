"""Live: the SDK against a running cloud and reference terminal (sdk/run-tests.sh starts both and
sets the variables below). The steps run in order (their names are numbered) and build on each
other: pairing, a purchase, its refund, a cancel, errors, the event log, webhooks.

    EFTCLOUD_BASE_URL      the cloud, e.g. http://127.0.0.1:8080
    EFTCLOUD_API_KEY       a merchant key with pos:transact, pos:read, pos:refund, webhooks:manage
    EFTCLOUD_PAIRING_CODE  the code the terminal shows
"""

import http.server
import json
import os
import re
import threading
import time
import unittest
import uuid
from dataclasses import replace
from typing import Any, Callable, ClassVar, Dict, List

from eftcloud import (
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    Register,
    WebhookSignatureError,
    construct_event,
    verify_signature,
)

BASE_URL = os.environ.get("EFTCLOUD_BASE_URL")
API_KEY = os.environ.get("EFTCLOUD_API_KEY")
PAIRING_CODE = os.environ.get("EFTCLOUD_PAIRING_CODE")

APPROVED_AMOUNT = 1000
"""An amount the card simulator approves (README "Simulator test amounts")."""
SLOW_AMOUNT = 1053
"""An amount the simulator approves only after --slow-secs: time to cancel it."""


class Delivery:
    """A webhook delivery as received."""

    def __init__(self, headers: Dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body


class WebhookReceiver:
    """An HTTP server on a free loopback port that records every POST and answers 200."""

    def __init__(self) -> None:
        self.deliveries: List[Delivery] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.end_headers()
                with receiver._arrived:
                    receiver.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is for the tests."""

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/eftcloud"

    def delivery_of(self, transaction_id: str, timeout: float = 20) -> Delivery:
        """The delivery of the event about ``transaction_id``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for delivery in self.deliveries:
                    if json.loads(delivery.body).get("data", {}).get("transactionId") == transaction_id:
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no delivery about {transaction_id} within {timeout:g} s ({len(self.deliveries)} received)"
                    )
                self._arrived.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@unittest.skipUnless(
    BASE_URL,
    "no live cloud: set EFTCLOUD_BASE_URL, EFTCLOUD_API_KEY and EFTCLOUD_PAIRING_CODE (sdk/run-tests.sh does)",
)
class LiveCloud(unittest.TestCase):
    register: ClassVar[Register]
    client: ClassVar[Client]
    state: ClassVar[Dict[str, Any]]
    """What earlier steps leave for later ones."""
    receiver: ClassVar[WebhookReceiver]

    @classmethod
    def setUpClass(cls) -> None:
        cls.register = Register(str(uuid.uuid4()), "SDK Toys", "SdkTests")
        cls.client = Client(str(BASE_URL), api_key=API_KEY, register=cls.register)
        cls.state = {}
        cls.receiver = WebhookReceiver()
        cls.addClassCleanup(cls.receiver.close)

    def need(self, key: str) -> Any:
        if key not in self.state:
            self.fail(f"needs the {key} of an earlier step, which failed")
        return self.state[key]

    def test_01_pairs_the_register_and_reports_it_paired_and_online(self) -> None:
        self.assertTrue(PAIRING_CODE, "EFTCLOUD_PAIRING_CODE is not set")
        self.assertEqual(
            self.client.pair(str(PAIRING_CODE), "SDK Python till"),
            {"result": "success"},
        )
        status = self.client.register_status()
        self.assertTrue(status["paired"])
        self.assertEqual(status["registerName"], "SDK Python till")
        self.assertTrue(status["online"])
        self.assertTrue(status["deviceId"])

    def test_02_purchase_approved_and_idempotent_by_its_generated_reference(
        self,
    ) -> None:
        started = self.client.purchase(APPROVED_AMOUNT)
        pos_reference = started["data"].get("PosReference")
        self.assertTrue(pos_reference, "the SDK generates a PosReference")
        done = self.client.wait_for_completion(started)
        self.assertEqual(done["transactionId"], started["transactionId"])
        self.assertEqual(done["transactionStatus"], "COMPLETED")
        self.assertEqual(done["data"]["TransactionResult"], "OK-ACCEPTED")
        self.assertEqual(done["data"]["Result"], "OK")
        self.state["purchase"] = done

        replay = self.client.purchase(APPROVED_AMOUNT, pos_reference=pos_reference)
        self.assertEqual(
            replay["transactionId"],
            done["transactionId"],
            "the same reference answers the original",
        )
        self.assertEqual(
            self.client.lookup(pos_reference=pos_reference)["transactionId"],
            done["transactionId"],
        )
        timeline = {entry["event"] for entry in self.client.timeline(done["transactionId"])["events"]}
        self.assertLessEqual({"received", "completed"}, timeline)

    def test_03_refunds_the_purchase_by_reference_never_beyond_what_was_paid(
        self,
    ) -> None:
        purchase = self.need("purchase")
        refund = self.client.wait_for_completion(self.client.refund_payment(purchase["transactionId"], 400, wait=30))
        self.assertEqual(refund["data"]["Function"], "Card.Refund")
        self.assertEqual(refund["data"]["OriginalTransactionId"], purchase["transactionId"])
        self.assertEqual(refund["data"]["TransactionResult"], "OK-ACCEPTED")
        self.state["refund"] = refund

        payment = self.client.payment(purchase["transactionId"])
        self.assertEqual(payment["amountRefunded"], "400")
        self.assertEqual(payment["amountRefundable"], str(APPROVED_AMOUNT - 400))
        with self.assertRaises(ConflictError) as raised:
            self.client.refund_payment(purchase["transactionId"], APPROVED_AMOUNT)
        self.assertEqual(raised.exception.status, 409)
        self.assertEqual(raised.exception.amount_refundable, str(APPROVED_AMOUNT - 400))

    def test_04_cancels_a_transaction_the_device_is_still_running(self) -> None:
        started = self.client.purchase(SLOW_AMOUNT)
        cancelled = self.client.cancel(started["transactionId"], wait=20)
        self.assertEqual(cancelled["transactionStatus"], "COMPLETED")
        self.assertEqual(cancelled["data"]["TransactionResult"], "CANCELLED")

    def test_05_types_the_errors_of_the_pos_routes(self) -> None:
        bad_key = Client(str(BASE_URL), api_key="eftk_bogus_bogus", register=self.register)
        with self.assertRaises(AuthenticationError) as unauthenticated:
            bad_key.register_status()
        self.assertEqual(unauthenticated.exception.status, 401)
        with self.assertRaises(NotFoundError):
            self.client.lookup(pos_reference=f"never-used-{uuid.uuid4()}")
        # The version header is sent: one the cloud does not serve is refused.
        unversioned = Client(
            str(BASE_URL), api_key=API_KEY, register=self.register, api_version="1999-01-01"
        )
        with self.assertRaisesRegex(InvalidRequestError, "Unknown API version '1999-01-01'"):
            unversioned.register_status()
        with self.assertRaisesRegex(InvalidRequestError, "AmountTotal"):
            self.client.purchase(0)
        unpaired = Client(
            str(BASE_URL),
            api_key=API_KEY,
            register=replace(self.register, register_id=str(uuid.uuid4())),
        )
        with self.assertRaisesRegex(InvalidRequestError, "not paired"):
            unpaired.purchase(APPROVED_AMOUNT)
        # Two plain polls of one transaction within the cloud's minimum interval (2 s).
        purchase = self.need("purchase")
        try:
            self.client.poll(purchase)
        except RateLimitError:
            pass
        with self.assertRaises(RateLimitError) as too_fast:
            self.client.poll(purchase)
        self.assertGreater(too_fast.exception.retry_after or 0, 0)

    def test_06_refuses_v1_events_without_a_valid_key(self) -> None:
        with self.assertRaises(AuthenticationError):
            Client(str(BASE_URL), api_key="eftk_bogus_bogus").events.list()
        with self.assertRaises(AuthenticationError) as keyless:
            Client(str(BASE_URL)).events.list()
        self.assertEqual(keyless.exception.status, 401)
        self.assertRegex(str(keyless.exception), "API key")

    def test_07_replays_events_from_a_cursor_without_repeats(self) -> None:
        ids = [
            self.need("purchase")["transactionId"],
            self.need("refund")["transactionId"],
        ]
        replayed = list(self.client.events.iterate(types=["transaction.*", "refund.*"], limit=3))
        order = [e["id"] for e in replayed]
        self.assertEqual(len(set(order)), len(order), "no event twice")

        def find(event_type: str, transaction_id: str) -> Dict[str, Any]:
            for event in replayed:
                if event["type"] == event_type and event["data"].get("transactionId") == transaction_id:
                    return dict(event)
            self.fail(f"no {event_type} of {transaction_id} in the replay")

        for transaction_id in ids:
            created, completed = find("transaction.created", transaction_id), find(
                "transaction.completed", transaction_id
            )
            self.assertLess(order.index(created["id"]), order.index(completed["id"]))
        refund_completed = find("refund.completed", ids[1])
        self.assertEqual(dict(self.client.events.get(refund_completed["id"])), refund_completed)

        # From the purchase's creation on: what followed it, and not it.
        created, completed = find("transaction.created", ids[0]), find("transaction.completed", ids[0])
        following = [
            e["id"]
            for e in self.client.events.list(after=created["cursor"], types=["transaction.*"], limit=500)["events"]
        ]
        self.assertNotIn(created["id"], following)
        self.assertIn(completed["id"], following)

        # Continuing from the end: nothing seen again (a long-poll of 1 s that finds nothing).
        last = replayed[-1]["cursor"]
        rest = self.client.events.list(after=last, types=["transaction.*", "refund.*"], wait=1)
        self.assertFalse(
            [e for e in rest["events"] if e["id"] in order],
            "nothing repeated after nextCursor",
        )
        if not rest["events"]:
            self.assertEqual(rest["nextCursor"], last)

    def test_08_delivers_a_signed_event_genuine_passes_forged_stale_malformed_fail(
        self,
    ) -> None:
        endpoint = self.client.webhook_endpoints.create(
            self.receiver.url,
            event_types=["transaction.completed"],
            description="SDK live test",
        )
        self.state["endpoint"] = endpoint
        self.assertTrue(endpoint["secret"].startswith("whsec_"))
        self.assertEqual(endpoint["eventTypes"], ["transaction.completed"])

        status = self.client.wait_for_completion(self.client.start_transaction("Terminal.GetStatus"))
        received = self.receiver.delivery_of(status["transactionId"])
        header = received.headers.get("eftcloud-signature")
        event = construct_event(received.body, header, endpoint["secret"])
        self.assertEqual(event["type"], "transaction.completed")
        self.assertEqual(received.headers.get("eftcloud-event-id"), event["id"])
        self.assertEqual(received.headers.get("eftcloud-event-type"), "transaction.completed")

        def refused(reason: str, verify: Callable[[], None]) -> None:
            with self.assertRaises(WebhookSignatureError) as raised:
                verify()
            self.assertEqual(raised.exception.reason, reason)

        secret = endpoint["secret"]
        altered = received.body.replace(b"transaction.completed", b"transaction.created")
        timestamp = re.search(r"t=(\d+)", str(header))
        assert timestamp is not None
        t = int(timestamp.group(1))
        refused(
            "no_matching_signature",
            lambda: verify_signature(received.body, header, "whsec_forged"),
        )
        refused("no_matching_signature", lambda: verify_signature(altered, header, secret))
        refused(
            "timestamp_outside_tolerance",
            lambda: verify_signature(received.body, header, secret, now=t + 301),
        )
        refused(
            "malformed_header",
            lambda: verify_signature(received.body, str(header).replace("v1=", "v1:"), secret),
        )
        refused("malformed_header", lambda: verify_signature(received.body, None, secret))

    def test_09_signs_with_both_secrets_during_a_rotation(self) -> None:
        endpoint = self.need("endpoint")
        rotated = self.client.webhook_endpoints.rotate_secret(endpoint["id"], grace_seconds=60)
        self.assertTrue(rotated["secret"].startswith("whsec_"))
        self.assertNotEqual(rotated["secret"], endpoint["secret"])
        status = self.client.wait_for_completion(self.client.start_transaction("Terminal.GetStatus"))
        received = self.receiver.delivery_of(status["transactionId"])
        header = received.headers.get("eftcloud-signature")
        self.assertEqual(str(header).count("v1="), 2, header)
        verify_signature(received.body, header, rotated["secret"])
        verify_signature(received.body, header, endpoint["secret"])

    def test_10_manages_the_endpoint(self) -> None:
        endpoint = self.need("endpoint")
        endpoints = self.client.webhook_endpoints
        self.assertIn(endpoint["id"], [e["id"] for e in endpoints.list()])
        self.assertEqual(endpoints.get(endpoint["id"])["url"], endpoint["url"])
        updated = endpoints.update(endpoint["id"], description="renamed", enabled=False)
        self.assertEqual(updated["description"], "renamed")
        self.assertFalse(updated["enabled"])
        delivered = [a for a in endpoints.deliveries(endpoint["id"], limit=10) if a["delivered"]]
        self.assertGreaterEqual(len(delivered), 2, "the deliveries are on record")
        self.assertTrue(all(a["responseCode"] == 200 for a in delivered))
        endpoints.delete(endpoint["id"])
        with self.assertRaises(NotFoundError):
            endpoints.get(endpoint["id"])


if __name__ == "__main__":
    unittest.main()
