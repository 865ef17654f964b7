"""The HTTP API on a test workspace: the app of ``newsletter serve`` with tokens made through the use case."""

from __future__ import annotations

from dataclasses import dataclass, field

from newsletter.config import load_settings
from newsletter.delivery.memory import MemoryTransport
from newsletter.store.db import Store
from newsletter.usecases.tokens import SCOPES, create_token

ARTICLE = """---
title: Flu shots are here
preheader: Book yours at the front desk this week
---

Flu shots are **here**. Book yours at the [front desk](https://clinic.example/book).
"""


@dataclass
class Api:
    """A client for the API with one token of every scope (``token``), and ways to make more."""

    settings: object
    store: Store
    client: object
    token: str
    transport: MemoryTransport = field(default_factory=MemoryTransport)

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", **extra}

    def get(self, path: str, **kwargs):
        return self.client.get(path, headers=self.headers(), **kwargs)

    def post(self, path: str, json=None, key: str | None = None, token: str | None = None):
        extra = {"Idempotency-Key": key} if key else {}
        return self.client.post(path, json=json, headers=self.headers(token, **extra))

    def new_token(self, name: str, scopes: list[str], rate: int = 1000) -> str:
        return create_token(self.store, name, scopes, rate_per_second=rate)["token"]

    def restart(self) -> Api:
        """The same workspace served by a new app (a restart of ``serve``)."""
        return open_api(self.settings, self.store, self.token)


def open_api(settings, store: Store, token: str) -> Api:
    from newsletter.web.app import create_app
    from starlette.testclient import TestClient

    transport = MemoryTransport()
    app = create_app(settings, store, transport_factory=lambda _s: transport)
    return Api(settings, store, TestClient(app, follow_redirects=False), token, transport)


def api_on(workspace, rate: int = 1000) -> Api:
    """The API of ``workspace`` with a token ``clinic-website`` of every scope."""
    settings = load_settings(workspace)
    store = Store(settings.database_url)
    token = create_token(store, "clinic-website", list(SCOPES), rate_per_second=rate)["token"]
    return open_api(settings, store, token)
