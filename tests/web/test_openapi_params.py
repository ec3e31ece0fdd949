"""The OpenAPI document describes every query parameter and path placeholder of the API,
with the schema the guard holds each value to: one declaration, never a second list."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bastion.web.app import build_app
from bastion.web.openapi import document
from bastion.web.params import PATH, QUERY, placeholders
from bastion.web.routes import ANYONE, ROUTES_KEY, UndeclaredRoute
from tests.web.conftest import Console


def _params(op: dict[str, Any], where: str) -> dict[str, Any]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == where}


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(dict(request.match_info))


async def test_every_query_name_and_path_placeholder_is_in_the_document(
    console: Console,
) -> None:
    async with console.http() as http, http.get("/api/v1/openapi.json") as r:
        served = await r.json()
    routes = build_app(console.core)[ROUTES_KEY]
    # a route with placeholders: the API has none today, so one is added here
    routes.add("GET", "/api/v1/review/weeks/{week}/findings/{finding}", _echo, ANYONE,
               summary="one finding", query=("cursor",))  # fmt: skip
    for doc in (served, document(routes)):
        for (method, path), declared in routes.declared.items():
            if not declared.api or path == "/api/v1/openapi.json" or path not in doc["paths"]:
                continue
            op = doc["paths"][path][method.lower()]
            query, where = _params(op, "query"), _params(op, "path")
            assert set(query) == set(declared.query), (method, path)
            assert list(where) == list(placeholders(path)), (method, path)
            for name, p in query.items():
                assert p["schema"] == QUERY[name] and p["required"] is False
            for name, p in where.items():
                assert p["schema"] == PATH[name] and p["required"] is True
    findings = served["paths"]["/api/v1/review/findings"]["get"]
    assert _params(findings, "query")["week"]["schema"]["pattern"]
    sessions = served["paths"]["/api/v1/review/sessions"]["get"]
    assert _params(sessions, "query")["protocol"]["schema"]["enum"] == ["ssh", "postgres"]
    assert "state" in _params(served["paths"]["/api/v1/review/consents"]["get"], "query")
    assert "name" in _params(served["paths"]["/api/v1/admin/targets/host-key"]["get"], "query")
    added = document(routes)["paths"]["/api/v1/review/weeks/{week}/findings/{finding}"]["get"]
    assert list(_params(added, "path")) == ["week", "finding"]


async def test_a_parameter_without_a_schema_cannot_be_declared(console: Console) -> None:
    routes = build_app(console.core)[ROUTES_KEY]
    with pytest.raises(UndeclaredRoute, match="query parameter 'sort' has no schema"):
        routes.add("GET", "/api/v1/sneaky", _echo, ANYONE, summary="x", query=("sort",))
    with pytest.raises(UndeclaredRoute, match=r"path placeholder \{anything\} has no schema"):
        routes.add("GET", "/api/v1/sneaky/{anything}", _echo, ANYONE, summary="x")


async def test_an_api_value_out_of_shape_is_refused_with_one_line(console: Console) -> None:
    async with console.http() as http:
        await console.sign_in(http, "ada")
        for query in ({"session": "../../etc/passwd"}, {"session": "x" * 129},
                      {"cursor": "not-a-cursor"}):  # fmt: skip
            async with http.get("/api/v1/review/commands", params=query) as r:
                assert r.status == 400, query
                error = (await r.json())["error"]
                assert "\n" not in error and error.startswith("refused: "), error
        async with http.get("/api/v1/review/sessions?user=ada&user=alice") as r:
            assert r.status == 400
            assert (await r.json())["error"] == "refused: user is given more than once"
        async with http.get("/api/v1/review/sessions", params={"protocol": "telnet"}) as r:
            assert r.status == 400
            assert "ssh, postgres" in (await r.json())["error"]
        async with http.get("/api/v1/review/sessions", params={"protocol": "", "user": ""}) as r:
            assert r.status == 200  # an empty value is no filter, as the search form sends it
    app = build_app(console.core)
    app[ROUTES_KEY].add("GET", "/api/v1/probe/{session}", _echo, (), public=True,
                        summary="a placeholder")  # fmt: skip
    server = TestServer(app)
    await server.start_server()
    try:
        async with console.http() as http:
            base = f"http://127.0.0.1:{server.port}/api/v1/probe"
            async with http.get(f"{base}/ssh-1.x") as r:
                assert r.status == 200 and (await r.json()) == {"session": "ssh-1.x"}
            async with http.get(f"{base}/.hidden") as r:
                assert r.status == 400
                assert (await r.json())["error"].startswith("refused: session is not in")
    finally:
        await server.close()
