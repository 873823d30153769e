"""The scheduler that died cannot tell anyone: the API, whose watchdog notices it, sends the
`reconcile_stale` notification itself. No scheduler runs here; a real API on loopback, a loopback
Slack-compatible receiver."""

from __future__ import annotations

from api.app import create_app
from tests.factories import SandboxControl, make_runtime
from tests.servers import serve_in_thread
from tests.webhook_receiver import WebhookReceiver


def test_a_stopped_scheduler_is_told_by_the_api(database_url: str, sandbox: SandboxControl) -> None:
    receiver = WebhookReceiver()
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox.url,
        notify_slack_webhook_url=receiver.url,
        notify_batch_seconds=0,
        notify_timeout_seconds=3.0,
        reconcile_stale_minutes=0.01,  # stale after 0.6 s with no scheduled run
    )
    served = serve_in_thread(create_app(rt))
    try:
        [delivery] = receiver.wait_for(1, timeout=10)
        assert "정기 대조 멈춤 (reconcile_stale)" in delivery["body"]["text"]
    finally:
        served.stop()
        receiver.close()
        rt.close()
