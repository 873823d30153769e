"""Sign-in: failed attempts are throttled per account, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from services.auth import accounts as users
from services.core.models import User, utcnow
from services.runtime import Runtime


@pytest.mark.reliability(
    area="access",
    case="password guessing against one account",
    outcome="locked after 5 failures for 15 minutes, even with the right password; audited",
)
def test_five_failed_sign_ins_lock_the_account(runtime: Runtime) -> None:
    users.create_user(runtime, username="kim", password="right-password-1", role="operator", actor=None)
    for _ in range(users.MAX_FAILED_LOGINS):
        with pytest.raises(users.LoginRefused, match="wrong user name or password"):
            users.authenticate(runtime, username="kim", password="guess")
    with pytest.raises(users.LoginRefused, match="too many failed sign-ins"):
        users.authenticate(runtime, username="kim", password="right-password-1")
    # Once the lockout has passed, the right password works and the count starts again.
    with runtime.db.write() as session:
        session.execute(update(User).where(User.username == "kim").values(locked_until=utcnow() - timedelta(seconds=1)))
    assert users.authenticate(runtime, username="kim", password="right-password-1").username == "kim"
    with pytest.raises(users.LoginRefused, match="wrong user name or password"):
        users.authenticate(runtime, username="kim", password="guess")
    assert users.authenticate(runtime, username="kim", password="right-password-1").role == "operator"


def test_an_unknown_user_is_refused_like_a_wrong_password(runtime: Runtime) -> None:
    with pytest.raises(users.LoginRefused, match="wrong user name or password"):
        users.authenticate(runtime, username="nobody", password="whatever-1")
