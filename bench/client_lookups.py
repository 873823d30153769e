"""PortOne V1 client: payment look-ups per second against the sandbox, ours vs the
`iamport-rest-client` package doing the same look-ups (it fetches a new token on every call).

    python -m bench.client_lookups --lookups 2000
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx
from iamport import Iamport

from bench.stack import running_stack
from services.core.config import SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET
from services.portone.v1 import PortOneV1Client


def _seed(sandbox_url: str, count: int) -> list[str]:
    rows = [{"merchant_uid": f"lookup-{i}", "amount": 50000, "currency": "KRW", "status": "paid"} for i in range(count)]
    created = httpx.post(f"{sandbox_url}/sandbox/payments/bulk", json={"payments": rows}, timeout=120)
    created.raise_for_status()
    return list(created.json()["imp_uids"])


def _rate(lookups: int, seconds: float) -> dict[str, float]:
    return {"lookups": lookups, "seconds": round(seconds, 3), "per_second": round(lookups / seconds, 1)}


def run(lookups: int) -> dict[str, Any]:
    with running_stack("sqlite://", api=False) as stack:
        imp_uids = _seed(stack.sandbox_url, min(lookups, 1000))
        ours = PortOneV1Client(base_url=stack.sandbox_url, imp_key=SANDBOX_IMP_KEY, imp_secret=SANDBOX_IMP_SECRET)
        theirs = Iamport(SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, imp_url=stack.sandbox_url + "/")
        targets = [imp_uids[i % len(imp_uids)] for i in range(lookups)]
        started = time.perf_counter()
        for imp_uid in targets:
            ours.get_payment(imp_uid)
        our_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for imp_uid in targets:
            theirs.find(imp_uid=imp_uid)
        their_seconds = time.perf_counter() - started
        ours.close()
    result = {"ours": _rate(lookups, our_seconds), "iamport_rest_client": _rate(lookups, their_seconds)}
    result["ratio"] = round(their_seconds / our_seconds, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=2000)
    print(json.dumps(run(parser.parse_args().lookups), indent=2))


if __name__ == "__main__":
    main()
