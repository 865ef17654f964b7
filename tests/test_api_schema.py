"""Schemathesis over the served OpenAPI document: every operation, generated inputs, no 500s, answers as documented.

Runs against the app of ``newsletter serve`` (ASGI, in-process) on a
workspace holding a list, a subscriber, a segment and a scheduled campaign,
so reads find something; on both backends (PostgreSQL refuses NUL in text,
SQLite does not: the door must catch it before either sees it). Each
operation gets valid inputs (positive) and invalid ones (negative).

(Schemathesis's ``from_fixture`` reads a private attribute pytest 9 no
longer has, so each operation's Hypothesis strategy is driven here.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from support.api import ARTICLE, api_on

OPERATIONS = [
    ("POST", "/subscribers"), ("GET", "/subscribers"), ("POST", "/subscribers/import"), ("GET", "/subscribers/{email}"),
    ("PATCH", "/subscribers/{email}"), ("POST", "/subscribers/{email}/unsubscribe"),
    ("DELETE", "/subscribers/{email}"), ("GET", "/lists"), ("GET", "/lists/{name}"), ("GET", "/segments"),
    ("GET", "/segments/{name}/count"), ("POST", "/campaigns/check"), ("POST", "/campaigns/preview"), ("POST", "/send"),
    ("POST", "/campaigns"), ("POST", "/campaigns/test"), ("GET", "/campaigns/{campaign_id}"),
    ("POST", "/campaigns/{campaign_id}/cancel"),
]


# An invalid request may also be refused for its size: a generated body past the cap (8 MB) is a 413
# problem before anything reads it, which schemathesis's default list of rejections leaves out.
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]}}})


@pytest.fixture
def served(workspace, cli):
    from datetime import UTC, datetime

    api = api_on(workspace, rate=100_000)
    assert api.post("/api/subscribers", {"email": "ada@example.org", "list": "readers",
                                         "attributes": {"city": "London"}}).status_code == 201
    assert cli("segments", "create", "london", "--list", "readers", "--where", 'city = "London"').exit_code == 0
    year = datetime.now(UTC).year + 1
    assert api.post("/api/campaigns", {"markdown": ARTICLE, "list": "readers",
                                       "at": f"{year}-06-01 09:00"}).status_code == 201
    yield api
    api.store.close()


def test_the_operations_here_are_every_operation_served(served):
    document = served.client.get("/api/openapi.json").json()
    served_operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert served_operations == set(OPERATIONS)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_as_documented(served, method, path, mode):
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", served.client.app, config=CONFIG)
    operation = schema[path][method]
    headers = served.headers()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers_as_documented(case):
        # Valid by the schema is not valid by the rules ("level" is a string, not an address): such a
        # request is refused with a problem, which positive_data_acceptance would count as a failure.
        response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500

    answers_as_documented()


def test_the_document_is_valid_openapi_3_1(served):
    from openapi_spec_validator import validate

    document = served.client.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    validate(document)
