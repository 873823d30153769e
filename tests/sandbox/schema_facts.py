"""The generator of the schema facts (tools/gen_portone_schema_facts.py), loaded for the tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

GENERATOR_PATH = Path(__file__).resolve().parents[2] / "tools" / "gen_portone_schema_facts.py"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_portone_schema_facts", GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
