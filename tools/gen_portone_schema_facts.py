#!/usr/bin/env python
"""Write tests/sandbox/portone_v1_facts.json and portone_v2_facts.json from PortOne's schemas.

The facts are the response shapes of the endpoints the sandbox serves -- field
names, JSON types, required lists, enums, no descriptions -- so the conformance
tests can validate sandbox responses without the (large, separately shipped)
schemas. V1 shapes are flattened (``$ref`` and ``allOf`` resolved); V2 shapes
keep their named schemas (``{"$ref": "Payment"}``) because V2 is built from
discriminated unions (``oneOf`` + ``discriminator``) that are shared widely.

Usage: python tools/gen_portone_schema_facts.py [SCHEMA] [--out FILE]
           [--v2-schema SCHEMA] [--v2-out FILE] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# In CI the shared docs sit next to the repo (../shared).
DEFAULT_SCHEMA = REPO_ROOT.parent / "shared/portone-docs/schema/v1.openapi.json"
DEFAULT_OUT = REPO_ROOT / "tests/sandbox/portone_v1_facts.json"

# (method, path as spelled in the schema) for every V1 endpoint the sandbox serves.
SERVED_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("POST", "/users/getToken"),
    ("GET", "/payments/{imp_uid}"),
    ("GET", "/payments"),
    ("GET", "/payments/find/{merchant_uid}/{payment_status}"),
    ("GET", "/payments/findAll/{merchant_uid}/{payment_status}"),
    ("GET", "/payments/status/{payment_status}"),
    ("POST", "/payments/cancel"),
    ("POST", "/payments/prepare"),
    ("PUT", "/payments/prepare"),
    ("GET", "/payments/prepare/{merchant_uid}"),
)
ENVELOPE_DEFINITION = "ResponseAnnotation"

DEFAULT_V2_SCHEMA = REPO_ROOT.parent / "shared/portone-docs/schema/v2.openapi.json"
DEFAULT_V2_OUT = REPO_ROOT / "tests/sandbox/portone_v2_facts.json"
# (method, path as spelled in the schema) for every V2 endpoint the sandbox serves.
SERVED_V2_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("GET", "/payments/{paymentId}"),
    ("GET", "/payments"),
    ("POST", "/payments/{paymentId}/cancel"),
    ("POST", "/payments/{paymentId}/pre-register"),
)
_V2_SCALARS = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}

Node = str | dict[str, Any]


class _Flattener:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions
        self._stack: list[str] = []

    def node(self, schema: dict[str, Any]) -> Node:
        """A flattened node: a type name for scalars, a dict for objects/arrays."""
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name in self._stack:
                raise ValueError(f"recursive schema through {name}")
            self._stack.append(name)
            try:
                return self.node(self.definitions[name])
            finally:
                self._stack.pop()
        if "allOf" in schema:
            merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            for part in schema["allOf"]:
                flat = self.node(part)
                if not isinstance(flat, dict) or flat.get("type") != "object":
                    raise ValueError("allOf of non-object schemas is not supported")
                merged["properties"].update(flat["properties"])
                merged["required"] += [r for r in flat["required"] if r not in merged["required"]]
                for r in flat.get("undeclared_required", ()):
                    merged.setdefault("undeclared_required", []).append(r)
            return merged
        kind = schema.get("type") or ("object" if "properties" in schema else "any")
        if kind == "array":
            return {"type": "array", "items": self.node(schema.get("items", {}))}
        if kind == "object":
            props = {k: self.node(v) for k, v in schema.get("properties", {}).items()}
            required = list(schema.get("required", []))
            out: dict[str, Any] = {
                "type": "object",
                "properties": props,
                "required": [r for r in required if r in props],
            }
            # The schema sometimes requires names it never declares (e.g.
            # PaymentPrepareAnnotation copies total/previous/next from the
            # paged list); they are kept apart, not enforced.
            undeclared = [r for r in required if r not in props]
            if undeclared:
                out["undeclared_required"] = undeclared
            return out
        if not isinstance(kind, str):
            raise ValueError(f"unsupported type {kind!r}")
        return kind


def build_facts(schema: dict[str, Any]) -> dict[str, Any]:
    flat = _Flattener(schema.get("definitions", {}))
    endpoints: dict[str, Any] = {}
    for method, path in SERVED_ENDPOINTS:
        operation = schema["paths"][path][method.lower()]
        responses: dict[str, Any] = {}
        for code in sorted(operation.get("responses", {})):
            spec = operation["responses"][code]
            responses[code] = flat.node(spec["schema"]) if "schema" in spec else None
        endpoints[f"{method} {path}"] = {"responses": responses}
    return {
        "source": "portone-docs/schema/v1.openapi.json",
        "schema_version": schema.get("info", {}).get("version"),
        "envelope": flat.node({"$ref": f"#/definitions/{ENVELOPE_DEFINITION}"}),
        "endpoints": endpoints,
    }


class _V2Facts:
    """Named V2 schemas reachable from the served endpoints, reduced to facts."""

    def __init__(self, schemas: dict[str, Any]) -> None:
        self.schemas = schemas
        self.out: dict[str, Any] = {}

    def ref(self, ref: str) -> dict[str, str]:
        name = ref.rsplit("/", 1)[-1]
        if name not in self.out:
            self.out[name] = None  # placeholder: recursion-safe
            self.out[name] = self.node(self.schemas[name])
        return {"$ref": name}

    def node(self, schema: dict[str, Any]) -> Any:
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "oneOf" in schema:
            variants = [self.ref(v["$ref"])["$ref"] for v in schema["oneOf"]]
            disc = schema.get("discriminator", {})
            mapping = {k: v.rsplit("/", 1)[-1] for k, v in disc.get("mapping", {}).items()}
            return {"oneOf": variants, "discriminator": disc.get("propertyName"), "mapping": mapping}
        if "enum" in schema:
            return {"enum": list(schema["enum"])}
        kind = schema.get("type") or ("object" if "properties" in schema else "any")
        if kind == "array":
            return {"type": "array", "items": self.node(schema.get("items", {}))}
        if kind == "object":
            props = {k: self.node(v) for k, v in schema.get("properties", {}).items()}
            out: dict[str, Any] = {
                "type": "object",
                "properties": props,
                "required": [r for r in schema.get("required", []) if r in props],
            }
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                out["additional"] = self.node(extra)
            if "x-portone-status-code" in schema:  # the HTTP status an error type comes with
                out["http_status"] = schema["x-portone-status-code"]
            return out
        if kind == "string" and schema.get("format") in ("date-time", "date"):
            return schema["format"]
        if kind == "any":
            return "any"
        if kind not in _V2_SCALARS:
            raise ValueError(f"unsupported type {kind!r}")
        return _V2_SCALARS[kind]


def build_v2_facts(schema: dict[str, Any]) -> dict[str, Any]:
    facts = _V2Facts(schema["components"]["schemas"])
    endpoints: dict[str, Any] = {}
    for method, path in SERVED_V2_ENDPOINTS:
        operation = schema["paths"][path][method.lower()]
        responses: dict[str, Any] = {}
        for code in sorted(operation.get("responses", {})):
            content = operation["responses"][code].get("content", {}).get("application/json")
            responses[code] = facts.node(content["schema"]) if content else None
        endpoints[f"{method} {path}"] = {"responses": responses}
    return {
        "source": "portone-docs/schema/v2.openapi.json",
        "schema_version": schema.get("info", {}).get("version"),
        "endpoints": endpoints,
        "schemas": dict(sorted(facts.out.items())),
    }


def render(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schema", nargs="?", type=Path, default=DEFAULT_SCHEMA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--v2-schema", type=Path, default=DEFAULT_V2_SCHEMA)
    parser.add_argument("--v2-out", type=Path, default=DEFAULT_V2_OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if an output is not up to date")
    args = parser.parse_args(argv)
    outputs = (
        (args.out, render(build_facts(json.loads(args.schema.read_text(encoding="utf-8"))))),
        (args.v2_out, render(build_v2_facts(json.loads(args.v2_schema.read_text(encoding="utf-8"))))),
    )
    status = 0
    for out, text in outputs:
        if args.check:
            current = out.read_text(encoding="utf-8") if out.exists() else None
            if current != text:
                print(f"{out} is out of date; run {Path(__file__).name}", file=sys.stderr)
                status = 1
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
