"""retry_until: tries until an answer comes or the wait is over, pausing more and more between tries."""

from __future__ import annotations

import pytest

from services.core import backoff


def test_the_first_answer_is_returned_and_nothing_is_tried_after_it() -> None:
    answers = iter([None, None, "taken", "never asked"])
    assert backoff.retry_until(lambda: next(answers), wait_seconds=5) == "taken"
    assert next(answers) == "never asked"


def test_no_wait_means_one_try() -> None:
    tries: list[int] = []
    assert backoff.retry_until(lambda: tries.append(1), wait_seconds=0) is None
    assert tries == [1]


def test_the_pauses_double_up_to_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    ceilings: list[float] = []
    monkeypatch.setattr(backoff.random, "uniform", lambda low, high: ceilings.append(high) or 0.0)
    answers = iter([None] * 6 + [True])
    assert backoff.retry_until(lambda: next(answers), wait_seconds=60) is True
    assert ceilings == [0.02, 0.04, 0.08, 0.16, 0.25, 0.25]
