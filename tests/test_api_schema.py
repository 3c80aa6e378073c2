"""Schemathesis drives the HTTP API from its own OpenAPI schema: no 5xx, every response as documented.

Bytes that match the schema need not be an image, so "schema-valid data is accepted" is not
asked; every other response check is.
"""

import socket

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runtime.classifier import Classifier
from runtime.serve.app import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]


@pytest.fixture()
def api_schema(converted, monkeypatch):
    """The real app in-process; host names are not looked up (this machine has no network to ask)."""
    real = socket.getaddrinfo

    def literal_only(host, *args, **kwargs):
        return real(host, *args, **kwargs, flags=socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", literal_only)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(Classifier.load(converted)))


def test_api_answers_as_its_schema_says(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} == {"/health", "/predict", "/2015-03-31/functions/function/invocations"}
    calls = []
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            calls.append(case.call_and_validate(checks=CHECKS).status_code)
        check()
    assert len(calls) >= 60 and max(calls) < 500
