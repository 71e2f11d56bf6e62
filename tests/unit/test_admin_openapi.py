"""The admin API's OpenAPI document: valid OpenAPI 3.1, naming every route the app serves, and
identical to the published docs/admin-openapi.json (python -m services.admin.openapi)."""

from __future__ import annotations

import json

from openapi_spec_validator import validate
from starlette.routing import Route

from services.admin.api import HANDLERS, create_app
from services.admin.openapi import OPERATIONS, PUBLISHED, document, render


def test_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_route_of_the_app_is_in_the_document_and_back():
    app = create_app(service=None)  # type: ignore[arg-type]  # routes only; not started
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    }
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert served == documented
    assert set(HANDLERS) == {op.operation_id for op in OPERATIONS}


def test_published_document_matches_the_code():
    assert json.loads(PUBLISHED.read_text()) == json.loads(render()), (
        "docs/admin-openapi.json is stale: run python -m services.admin.openapi"
    )
