"""Offline: what the client sends, its automatic retries and the events iterator, over a
scripted transport (the live suite, test_live.py, runs against a real cloud)."""

import json
import re
import socket
import unittest
import urllib.parse
from typing import Any, Dict, List, Optional, Union

from eftcloud import (
    API_VERSION,
    AuthenticationError,
    Client,
    HttpRequest,
    HttpResponse,
    InvalidRequestError,
    NetworkError,
    Register,
    RequestTimeoutError,
    ServerError,
)

REGISTER = Register("reg-1", "Toys Shop", "Till2Go")
PENDING = {
    "transactionId": "t-1",
    "merchantAccessToken": "tok",
    "transactionStatus": "PENDING",
    "data": {},
}
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def answer(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> HttpResponse:
    return HttpResponse(status, json.dumps(body).encode("utf-8"), headers or {})


class ScriptedTransport:
    """Answers from ``script`` in turn (an HttpResponse, or an exception to raise) and records each request."""

    def __init__(self, *script: Union[HttpResponse, Exception]) -> None:
        self.script = list(script)
        self.requests: List[HttpRequest] = []

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        if not self.script:
            raise AssertionError("unexpected request")
        next_answer = self.script.pop(0)
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer

    def body(self, index: int) -> Any:
        data = self.requests[index].body
        return None if data is None else json.loads(data)


class Requests(unittest.TestCase):
    def test_version_key_register_and_wire_names(self) -> None:
        transport = ScriptedTransport(answer(200, PENDING))
        client = Client(
            "https://pay.example.com/POS/",
            register=REGISTER,
            api_key="eftk_a_b",
            transport=transport,
        )
        client.purchase(1250, pos_reference="sale-1", currency="NZD", fields={"Extra": "x"})
        request = transport.requests[0]
        self.assertEqual(request.url, "https://pay.example.com/POS/Transaction")
        self.assertEqual(request.method, "POST")
        self.assertEqual(request.headers["Eftcloud-Version"], API_VERSION)
        self.assertEqual(request.headers["Authorization"], "Bearer eftk_a_b")
        self.assertEqual(
            transport.body(0),
            {
                "POSRegisterID": "reg-1",
                "POSBusinessName": "Toys Shop",
                "POSVendorName": "Till2Go",
                "TransactionMode": "ASYNC",
                "TransactionType": "Card.Purchase",
                "AmountTotal": "1250",
                "Currency": "NZD",
                "Extra": "x",
                "PosReference": "sale-1",
            },
        )

    def test_configured_version_and_no_key(self) -> None:
        transport = ScriptedTransport(answer(200, {"paired": False, "online": False, "busy": False}))
        client = Client(
            "http://127.0.0.1:8080",
            register=REGISTER,
            api_version="2027-01-01",
            transport=transport,
        )
        client.register_status()
        request = transport.requests[0]
        self.assertEqual(request.headers["Eftcloud-Version"], "2027-01-01")
        self.assertNotIn("Authorization", request.headers)
        self.assertEqual(
            urllib.parse.urlsplit(request.url).query,
            "POSRegisterID=reg-1&POSBusinessName=Toys+Shop&POSVendorName=Till2Go",
        )

    def test_generates_a_uuid_pos_reference(self) -> None:
        transport = ScriptedTransport(answer(200, PENDING), answer(200, PENDING))
        client = Client("http://cloud", register=REGISTER, transport=transport)
        client.refund_payment("t-0", 500)
        client.refund_payment("t-0", 500)
        first, second = (transport.body(i)["PosReference"] for i in (0, 1))
        self.assertRegex(first, UUID4)
        self.assertNotEqual(first, second, "each start gets its own reference")

    def test_long_poll_extends_the_timeout(self) -> None:
        transport = ScriptedTransport(answer(200, PENDING))
        client = Client("http://cloud", register=REGISTER, timeout=5, transport=transport)
        client.poll(PENDING, wait=30)
        request = transport.requests[0]
        self.assertIn("wait=30", request.url)
        self.assertGreater(request.timeout, 35)


class AutomaticRetries(unittest.TestCase):
    def test_transaction_start_retried_with_the_same_reference(self) -> None:
        transport = ScriptedTransport(
            NetworkError("connection reset"),
            answer(503, {"error": "storage unavailable, retry later"}, {"retry-after": "0"}),
            answer(200, PENDING),
        )
        client = Client("http://cloud", register=REGISTER, transport=transport)
        self.assertEqual(client.purchase(500)["transactionId"], "t-1")
        self.assertEqual(len(transport.requests), 3)
        self.assertEqual(
            len({transport.body(i)["PosReference"] for i in range(3)}),
            1,
            "one reference across the retries",
        )

    def test_gives_up_after_max_retries(self) -> None:
        failure = answer(500, {"error": "internal error, please retry"})
        transport = ScriptedTransport(failure, failure)
        client = Client("http://cloud", register=REGISTER, max_retries=1, transport=transport)
        with self.assertRaises(ServerError):
            client.purchase(500)
        self.assertEqual(len(transport.requests), 2)

    def test_refusal_not_retried(self) -> None:
        transport = ScriptedTransport(answer(400, {"error": "Invalid AmountTotal: must be greater than zero"}))
        client = Client("http://cloud", register=REGISTER, transport=transport)
        with self.assertRaisesRegex(InvalidRequestError, "AmountTotal"):
            client.purchase(0)
        self.assertEqual(len(transport.requests), 1)

    def test_pairing_not_retried(self) -> None:
        transport = ScriptedTransport(NetworkError("connection refused"))
        client = Client("http://cloud", register=REGISTER, transport=transport)
        with self.assertRaises(NetworkError):
            client.pair("1234 5678", "Front")
        self.assertEqual(len(transport.requests), 1)
        self.assertEqual(
            urllib.parse.urlsplit(transport.requests[0].url).path,
            "/POS/Pairing/12345678",
        )

    def test_final_error_typed(self) -> None:
        transport = ScriptedTransport(
            answer(
                401,
                {"error": "A valid POS API key is required: Authorization: Bearer <key>"},
            )
        )
        with self.assertRaises(AuthenticationError):
            Client("http://cloud", transport=transport).events.list()


class EventIteration(unittest.TestCase):
    def test_follows_next_cursor_until_caught_up(self) -> None:
        def event(n: int) -> Dict[str, Any]:
            return {
                "id": f"evt_{n}",
                "cursor": f"c{n}",
                "type": "transaction.created",
                "data": {},
            }

        transport = ScriptedTransport(
            answer(
                200,
                {"events": [event(1), event(2)], "nextCursor": "c2", "hasMore": True},
            ),
            answer(200, {"events": [event(3)], "nextCursor": "c3", "hasMore": False}),
        )
        client = Client("http://cloud", api_key="eftk_a_b", transport=transport)
        seen = [
            e["id"] for e in client.events.iterate(after="c0", types=["transaction.*", "refund.completed"], limit=2)
        ]
        self.assertEqual(seen, ["evt_1", "evt_2", "evt_3"])
        queries = [urllib.parse.parse_qs(urllib.parse.urlsplit(r.url).query) for r in transport.requests]
        self.assertEqual([q["after"] for q in queries], [["c0"], ["c2"]])
        self.assertEqual(queries[0]["types"], ["transaction.*,refund.completed"])
        self.assertEqual(queries[0]["limit"], ["2"])
        self.assertNotIn("wait", queries[0])


class DefaultTransport(unittest.TestCase):
    """The urllib transport against real sockets on this machine."""

    def test_nothing_listening_is_a_network_error(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", api_key="eftk_a_b", max_retries=0)
        with self.assertRaises(NetworkError) as raised:
            client.events.list()
        self.assertNotIsInstance(raised.exception, RequestTimeoutError)

    def test_silence_is_a_timeout(self) -> None:
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            client = Client(
                f"http://127.0.0.1:{silent.getsockname()[1]}",
                api_key="eftk_a_b",
                timeout=0.2,
                max_retries=0,
            )
            with self.assertRaises(RequestTimeoutError):
                client.events.list()


class Configuration(unittest.TestCase):
    def test_pos_call_without_register(self) -> None:
        with self.assertRaisesRegex(TypeError, "needs the register"):
            Client("http://cloud", transport=ScriptedTransport()).register_status()


if __name__ == "__main__":
    unittest.main()
