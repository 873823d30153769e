"""bench/run.py's plumbing: choosing cases, the README block, the table of a (smoke) run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run


def test_only_picks_cases_by_all_words_of_a_pattern() -> None:
    names = [case.name for case in run.select_cases(["export postgresql", "dashboard"])]
    assert names == ["Dashboard: payments page through AppTest (SQLite)", "CSV export of payments, masked (PostgreSQL)"]
    assert len(run.select_cases(None)) == len(run.CASES)
    with pytest.raises(SystemExit, match="no case matches"):
        run.select_cases(["no such case"])


def test_every_case_can_be_picked_alone() -> None:
    for case in run.CASES:
        assert [c.name for c in run.select_cases([case.name])] == [case.name]


def test_the_readme_block_is_replaced_and_nothing_else(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before, after = "# Title\n\n### Benchmarks\n\nIntro.\n\n", "\n\n### Reliability\n\nkept\n"
    readme.write_text(f"{before}{run.README_START}\nold table\n{run.README_END}{after}")
    assert run.update_readme("| case | ours |\n|---|---|\n| x | 1 ms |\n", readme)
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(after)
    assert "old table" not in text and "| x | 1 ms |" in text
    assert run.update_readme("| case | ours |\n| y | 2 ms |", readme)  # again: still one block
    assert readme.read_text().count(run.README_START) == 1 and "| x | 1 ms |" not in readme.read_text()
    readme.write_text("no markers\n")
    assert not run.update_readme("table", readme)
    assert readme.read_text() == "no markers\n"


def test_a_full_size_run_rewrites_the_readme_and_a_smoke_run_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run.README_START}\nold\n{run.README_END}\n")
    monkeypatch.setattr(run, "README", readme)
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run, "FULL_ROWS", 400)  # "full size", for this test
    monkeypatch.setattr(run, "SMOKE_ROWS", 300)
    only = ["--only", "payments page query sqlite"]

    run.main(only)
    latest = (tmp_path / "results" / "latest.md").read_text()
    assert "| Payments page query (SQLite) |" in latest and "(smoke sizes)" not in latest
    assert latest.strip() in readme.read_text()

    readme_before = readme.read_text()
    run.main(["--smoke", *only])
    assert "(smoke sizes)" in (tmp_path / "results" / "smoke.md").read_text()
    assert readme.read_text() == readme_before
    assert (tmp_path / "results" / "latest.md").read_text() == latest
