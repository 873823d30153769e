"""Text from outside (PortOne, buyers, webhook senders, uploaded CSVs, links) is shown as text on
every page: Markdown and HTML planted in every such field render no link, no image and no HTML
anywhere Streamlit would read Markdown (markdown, captions, alerts, headings, toasts, dialogs,
metric values, widget labels and help, expander and tab labels). Tables, st.text and st.code show
text as it is and are not inspected."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from google.protobuf.message import Message
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Node

from dashboard.format import plain, web_url
from services.auth.access import Actor
from services.core.models import Role
from services.refunds import desk as refund_desk
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from tests.factories import DECLINED_CARD, SandboxControl

LINK = "[재인증](https://evil.example)"
IMAGE = "![x](https://evil.example/p.png)"
HTML = "<img src=x><a href=https://evil.example>a</a>"
EVIL = f"{IMAGE}{LINK}{HTML}"
ADMIN = Actor("admin", Role.ADMIN)

# Element types whose text is never read as Markdown (dataframe cells, st.text, st.code, st.json),
# and widget fields that are plain text (selectbox / multiselect options, typed input values).
INERT_TYPES = {"arrow_data_frame", "text", "code", "json"}
PLAIN_FIELDS = {"options", "default", "value", "raw_value", "placeholder", "id", "form_id", "key"}
ACTIVE = [
    re.compile(r"(?<!\\)\]\("),  # a link or image: [text](url)
    re.compile(r"(?<!\\)<(img|a)\b", re.IGNORECASE),  # HTML
    re.compile(r"(?<![\\/])evil\.example"),  # a bare URL GitHub-flavoured Markdown would link
]


def _strings(message: Message, skip: set[str]) -> Iterator[str]:
    for descriptor, value in message.ListFields():
        if descriptor.name in skip:
            continue
        values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        for item in values:
            if isinstance(item, Message):
                yield from _strings(item, skip)
            elif isinstance(item, str):
                yield item


def _nodes(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Block):
        for child in node.children.values():
            yield from _nodes(child)


def live_markdown(at: AppTest) -> list[str]:
    """Every string Streamlit would render as Markdown that holds a live link, image or HTML."""
    found = []
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        if node.type in INERT_TYPES or not isinstance(proto, Message):
            continue
        for text in _strings(proto, PLAIN_FIELDS if not isinstance(node, Block) else set()):
            if any(pattern.search(text) for pattern in ACTIVE):
                found.append(f"{node.type}: {text}")
    found += [f"toast: {toast.value}" for toast in at.toast if any(p.search(toast.value) for p in ACTIVE)]
    return found


def _seed(rt: Runtime, sandbox: SandboxControl) -> dict[str, Any]:
    """Hostile text in every field that comes from outside, landed the way it would land."""
    buyer = {"buyer_name": EVIL, "buyer_email": f"{LINK}@evil.example", "buyer_tel": HTML}
    # A declined checkout with a hostile merchant_uid, then an unsigned webhook claiming it paid.
    declined = sandbox.checkout(EVIL, "12000", card_number=DECLINED_CARD, **buyer)
    paid = sandbox.checkout(f"{LINK}{HTML}", "30000", **buyer)  # paid, no order of ours
    for answer in (declined, paid):
        body = json.dumps({"imp_uid": answer["imp_uid"], "merchant_uid": EVIL, "status": "paid"})
        webhooks.receive(rt, body=body.encode(), content_type="application/json", source_ip="52.78.100.19")
    # A webhook naming a payment that does not exist, from an odd sender with an odd content type.
    junk = json.dumps({"imp_uid": EVIL, "merchant_uid": EVIL, "status": EVIL})
    webhooks.receive(rt, body=junk.encode(), content_type=f"text/{LINK}", source_ip=LINK)
    refund_desk.request_refund(
        rt, actor=ADMIN, imp_uid=str(paid["imp_uid"]), amount="1000", reason=EVIL, idempotency_key="evil-1"
    )
    return {"declined": str(declined["imp_uid"]), "paid": str(paid["imp_uid"])}


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def _open(open_app: Callable[..., AppTest], page: str, **query: str) -> AppTest:
    at = open_app("admin")
    for name, value in query.items():
        at.query_params[name] = value
    at.switch_page(page)
    return _run(at)


@pytest.mark.reliability(
    area="hostile input",
    case="Markdown and HTML from PortOne, buyers, webhooks, uploads and links on every page (AppTest)",
    outcome="shown as text: no rendered link, image or HTML on any page, dialog or toast",
)
def test_outside_text_renders_no_link_or_image_anywhere(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    ids = _seed(dashboard_runtime, sandbox)
    seen: dict[str, list[str]] = {}

    seen["overview"] = live_markdown(_open(open_app, "views/overview.py"))
    seen["payments"] = live_markdown(_open(open_app, "views/payments.py"))
    for name, imp_uid in ids.items():
        seen[f"detail {name}"] = live_markdown(_open(open_app, "views/payment_detail.py", imp_uid=imp_uid))
    seen["detail from a link"] = live_markdown(_open(open_app, "views/payment_detail.py", imp_uid=EVIL))

    for page, key in (("views/alerts.py", "alerts_pick"), ("views/webhooks.py", "webhooks_pick")):
        at = _open(open_app, page)
        count = len(at.selectbox(key=key).options)
        assert count >= 2, page
        for index in range(count):  # each alert / delivery in detail
            at.selectbox(key=key).select_index(index)
            seen[f"{page} #{index}"] = live_markdown(_run(at))

    refunds_page = _open(open_app, "views/refunds.py")
    refunds_page.text_input(key="refunds.identifier").input(ids["paid"])
    refunds_page.button(key="refunds.load").click()
    _run(refunds_page)
    seen["refund quote"] = live_markdown(refunds_page)
    refunds_page.text_area(key="refunds.reason").input(EVIL)
    refunds_page.text_input(key="refunds.amount").input("1000")
    refunds_page.button(key="refunds.start").click()
    _run(refunds_page)
    seen["refund dialog"] = live_markdown(refunds_page)
    refunds_page.button(key="refunds.single.confirm").click()
    _run(refunds_page)
    seen["refund outcome"] = live_markdown(refunds_page)
    upload = f"imp_uid,merchant_uid,amount,reason\n{ids['paid']},,1000,{EVIL}\n{EVIL},,,{EVIL}\n,{LINK},x,\n"
    refunds_page.file_uploader(key="refunds.bulk_file").set_value(("r.csv", upload.encode(), "text/csv"))
    _run(refunds_page)
    refunds_page.button(key="refunds.bulk_preview_button").click()
    _run(refunds_page)
    seen["bulk preview"] = live_markdown(refunds_page)
    seen["reports"] = live_markdown(_open(open_app, "views/reports.py"))

    detail = _open(open_app, "views/payment_detail.py", imp_uid=ids["paid"])
    detail.button(key="payment_detail.refund").click()
    _run(detail)
    dialog = "payment_detail.refund_dialog"
    seen["detail refund dialog"] = live_markdown(detail)
    detail.text_input(key=f"{dialog}.amount").input("1000")
    detail.radio(key=f"{dialog}.reason").set_value("other")
    _run(detail)
    detail.text_input(key=f"{dialog}.other").input(EVIL)
    detail.button(key=f"{dialog}.confirm").click()
    _run(detail)
    assert not detail.session_state[f"{dialog}.dialog_open"]  # refunded: the outcome shows on the page
    seen["detail refund outcome"] = live_markdown(detail)

    live = [f"{page} | {text}" for page, found in seen.items() for text in found]
    assert live == [], "\n".join(live)


@pytest.mark.parametrize(
    "text",
    [
        EVIL,
        LINK,
        IMAGE,
        HTML,
        "www.evil.example",
        "https://evil.example",
        "a@evil.example",
        ":red[x] $x$ `c`",
        "\\](x)",
    ],
)
def test_plain_leaves_nothing_markdown_could_read(text: str) -> None:
    escaped = plain(text)
    assert not any(pattern.search(escaped) for pattern in ACTIVE), escaped
    assert re.sub(r"\\(.)", r"\1", escaped) == text  # what the reader sees is the text itself


def test_plain_keeps_ordinary_text_and_web_url_keeps_only_web_links() -> None:
    assert plain("김체카 John 010 1234 5678") == "김체카 John 010 1234 5678"
    assert plain(None) == ""
    assert web_url("https://portone.example/receipt/1") == "https://portone.example/receipt/1"
    assert web_url("javascript:alert(1)") is None and web_url("data:text/html,x") is None and web_url(None) is None
