"""The OpenAPI 3.1 document of /api/v1, built from the routes' own declarations."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bastion import __version__
from bastion.web.params import PATH, QUERY
from bastion.web.routes import ROUTES_KEY, Declared, Routes
from bastion.web.security import CSRF_HEADER
from bastion.web.websession import COOKIE

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _parameters(method: str, declared: Declared) -> list[dict[str, Any]]:
    """Its path placeholders, its query parameters (an empty one is no filter) and, for a
    write, the CSRF header: each with the schema the guard checks it against."""
    out: list[dict[str, Any]] = [{"name": n, "in": "path", "required": True, "schema": PATH[n]}
                                 for n in declared.path]  # fmt: skip
    out += [{"name": n, "in": "query", "required": False, "allowEmptyValue": True,
             "schema": QUERY[n]} for n in declared.query]  # fmt: skip
    if method == "POST" and not declared.public:
        out.append({"name": CSRF_HEADER, "in": "header", "required": True,
                    "schema": {"type": "string"},
                    "description": "the CSRF token (GET /api/v1/me)"})  # fmt: skip
    return out


def _operation(method: str, declared: Declared) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": declared.summary,
                          "responses": _responses(method, declared.public)}  # fmt: skip
    if not declared.public:
        op["security"] = [{"session": []}]
        op["x-roles"] = sorted(declared.roles)
    if declared.step_up:  # refused (403) unless this sign-in proved a code within [web] step_up
        op["x-step-up"] = True
    parameters = _parameters(method, declared)
    if parameters:
        op["parameters"] = parameters
    if declared.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": declared.body}}}  # fmt: skip
    return op


def _responses(method: str, public: bool) -> dict[str, Any]:
    def answer(text: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": body}}}

    ok = "201" if method == "POST" else "200"
    out = {ok: answer("done", {}), "400": answer("refused: bad input", ERROR),
           "403": answer("refused: role, CSRF token, origin, rule, or a fresh TOTP code is"
                         " needed first (POST /api/v1/step-up)", ERROR),
           "404": answer("no such thing", ERROR), "409": answer("conflict", ERROR)}  # fmt: skip
    if public:
        out["200"] = out.pop(ok)
        out["429"] = answer("too many failed sign-ins from this address", ERROR)
    out["401"] = answer("not signed in, or wrong user name, password or code", ERROR)
    return out


def document(routes: Routes) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), declared in sorted(routes.declared.items()):
        if declared.api and path != "/api/v1/openapi.json":
            paths.setdefault(path, {})[method.lower()] = _operation(method, declared)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bastion console API", "version": __version__,
                 "description": "What the web console's pages do, as JSON. Sign in with"
                 " POST /api/v1/signin; send the CSRF token it returns in the"
                 f" {CSRF_HEADER} header of every write."},
        "paths": paths,
        "components": {"securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": COOKIE}}},
    }  # fmt: skip


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[ROUTES_KEY]))


def add_openapi(routes: Routes) -> None:
    routes.add(
        "GET",
        "/api/v1/openapi.json",
        openapi_json,
        (),
        public=True,
        summary="this API's OpenAPI document",
    )
