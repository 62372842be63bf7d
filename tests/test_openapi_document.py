"""The OpenAPI document generated from the input models: valid OpenAPI 3.0, one page per route
of the router, one UID rule, and schemas that say what the node accepts."""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from node.input_fields import UID_SCHEMA
from node.sources.request import parse_request
from node.sources.request_body import RequestBody
from rest.iso_route import IsoQuery
from rest.multimonitor import MultimonitorQuery
from rest.obscurl import ObscurlQuery
from rest.openapi import DOCUMENT
from tests.cloud_peers import service_account_token
from tests.post_examples import EXAMPLES, example
from tests.rest_support import Api, running_app


def _uid_like(pattern: str) -> bool:
    """A pattern that reads like a UID rule: digits and dots, no letters."""
    return "0-9" in pattern and "." in pattern and not re.search("[A-Za-z]", pattern)



@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("openapi")) as api:
        yield api


def test_the_document_is_valid_openapi_3_0() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.0.")


async def test_every_resource_of_the_router_is_documented_with_its_methods(api: Api) -> None:
    router = api.client.app.router
    served: dict[str, set[str]] = {}
    for resource in router.resources():
        methods = {route.method.lower() for route in resource if route.method != "HEAD"}
        served.setdefault(resource.canonical, set()).update(methods)
    documented = {path: set(item) for path, item in DOCUMENT["paths"].items()}
    assert served == documented


def _schemas(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _schemas(item)
    elif isinstance(value, list):
        for item in value:
            yield from _schemas(item)


def test_every_uid_in_the_document_has_the_one_uid_schema() -> None:
    uid_patterns = {schema["pattern"] for schema in _schemas(DOCUMENT)
                    if isinstance(schema.get("pattern"), str)
                    and _uid_like(schema["pattern"])}
    assert uid_patterns == {UID_SCHEMA["pattern"]}
    uid_schemas = [schema for schema in _schemas(DOCUMENT)
                   if schema.get("pattern") == UID_SCHEMA["pattern"]]
    assert all(schema == UID_SCHEMA for schema in uid_schemas)
    # Path parameters, query parameters and body fields alike.
    assert len(uid_schemas) > 40


def test_the_query_parameters_are_the_models_fields() -> None:
    for path, model in [("/ngv/obscurl", ObscurlQuery), ("/ngv/multimonitor-api",
                                                         MultimonitorQuery),
                        ("/webdv/getIso", IsoQuery)]:
        parameters = DOCUMENT["paths"][path]["get"]["parameters"]
        names = {info.alias or name for name, info in model.model_fields.items()}
        assert names <= {p["name"] for p in parameters}
        required = {p["name"] for p in parameters if p["required"]}
        assert required == {info.alias or name for name, info in model.model_fields.items()
                            if info.is_required()}


def _body_validator() -> OAS30Validator:
    schema = {"$ref": "#/components/schemas/RequestBody",
              "components": DOCUMENT["components"]}
    return OAS30Validator(schema)


def test_the_post_body_schema_is_the_models() -> None:
    body = DOCUMENT["paths"]["/ngv/v1/obscurl"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RequestBody"}
    documented = DOCUMENT["components"]["schemas"]["RequestBody"]
    assert set(documented["properties"]) == {
        info.alias or name for name, info in RequestBody.model_fields.items()}
    assert documented["required"] == ["username", "role"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_body_the_node_accepts_matches_the_documented_schema(name: str) -> None:
    token, _ = service_account_token()
    body = example(name, token=token) if name == "google-bucket" else example(name)
    parse_request(copy.deepcopy(body))
    errors = [error.message for error in _body_validator().iter_errors(body)]
    assert errors == []


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: b["studies"][0].update(studyInstanceUID="1.02.3"), "studyInstanceUID"),
    (lambda b: b["studies"][0].update(accessionNumber="A" * 17), "accessionNumber"),
    (lambda b: b["studies"][0]["series"][0]["instances"][0].update(mimeType="image/gif"),
     "mimeType"),
    (lambda b: b.pop("role"), "role"),
])
def test_a_body_the_node_refuses_for_a_field_the_schema_refuses_too(
    change: Any, field: str
) -> None:
    body = example("files")
    change(body)
    with pytest.raises(Exception, match=re.escape(field)):
        parse_request(copy.deepcopy(body))
    assert list(_body_validator().iter_errors(body)), f"the schema takes a bad {field}"


def test_every_keyword_fits_the_type_it_is_on() -> None:
    """Generated schemas carry no string keyword on an array (a minLength there says
    nothing), nor an array keyword on a string."""
    for schema in _schemas(DOCUMENT):
        if schema.get("type") == "array":
            assert not {"minLength", "maxLength", "pattern"} & set(schema), schema
        if schema.get("type") == "string":
            assert not {"minItems", "maxItems", "items"} & set(schema), schema
