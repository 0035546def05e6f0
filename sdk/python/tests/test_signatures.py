"""Offline: Eftcloud-Signature verification against the vectors shared with the TypeScript SDK
(sdk/test-vectors/webhook-signatures.json)."""

import json
import pathlib
import time
import unittest

from eftcloud import (
    EftcloudError,
    WebhookSignatureError,
    construct_event,
    sign_payload,
    verify_signature,
)

VECTORS = json.loads(
    (pathlib.Path(__file__).resolve().parents[2] / "test-vectors" / "webhook-signatures.json").read_text("utf-8")
)


class SharedVectors(unittest.TestCase):
    def test_every_case(self) -> None:
        for case in VECTORS["cases"]:
            with self.subTest(case["name"]):
                tolerance = case.get("toleranceSeconds", 300)

                def verify() -> None:
                    verify_signature(
                        case["payload"],
                        case["header"],
                        case["secret"],
                        tolerance=tolerance,
                        now=case["now"],
                    )

                if case["expect"] == "ok":
                    verify()
                else:
                    with self.assertRaises(WebhookSignatureError) as raised:
                        verify()
                    self.assertEqual(raised.exception.reason, case["expect"])
                    self.assertIsInstance(raised.exception, EftcloudError)

    def test_payload_as_bytes(self) -> None:
        case = VECTORS["cases"][0]
        verify_signature(
            case["payload"].encode("utf-8"),
            case["header"],
            case["secret"],
            now=case["now"],
        )

    def test_missing_header_is_malformed(self) -> None:
        case = VECTORS["cases"][0]
        with self.assertRaises(WebhookSignatureError) as raised:
            verify_signature(case["payload"], None, case["secret"], now=case["now"])
        self.assertEqual(raised.exception.reason, "malformed_header")

    def test_clock_and_300_s_by_default(self) -> None:
        secret, payload = VECTORS["signing"]["secret"], VECTORS["signing"]["payload"]
        now = int(time.time())
        verify_signature(payload, sign_payload(payload, secret, now - 290), secret)
        with self.assertRaises(WebhookSignatureError) as raised:
            verify_signature(payload, sign_payload(payload, secret, now - 310), secret)
        self.assertEqual(raised.exception.reason, "timestamp_outside_tolerance")


class SigningAndParsing(unittest.TestCase):
    def test_signs_as_the_vectors_say(self) -> None:
        signing = VECTORS["signing"]
        self.assertEqual(
            sign_payload(signing["payload"], signing["secret"], signing["timestamp"]),
            signing["header"],
        )

    def test_construct_event_verifies_and_parses(self) -> None:
        signing = VECTORS["signing"]
        event = construct_event(
            signing["payload"],
            signing["header"],
            signing["secret"],
            now=signing["timestamp"],
        )
        self.assertEqual(event["type"], "transaction.completed")
        self.assertEqual(event["data"]["businessName"], "Café Olé")

    def test_construct_event_parses_nothing_unverified(self) -> None:
        signing = VECTORS["signing"]
        with self.assertRaises(WebhookSignatureError) as raised:
            construct_event(
                signing["payload"],
                signing["header"],
                signing["secret"] + "x",
                now=signing["timestamp"],
            )
        self.assertEqual(raised.exception.reason, "no_matching_signature")


if __name__ == "__main__":
    unittest.main()
