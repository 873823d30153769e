"""Every served V1 endpoint answers with the shapes of PortOne's V1 schema.

The shapes come from ``portone_v1_facts.json`` (generated from
``shared/portone-docs/schema/v1.openapi.json`` by
``tools/gen_portone_schema_facts.py``). Each response body is validated
with jsonschema: every declared field present, no undeclared field, JSON
types exact (integer vs number vs string vs boolean vs array), ``null``
allowed only for fields the schema does not require.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from tests.sandbox.schema_facts import load_generator

FACTS_PATH = Path(__file__).with_name("portone_v1_facts.json")
FACTS: dict[str, Any] = json.loads(FACTS_PATH.read_text(encoding="utf-8"))

# Status codes the sandbox also uses where the schema lists none (all carry
# the plain error envelope): malformed parameters -> 400, unknown prepare -> 404.
UNDOCUMENTED_OK = {
    ("GET /payments", "400"),
    ("GET /payments/find/{merchant_uid}/{payment_status}", "400"),
    ("POST /payments/cancel", "400"),
    ("POST /payments/prepare", "400"),
    ("GET /payments/prepare/{merchant_uid}", "404"),
}


def to_jsonschema(node: Any, nullable: bool) -> dict[str, Any]:
    if isinstance(node, str):
        if node == "any":
            return {}
        return {"type": [node, "null"] if nullable else node}
    if node["type"] == "array":
        schema: dict[str, Any] = {"type": "array", "items": to_jsonschema(node["items"], False)}
    else:
        props = node["properties"]
        schema = {
            "type": "object",
            "properties": {k: to_jsonschema(v, k not in node["required"]) for k, v in props.items()},
            "required": list(props),  # present, possibly null when not required
            "additionalProperties": False,
        }
    if nullable:
        schema["type"] = [schema["type"], "null"]
    return schema


def error_schema() -> dict[str, Any]:
    schema = to_jsonschema(FACTS["envelope"], False)
    schema["properties"]["response"] = {"type": "null"}
    schema["required"] = [*schema["required"], "response"]
    return schema


class Conformance:
    def __init__(self) -> None:
        self.covered: set[tuple[str, str]] = set()

    def check(self, endpoint: str, response: httpx.Response) -> dict[str, Any]:
        code = str(response.status_code)
        responses = FACTS["endpoints"][endpoint]["responses"]
        assert code in responses or (endpoint, code) in UNDOCUMENTED_OK, (endpoint, code)
        body: dict[str, Any] = json.loads(response.text)
        node = responses.get(code)
        if node is None:
            jsonschema.validate(body, error_schema())
            assert body["code"] != 0 and body["message"]
        else:
            schema = to_jsonschema(node, False)
            assert set(schema["properties"]) == {"code", "message", "response"}
            jsonschema.validate(body, schema)
            if body["code"] == 0:
                assert body["response"] is not None
            else:
                assert body["response"] is None and body["message"]
        self.covered.add((endpoint, code))
        return body


def test_every_served_endpoint_conforms(client: Any) -> None:
    c = Conformance()
    http = client.http
    now = int(time.time())

    # ---- auth
    c.check("POST /users/getToken", http.post("/users/getToken", json={"imp_key": "test-imp-key",
                                                                     "imp_secret": "test-imp-secret"}))  # fmt: skip
    c.check("POST /users/getToken", http.post("/users/getToken", data={"imp_key": "x", "imp_secret": "y"}))
    headers = client.headers()

    # ---- data: every status, currencies, cancel history, vbank, extra fields
    paid = client.paid("conf-paid", 50000, name="상품", buyer_name="구매자")
    usd = client.paid("conf-usd", "38.5", currency="USD", pg="eximbay")
    declined = client.checkout("conf-failed", 1000, card_number="4000000000000002")["imp_uid"]
    vbank = client.checkout("conf-vbank", 3000, pay_method="vbank", card_number=None)["imp_uid"]
    partial = client.paid("conf-partial", 10000)
    seeded = client.http.post("/sandbox/payments/bulk", json={"payments": [
        {"merchant_uid": "conf-seeded", "amount": 7000, "status": "cancelled", "escrow": True,
         "promotion": {"id": "promo-1", "discount": 500}, "customer_uid": "cust-1",
         "card_quota": 3, "custom_data": "{}", "cancelled_at": now - 5},
    ]}).json()["imp_uids"][0]  # fmt: skip

    cancel = "POST /payments/cancel"
    applied = c.check(cancel, http.post("/payments/cancel", headers=headers,
                                        json={"imp_uid": partial, "amount": 2500, "checksum": 10000}))  # fmt: skip
    assert applied["code"] == 0 and applied["response"]["cancel_history"]
    c.check(cancel, http.post("/payments/cancel", headers=headers, data={"imp_uid": usd,
                                                                         "amount": "10.25"}))  # fmt: skip
    refused = c.check(cancel, http.post("/payments/cancel", headers=headers,
                                        json={"imp_uid": partial, "amount": 1, "checksum": 1}))  # fmt: skip
    assert refused["code"] == -1
    c.check(cancel, http.post("/payments/cancel", headers=headers, json={}))
    c.check(cancel, http.post("/payments/cancel", json={"imp_uid": paid}))

    # ---- single
    single = "GET /payments/{imp_uid}"
    for imp_uid in (paid, usd, declined, vbank, partial, seeded):
        body = c.check(single, http.get(f"/payments/{imp_uid}", headers=headers))
        assert body["response"]["imp_uid"] == imp_uid
    c.check(single, http.get("/payments/imp_000000000000", headers=headers))
    c.check(single, http.get(f"/payments/{paid}"))

    # ---- multiple
    multi = "GET /payments"
    c.check(multi, http.get("/payments", headers=headers, params=[("imp_uid[]", paid), ("imp_uid[]", usd)]))
    c.check(multi, http.get("/payments", headers=headers,
                            params=[("imp_uid[]", paid), ("merchant_uid[]", "missing")]))  # fmt: skip
    c.check(multi, http.get("/payments", headers=headers, params=[("imp_uid[]", "imp_000000000000")]))
    c.check(multi, http.get("/payments", headers=headers, params=[("imp_uid[]", paid)] * 101))
    c.check(multi, http.get("/payments", params=[("imp_uid[]", paid)]))

    # ---- find
    find = "GET /payments/find/{merchant_uid}/{payment_status}"
    c.check(find, http.get("/payments/find/conf-paid", headers=headers))
    c.check(find, http.get("/payments/find/conf-failed/failed", headers=headers))
    c.check(find, http.get("/payments/find/conf-paid/cancelled", headers=headers))
    c.check(find, http.get("/payments/find/conf-paid/unknown", headers=headers))
    c.check(find, http.get("/payments/find/conf-paid"))

    find_all = "GET /payments/findAll/{merchant_uid}/{payment_status}"
    c.check(find_all, http.get("/payments/findAll/conf-paid", headers=headers))
    c.check(find_all, http.get("/payments/findAll/conf-paid/paid", headers=headers))
    c.check(find_all, http.get("/payments/findAll/conf-paid/bogus", headers=headers))
    c.check(find_all, http.get("/payments/findAll/nope/paid", headers=headers))
    c.check(find_all, http.get("/payments/findAll/conf-paid/paid"))

    # ---- by status
    by_status = "GET /payments/status/{payment_status}"
    for status in ("all", "ready", "paid", "cancelled", "failed"):
        body = c.check(by_status, http.get(f"/payments/status/{status}", headers=headers,
                                           params={"limit": 1000}))  # fmt: skip
        assert body["response"]["list"], status
    c.check(by_status, http.get("/payments/status/bogus", headers=headers))
    c.check(by_status, http.get("/payments/status/all", headers=headers, params={"page": 99}))
    c.check(by_status, http.get("/payments/status/all"))

    # ---- prepare
    prep, put_prep, get_prep = (
        "POST /payments/prepare",
        "PUT /payments/prepare",
        "GET /payments/prepare/{merchant_uid}",
    )
    c.check(prep, http.post("/payments/prepare", headers=headers, json={"merchant_uid": "conf-p", "amount": 1000}))
    c.check(prep, http.post("/payments/prepare", headers=headers,
                            json={"merchant_uid": "conf-p2", "amount": "9.99", "currency": "USD"}))  # fmt: skip
    c.check(prep, http.post("/payments/prepare", headers=headers, json={"merchant_uid": "conf-p", "amount": 1}))
    c.check(prep, http.post("/payments/prepare", headers=headers, json={"amount": 1}))
    c.check(prep, http.post("/payments/prepare", json={"merchant_uid": "conf-p", "amount": 1}))
    c.check(put_prep, http.put("/payments/prepare", headers=headers, json={"merchant_uid": "conf-p", "amount": 2000}))
    c.check(put_prep, http.put("/payments/prepare", headers=headers, json={"merchant_uid": "nope", "amount": 1}))
    c.check(put_prep, http.put("/payments/prepare", json={"merchant_uid": "conf-p", "amount": 1}))
    c.check(get_prep, http.get("/payments/prepare/conf-p", headers=headers))
    c.check(get_prep, http.get("/payments/prepare/conf-p2", headers=headers))
    c.check(get_prep, http.get("/payments/prepare/nope", headers=headers))
    c.check(get_prep, http.get("/payments/prepare/conf-p"))

    documented = {(ep, code) for ep, spec in FACTS["endpoints"].items() for code in spec["responses"]}
    assert documented - c.covered == set()


def test_facts_cover_every_served_v1_route() -> None:
    from sandbox.v1 import ROUTES

    served = {f"{method} {path}" for method, path, _handler, _auth in ROUTES}
    # Our routes without {payment_status} are the schema's optional path parameter.
    for optional in ("/payments/find/{merchant_uid}", "/payments/findAll/{merchant_uid}"):
        served.discard(f"GET {optional}")
        assert f"GET {optional}/{{payment_status}}" in served
    assert served == set(FACTS["endpoints"])


def test_generator_flattens_refs_and_allof() -> None:
    gen = load_generator()
    schema: dict[str, Any] = {
        "info": {"version": "t"},
        "definitions": {
            "ResponseAnnotation": {"properties": {"code": {"type": "integer", "description": "x"}}},
            "Thing": {"required": ["a", "ghost"], "properties": {
                "a": {"type": "number"}, "b": {"type": "array", "items": {"type": "string"}}}},
            "ThingResponse": {"allOf": [{"$ref": "#/definitions/ResponseAnnotation"},
                                        {"properties": {"response": {"$ref": "#/definitions/Thing"}}}]},
        },
        "paths": {},
    }  # fmt: skip
    for method, path in gen.SERVED_ENDPOINTS:
        schema["paths"].setdefault(path, {})[method.lower()] = {"responses": {
            "200": {"schema": {"$ref": "#/definitions/ThingResponse"}},
            "401": {"description": "no"}}}  # fmt: skip
    facts = gen.build_facts(schema)
    node = facts["endpoints"]["POST /users/getToken"]["responses"]
    assert node["401"] is None
    assert node["200"] == {
        "type": "object",
        "properties": {
            "code": "integer",
            "response": {
                "type": "object",
                "properties": {"a": "number", "b": {"type": "array", "items": "string"}},
                "required": ["a"],
                "undeclared_required": ["ghost"],
            },
        },
        "required": [],
    }
