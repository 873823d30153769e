"""The facts the conformance tests check against are those the official schemas give today."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sandbox.schema_facts import load_generator


@pytest.mark.parametrize(
    ("schema_name", "build_name", "facts_file"),
    [
        ("DEFAULT_SCHEMA", "build_facts", "portone_v1_facts.json"),
        ("DEFAULT_V2_SCHEMA", "build_v2_facts", "portone_v2_facts.json"),
    ],
    ids=["v1", "v2"],
)
def test_facts_file_is_up_to_date(schema_name: str, build_name: str, facts_file: str) -> None:
    gen = load_generator()
    schema_path: Path = getattr(gen, schema_name)
    if not schema_path.exists():
        pytest.skip(f"shared PortOne schema not present at {schema_path}")
    expected = gen.render(getattr(gen, build_name)(json.loads(schema_path.read_text(encoding="utf-8"))))
    assert Path(__file__).with_name(facts_file).read_text(encoding="utf-8") == expected, (
        f"tests/sandbox/{facts_file} is stale: run tools/gen_portone_schema_facts.py"
    )
