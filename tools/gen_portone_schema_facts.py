#!/usr/bin/env python
"""Write tests/sandbox/portone_v1_facts.json from PortOne's V1 schema.

The facts are the response shapes of the endpoints the sandbox serves,
flattened (``$ref`` and ``allOf`` resolved) to field names, JSON types and
required lists -- no descriptions -- so the conformance test can validate
sandbox responses without the (large, separately shipped) schema.

Usage: python tools/gen_portone_schema_facts.py [SCHEMA] [--out FILE] [--check]
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


def render(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schema", nargs="?", type=Path, default=DEFAULT_SCHEMA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if OUT is not up to date")
    args = parser.parse_args(argv)
    text = render(build_facts(json.loads(args.schema.read_text(encoding="utf-8"))))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
