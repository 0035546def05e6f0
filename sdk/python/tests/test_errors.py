"""Offline: HTTP answers to typed errors."""

import email.utils
import unittest

from eftcloud import (
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
    error_from_response,
)
from eftcloud.errors import parse_retry_after


class ErrorFromResponse(unittest.TestCase):
    def test_class_by_status(self) -> None:
        cases = [
            (400, InvalidRequestError),
            (413, InvalidRequestError),
            (422, InvalidRequestError),
            (401, AuthenticationError),
            (403, PermissionDeniedError),
            (404, NotFoundError),
            (409, ConflictError),
            (429, RateLimitError),
            (500, ServerError),
            (503, ServerError),
            (418, EftcloudError),
        ]
        for status, kind in cases:
            with self.subTest(status=status):
                error = error_from_response(status, '{"error":"what went wrong"}', None)
                self.assertIs(type(error), kind)
                self.assertEqual(error.status, status)
                self.assertEqual(str(error), "what went wrong")
                self.assertEqual(error.body, {"error": "what went wrong"})

    def test_429_carries_retry_after(self) -> None:
        error = error_from_response(
            429,
            '{"error":"Polling too fast: poll this transaction at most every 2.0 s"}',
            "2",
        )
        self.assertIsInstance(error, RateLimitError)
        self.assertEqual(error.retry_after, 2)

    def test_503_carries_retry_after(self) -> None:
        error = error_from_response(503, '{"error":"storage unavailable, retry later"}', "1")
        self.assertIsInstance(error, ServerError)
        self.assertEqual(error.retry_after, 1)

    def test_409_exposes_amounts(self) -> None:
        error = error_from_response(
            409,
            '{"error":"refund of 5.00 exceeds what is refundable: 4.00","amountRefundable":"400"}',
            None,
        )
        assert isinstance(error, ConflictError)
        self.assertEqual(error.amount_refundable, "400")
        self.assertIsNone(error.amount_remaining)

    def test_body_not_json(self) -> None:
        error = error_from_response(502, "<html>Bad gateway</html>", None)
        self.assertIsInstance(error, ServerError)
        self.assertEqual(str(error), "HTTP 502: <html>Bad gateway</html>")
        self.assertIsNone(error.body)

    def test_empty_body(self) -> None:
        self.assertEqual(str(error_from_response(404, "", None)), "HTTP 404")

    def test_timeout_is_a_network_error(self) -> None:
        self.assertTrue(issubclass(RequestTimeoutError, NetworkError))


class ParseRetryAfter(unittest.TestCase):
    def test_seconds(self) -> None:
        self.assertEqual(parse_retry_after("7"), 7)

    def test_http_date(self) -> None:
        now = email.utils.parsedate_to_datetime("Fri, 04 Dec 2026 18:00:00 GMT").timestamp()
        self.assertEqual(parse_retry_after("Fri, 04 Dec 2026 18:00:30 GMT", now), 30)

    def test_unreadable(self) -> None:
        self.assertIsNone(parse_retry_after(None))
        self.assertIsNone(parse_retry_after("soon"))


if __name__ == "__main__":
    unittest.main()
