"""/api/v1/docs: the API reference as one server-rendered page from the app's own OpenAPI
schema. Nothing comes from another site (Swagger UI from a CDN was a blank page offline),
no script runs, and the page is as readable on a phone as the others."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from skyline.services.webapp.templating import render

METHODS = ("get", "post", "put", "patch", "delete")


def _type(schema: dict[str, Any] | None) -> str:
    """A schema in a few words: `integer`, `list of AnomalyOut`, `string | null`."""
    if not schema:
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items'))}"
    if schema.get("type") == "object" and "additionalProperties" in schema:
        return f"map of {_type(schema['additionalProperties'])}"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    return str(schema.get("type", "any"))


def _body(op: dict[str, Any]) -> str:
    content = op.get("requestBody", {}).get("content", {})
    parts = [f"{media}: {_type(c.get('schema'))}" for media, c in content.items()]
    return "; ".join(parts)


def sections(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Operations grouped by their first tag, in path order."""
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for path, ops in schema.get("paths", {}).items():
        for method in METHODS:
            op = ops.get(method)
            if op is None:
                continue
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append({
                "method": method.upper(), "path": path, "summary": op.get("summary", ""),
                "description": op.get("description", ""),
                "params": [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                            "type": _type(p.get("schema")),
                            "description": p.get("description")
                            or p.get("schema", {}).get("description", "")}
                           for p in op.get("parameters", [])],
                "body": _body(op),
                "responses": [(code, r.get("description", ""),
                               _type(r.get("content", {}).get("application/json", {})
                                     .get("schema")))
                              for code, r in sorted(op.get("responses", {}).items())],
                "auth": bool(op.get("security")),
                "anchor": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
            })
    return [{"tag": tag, "ops": ops} for tag, ops in sorted(by_tag.items())]


def models(schema: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, s in sorted(schema.get("components", {}).get("schemas", {}).items()):
        required = set(s.get("required", []))
        out.append({"name": name, "description": s.get("description", ""), "fields": [
            {"name": f, "type": _type(p), "required": f in required,
             "description": p.get("description", "")}
            for f, p in s.get("properties", {}).items()]})
    return out


def router(app: FastAPI, prefix: str) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get(f"{prefix}/docs", response_class=HTMLResponse)
    def docs(request: Request) -> HTMLResponse:
        schema = app.openapi()
        return render(request, "api_docs.html", info=schema.get("info", {}),
                      sections=sections(schema), models=models(schema),
                      security=schema.get("components", {}).get("securitySchemes", {}))

    return r
