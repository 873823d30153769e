"""Per-app state container: one instance per ``create_app`` call."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fastapi import FastAPI
from starlette.requests import Request

from sandbox.auth import TokenStore
from sandbox.config import ConfigHolder, SandboxConfig
from sandbox.faults import CallLog, FaultInjector
from sandbox.http import base_url
from sandbox.state import PaymentStore
from sandbox.webhooks import WebhookDispatcher


@dataclass
class SandboxRuntime:
    holder: ConfigHolder
    store: PaymentStore = field(default_factory=PaymentStore)
    tokens: TokenStore = field(default_factory=TokenStore)
    calls: CallLog = field(default_factory=CallLog)
    # Set when the server is stopping: injected delays end at once.
    stopping: threading.Event = field(default_factory=threading.Event)
    faults: FaultInjector = field(init=False)
    webhooks: WebhookDispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.faults = FaultInjector(self.holder)
        self.webhooks = WebhookDispatcher(self.holder)

    @classmethod
    def create(cls, config: SandboxConfig | None) -> SandboxRuntime:
        return cls(holder=ConfigHolder(config or SandboxConfig()))

    @property
    def config(self) -> SandboxConfig:
        return self.holder.current

    @staticmethod
    def now() -> int:
        return int(time.time())

    def base_url(self, request: Request) -> str:
        return base_url(request, self.config.public_base_url)

    async def reset(self) -> None:
        """Forget everything: payments, prepares, tokens, calls, webhooks; initial config."""
        cfg = self.holder.reset()
        self.store.clear()
        self.tokens.clear()
        self.calls.clear()
        self.faults.reseed(cfg.seed)
        await self.webhooks.reset()


def runtime_of(app: FastAPI) -> SandboxRuntime:
    rt = app.state.sandbox
    assert isinstance(rt, SandboxRuntime)
    return rt
