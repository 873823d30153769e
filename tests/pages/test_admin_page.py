"""The admin page: users and roles, the audit log, system health; closed to other roles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from dashboard.format import kst, plain
from services.audit import reader as audit_log
from services.audit import trail as audit
from services.auth import account_admin as user_admin
from services.auth import accounts as users
from services.auth.access import Actor
from services.core.errors import Forbidden
from services.core.models import ReconciliationRun, Role, User, utcnow
from services.reconciliation import schedule as reconcile_schedule
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.pages.conftest import APP_TIMEOUT, sign_in_state, signed_in

PAGE = "views/admin.py"
PAGE_FILE = str(Path(__file__).resolve().parents[2] / PAGE)


def _admin(open_app: Callable[..., AppTest], lang: str = "ko") -> AppTest:
    at = open_app("admin", lang=lang)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _user(rt: Runtime, username: str) -> User | None:
    with rt.db.read() as session:
        return session.scalar(select(User).where(User.username == username))


def test_admin_adds_a_user_changes_the_role_disables_and_resets(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime
) -> None:
    at = _admin(open_app)
    assert at.title[0].value == "관리"
    assert sorted(at.dataframe[0].value["아이디"]) == ["admin", "operator", "viewer"]

    at.text_input(key="admin_new_username").input("kim.ops")
    at.text_input(key="admin_new_display_name").input("김운영")
    at.selectbox(key="admin_new_role").select("운영")
    at.text_input(key="admin_new_password").input("short")
    at.text_input(key="admin_new_password_again").input("short")
    at.button(key="admin_add_submit").click().run()
    assert not at.exception, at.exception
    assert at.error[0].value.startswith("입력값을 확인하세요")  # the password rule, in Korean
    assert _user(dashboard_runtime, "kim.ops") is None

    at.text_input(key="admin_new_password").input("kim-password-1")
    at.text_input(key="admin_new_password_again").input("kim-password-1")
    at.button(key="admin_add_submit").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value == f"{plain('kim.ops')} 사용자를 추가했습니다 (운영)."  # the name as text
    assert "kim.ops" in list(at.dataframe[0].value["아이디"])
    added = _user(dashboard_runtime, "kim.ops")
    assert added is not None and (added.role, added.display_name, added.active) == ("operator", "김운영", True)

    at.selectbox(key="admin_edit_user").select("kim.ops").run()
    at.selectbox(key="admin_edit_role_kim.ops").select("조회").run()
    at.button(key="admin_save_role").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value == f"{plain('kim.ops')} 의 역할을 조회(으)로 바꿨습니다."
    assert _user(dashboard_runtime, "kim.ops").role == "viewer"  # type: ignore[union-attr]

    at.button(key="admin_toggle_active").click().run()
    assert not _user(dashboard_runtime, "kim.ops").active  # type: ignore[union-attr]
    assert at.button(key="admin_toggle_active").label == "다시 사용"

    at.text_input(key="admin_reset_password_value").input("new-kim-password")
    at.button(key="admin_reset_submit").click().run()
    assert at.success[0].value.startswith(f"{plain('kim.ops')} 의 비밀번호를 바꾸고")
    user_admin.set_active(dashboard_runtime, username="kim.ops", active=True, actor=Actor("admin", Role.ADMIN))
    assert users.authenticate(dashboard_runtime, username="kim.ops", password="new-kim-password").role == Role.VIEWER


def test_duplicate_user_and_own_rights(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = _admin(open_app, lang="en")
    at.text_input(key="admin_new_username").input("viewer")
    at.text_input(key="admin_new_password").input("viewer-password-2")
    at.text_input(key="admin_new_password_again").input("viewer-password-2")
    at.button(key="admin_add_submit").click().run()
    assert at.error[0].value == "That user name is taken. Choose another."
    at.selectbox(key="admin_edit_user").select("admin").run()
    at.button(key="admin_toggle_active").click().run()
    assert at.error[0].value.startswith("Check your input")  # an admin cannot disable themself
    assert _user(dashboard_runtime, "admin").active  # type: ignore[union-attr]


def test_audit_log_filters_and_pages_newest_first(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    with dashboard_runtime.db.write() as session:
        for n in range(120):
            audit.record(session, actor="operator", action="refund.requested", target=f"imp_{n:03d}", amount=n)
    at = _admin(open_app)
    audit_table = at.dataframe[1].value
    assert list(audit_table["대상"])[:2] == ["imp_119", "imp_118"]  # newest first
    assert len(audit_table) == 50

    at.button(key="admin_audit_next").click().run()
    assert list(at.dataframe[1].value["대상"])[:1] == ["imp_069"]
    at.button(key="admin_audit_next").click().run()
    assert len(at.dataframe[1].value) == 23  # 20 left + the three users created by the fixture
    assert not [b for b in at.button if b.key == "admin_audit_next"]
    at.button(key="admin_audit_first").click().run()
    assert list(at.dataframe[1].value["대상"])[:1] == ["imp_119"]

    at.selectbox(key="admin_audit_action").select("user.created")
    at.button(key="admin_audit_apply").click().run()
    assert sorted(at.dataframe[1].value["대상"]) == ["admin", "operator", "viewer"]
    at.text_input(key="admin_audit_target").input("nobody")
    at.button(key="admin_audit_apply").click().run()
    assert at.info[0].value.startswith("조건에 맞는 기록이 없습니다")


def test_health_shows_mode_and_a_portone_outage(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    at = _admin(open_app)
    assert any(":blue-badge[샌드박스]" in m.value for m in at.markdown)
    assert sum(":green-badge[정상]" in m.value for m in at.markdown) == 2  # database, PortOne
    assert ":gray-badge[대기 중]" in _badge_line(at, "정기 대조")  # never ran yet, not overdue
    sandbox.configure(fail_next=20)
    at.button(key="admin_health_recheck").click().run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("포트원에 연결할 수 없습니다") for e in at.error)
    assert sum(":red-badge[장애]" in m.value for m in at.markdown) == 1


def _badge_line(at: AppTest, heading: str) -> str:
    (line,) = [m.value for m in at.markdown if m.value.startswith(f"**{heading}**")]
    return line


def test_health_shows_the_scheduler_last_run_and_when_it_is_stale(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime
) -> None:
    at = _admin(open_app)
    assert ":gray-badge[대기 중]" in _badge_line(at, "정기 대조")  # neither healthy nor down yet
    assert any("아직 실행된 적이 없습니다" in c.value for c in at.caption)
    assert not any(c.value.startswith("마지막 완료") for c in at.caption)  # none finished: no line

    summary = reconcile_schedule.run_once(dashboard_runtime)  # what the scheduler does on each tick
    assert summary is not None and summary.status == "finished"
    at.button(key="admin_health_recheck").click().run()
    assert not at.exception, at.exception
    assert ":green-badge[정상]" in _badge_line(at, "정기 대조")
    last = next(c.value for c in at.caption if c.value.startswith("정기 대조 (매 10분, 최근 2d): 마지막 실행"))
    assert last.endswith("완료, 0건 확인, 새 알림 0건, 자동 복구 0건"), last
    assert any(c.value == f"마지막 완료: {kst(summary.finished_at)} (KST)" for c in at.caption)
    assert not at.error

    with dashboard_runtime.db.write() as session:  # its last finish, 45 minutes ago: past RECONCILE_STALE_MINUTES (30)
        session.execute(
            update(ReconciliationRun)
            .where(ReconciliationRun.id == summary.run_id)
            .values(finished_at=utcnow() - timedelta(minutes=45))
        )
    at.button(key="admin_health_recheck").click().run()
    assert ":red-badge[장애]" in _badge_line(at, "정기 대조")
    assert [e.value for e in at.error] == [
        "정기 대조가 30분 넘게 끝나지 않았습니다. 놓친 웹훅의 결제가 복구되지 않고 있을 수 있습니다."
    ]
    assert ":green-badge[정상]" in _badge_line(at, "데이터베이스")  # the rest is fine


def test_health_in_english(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = _admin(open_app, lang="en")
    assert ":gray-badge[Waiting]" in _badge_line(at, "Scheduled reconciliation")
    assert any("token request answered in" in c.value for c in at.caption)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_other_roles_cannot_open_admin(open_app: Callable[..., AppTest], dashboard_runtime: Runtime, role: str) -> None:
    at = open_app(role)
    with pytest.raises(ValueError, match="admin"):
        at.switch_page(PAGE)  # not in their navigation
    direct = AppTest.from_file(PAGE_FILE, default_timeout=APP_TIMEOUT)
    sign_in_state(direct, dashboard_runtime, role)
    direct.run()
    assert not direct.exception
    assert direct.error[0].value.startswith("이 화면을 열 권한이 없습니다")
    assert not direct.dataframe and not direct.text_input
    # ... and the services refuse them too.
    who = Actor(role, Role(role))
    with pytest.raises(Forbidden):
        users.create_user(dashboard_runtime, username="x-user", password="x-password-1", role="admin", actor=who)
    with pytest.raises(Forbidden):
        user_admin.reset_password(dashboard_runtime, username="admin", new_password="taken-over-1", actor=who)
    with pytest.raises(Forbidden):
        audit_log.list_entries(dashboard_runtime, actor=who)


def test_admin_ends_a_users_sign_ins(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    operator = open_app("operator")
    assert operator.button(key="sign_out")
    at = _admin(open_app)
    at.selectbox(key="admin_edit_user").select("operator").run()
    assert any(c.value == "현재 로그인 1개" for c in at.caption), [c.value for c in at.caption]
    at.button(key="admin_end_sessions").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.startswith("operator 계정의 로그인 1개를 종료했습니다")
    assert at.button(key="admin_end_sessions").disabled
    operator.run()  # the operator's next action
    assert not signed_in(operator)
    assert any("관리자가 로그인을 종료했습니다" in w.value for w in operator.warning)
    assert at.run().button(key="sign_out")  # the admin's own sign-in is untouched


def test_health_says_when_what_answers_is_not_portone(
    open_app: Callable[..., AppTest], sandbox: SandboxControl
) -> None:
    at = _admin(open_app)
    sandbox.configure(garble_next=5, garble_only="POST /users/getToken", garble_body="wrong_shape")
    at.button(key="admin_health_recheck").click().run()
    assert not at.exception, at.exception
    assert ":red-badge[장애]" in _badge_line(at, "포트원")
    assert [e.value for e in at.error] == [
        "응답은 왔지만 포트원의 응답 형식이 아닙니다. PORTONE_API_URL(또는 PORTONE_V2_API_URL) 주소를 확인하세요."
    ]
