"""Writes webhook-signatures.json beside this file: Eftcloud-Signature cases computed with
Python's hmac module directly, independently of both SDKs, which each check every case.

Run it again (python3 generate.py) only to add cases; the file is committed.
"""

import hashlib
import hmac
import json
import pathlib

SECRET = "whsec_5f0c1b7e2a9d4c3e8b6a1f0d9e8c7b6a"
OLD_SECRET = "whsec_0ld5ecret0ld5ecret0ld5ecret00"
T = 1796400000  # 2026-12-04T16:00:00Z
PAYLOAD = json.dumps(
    {
        "id": "evt_0193a1b2c3d4e5f60718293a4b5c6d7e",
        "cursor": "c_000000000042",
        "type": "transaction.completed",
        "createdAt": "2026-12-04T18:00:00.123Z",
        "schemaVersion": 1,
        "merchantId": "602710ed-fa5c-4e51-a87f-d7719ee7400d",
        "data": {
            "transactionId": "93c32858-d9f7-4563-b5c9-74de856ff93e",
            "deviceId": "term-1",
            "function": "Card.Purchase",
            "registerId": "7444ae07-dc63-e49c-33e3-59a7c108cc80",
            "businessName": "Caf\u00e9 Ol\u00e9",
            "vendorName": "Till2Go",
            "posReference": "sale-000123",
            "transactionStatus": "COMPLETED",
            "result": "OK",
            "transactionResult": "OK-ACCEPTED",
            "amountTotal": "1000",
        },
    },
    separators=(",", ":"),
    ensure_ascii=False,
)


def v1(secret, payload, t):
    return hmac.new(
        secret.encode(), f"{t}.".encode() + payload.encode(), hashlib.sha256
    ).hexdigest()


good = v1(SECRET, PAYLOAD, T)
old = v1(OLD_SECRET, PAYLOAD, T)
forged = v1("whsec_not_the_secret", PAYLOAD, T)
cases = []


def case(name, header, now, expect, secret=SECRET, payload=PAYLOAD, tolerance=None):
    c = {
        "name": name,
        "secret": secret,
        "payload": payload,
        "header": header,
        "now": now,
    }
    if tolerance is not None:
        c["toleranceSeconds"] = tolerance
    c["expect"] = expect
    cases.append(c)


case("valid", f"t={T},v1={good}", T, "ok")
case("valid at +300 s", f"t={T},v1={good}", T + 300, "ok")
case("valid at -300 s (clock skew)", f"t={T},v1={good}", T - 300, "ok")
case("rotation: new secret first", f"t={T},v1={good},v1={old}", T, "ok")
case(
    "rotation: verified with the old secret",
    f"t={T},v1={good},v1={old}",
    T,
    "ok",
    secret=OLD_SECRET,
)
case("spaces after commas", f"t={T}, v1={good}", T, "ok")
case("upper-case hex", f"t={T},v1={good.upper()}", T, "ok")
case("unknown scheme ignored", f"t={T},v0=deadbeef,v1={good}", T, "ok")
case("custom tolerance 600 s", f"t={T},v1={good}", T + 500, "ok", tolerance=600)
case("stale: 301 s old", f"t={T},v1={good}", T + 301, "timestamp_outside_tolerance")
case(
    "stale: 301 s in the future",
    f"t={T},v1={good}",
    T - 301,
    "timestamp_outside_tolerance",
)
case(
    "stale under a custom tolerance of 60 s",
    f"t={T},v1={good}",
    T + 61,
    "timestamp_outside_tolerance",
    tolerance=60,
)
case(
    "forged: signed with another secret",
    f"t={T},v1={forged}",
    T,
    "no_matching_signature",
)
case(
    "forged: the other secret's v1 only", f"t={T},v1={old}", T, "no_matching_signature"
)
case(
    "altered payload",
    f"t={T},v1={good}",
    T,
    "no_matching_signature",
    payload=PAYLOAD.replace('"1000"', '"100000"'),
)
case("timestamp altered", f"t={T + 1},v1={good}", T, "no_matching_signature")
case(
    "forged and stale: the signature is judged first",
    f"t={T},v1={forged}",
    T + 10000,
    "no_matching_signature",
)
case("malformed: empty", "", T, "malformed_header")
case("malformed: no t", f"v1={good}", T, "malformed_header")
case("malformed: no v1", f"t={T}", T, "malformed_header")
case("malformed: t not a number", f"t=yesterday,v1={good}", T, "malformed_header")
case("malformed: two t", f"t={T},t={T},v1={good}", T, "malformed_header")
case("malformed: v1 not hex", f"t={T},v1={'z' * 64}", T, "malformed_header")
case("malformed: v1 too short", f"t={T},v1={good[:63]}", T, "malformed_header")
case("malformed: not key=value", f"t={T};v1={good}x", T, "malformed_header")
case("malformed: garbage", "garbage", T, "malformed_header")

doc = {
    "description": "Eftcloud-Signature test vectors shared by the TypeScript and Python SDKs "
    "(the events contract's webhook deliveries; docs/pos-api.md 9.7). Each case: verify "
    "payload (UTF-8) with header and secret at unix time now (tolerance 300 s unless "
    "toleranceSeconds); expect is 'ok' or the failure reason.",
    "signing": {
        "secret": SECRET,
        "payload": PAYLOAD,
        "timestamp": T,
        "header": f"t={T},v1={good}",
    },
    "cases": cases,
}
with open(
    pathlib.Path(__file__).with_name("webhook-signatures.json"), "w", encoding="utf-8"
) as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
