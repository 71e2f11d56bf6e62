"""The admin API's operations, declared once: `services/admin/api.py` builds its routes from
`OPERATIONS`, and `document()` renders the OpenAPI 3.1 document served at `/openapi.json` and
published as `docs/admin-openapi.json` (regenerate with `python -m services.admin.openapi`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from keywarden.settings import PROJECT_ROOT
from services.admin import models
from services.admin.roles import Action

PUBLISHED = PROJECT_ROOT / "docs" / "admin-openapi.json"
VERSION = "1.0.0"


@dataclass(frozen=True)
class Operation:
    """One route: method, path, who may call it, what it takes and what it answers."""

    operation_id: str
    method: str
    path: str
    summary: str
    action: Action | None  # None: no credential needed
    body: type[BaseModel] | None = None
    body_is_list: bool = False
    status: int = 200
    response: type[BaseModel] | None = None
    response_is_list: bool = False
    query: tuple[tuple[str, str, str], ...] = ()  # (name, JSON type, description)


Op = Operation
KEY = "{key}"
OPERATIONS: tuple[Operation, ...] = (
    Op("health", "GET", "/healthz", "Liveness", None),
    Op("openapi", "GET", "/openapi.json", "This document", None),
    Op("whoami", "GET", "/v1/whoami", "The calling credential (no secret)", Action.KEYS_READ),
    Op("listKeys", "GET", "/v1/keys", "Wrapped keys the caller may see", Action.KEYS_READ,
      response_is_list=True, query=(("all", "boolean", "include revoked keys"),)),
    Op("createKey", "POST", "/v1/keys", "Create a wrapped key; its secret is shown once",
      Action.KEY_CREATE, models.KeyCreate, status=201, response=models.IssuedSecret),
    Op("showKey", "GET", f"/v1/keys/{KEY}", "One key's tags, policy and expiry (no hash)",
      Action.KEYS_READ),
    Op("setKeyPolicy", "PATCH", f"/v1/keys/{KEY}/policy", "Change budget caps, RPM, allowlists",
      Action.KEY_CHANGE, models.PolicyChange),
    Op("setKeyTags", "PATCH", f"/v1/keys/{KEY}/tags", "Change attribution tags",
      Action.KEY_CHANGE, models.TagsChange),
    Op("setKeyExpiry", "PUT", f"/v1/keys/{KEY}/expiry", "Set the expiry and rotation policy",
      Action.KEY_CHANGE, models.ExpiryChange),
    Op("rotateKey", "POST", f"/v1/keys/{KEY}/rotate",
      "Issue a successor secret (same key id); the old one works for the grace period",
      Action.KEY_ROTATE, models.KeyRotate, response=models.IssuedSecret),
    Op("revokeKey", "POST", f"/v1/keys/{KEY}/revoke", "Revoke a key", Action.KEY_REVOKE,
      models.KeyRevoke),
    Op("keyUsage", "GET", f"/v1/keys/{KEY}/usage", "Daily usage from ClickHouse request_events",
      Action.USAGE_READ, query=(("days", "integer", "how many days back (default 30)"),)),
    Op("keyAudit", "GET", f"/v1/keys/{KEY}/audit", "The key's audit trail from ClickHouse",
      Action.AUDIT_READ, response_is_list=True),
    Op("listProviders", "GET", "/v1/providers", "Provider keys (never a secret)",
      Action.PROVIDERS_READ, response_is_list=True,
      query=(("all", "boolean", "include retired keys"),)),
    Op("addProvider", "POST", "/v1/providers", "Register a provider key", Action.PROVIDERS_WRITE,
      models.ProviderAdd, status=201),
    Op("rotateProvider", "POST", "/v1/providers/rotate",
      "Switch traffic to a new provider key; the old one keeps a grace period",
      Action.PROVIDERS_WRITE, models.ProviderRotate),
    Op("rekeyProviders", "POST", "/v1/providers/rekey", "Re-encrypt under a new KEK version",
      Action.PROVIDERS_WRITE, models.ProviderRekey),
    Op("retireProviders", "POST", "/v1/providers/retire",
      "Retire one provider key, or every key whose grace is over", Action.PROVIDERS_WRITE,
      models.ProviderRetire),
    Op("listCredentials", "GET", "/v1/credentials", "Admin credentials (no secret)",
      Action.CREDENTIALS_READ, response_is_list=True),
    Op("createCredential", "POST", "/v1/credentials",
      "Issue an admin credential with a role; its secret is shown once",
      Action.CREDENTIALS_WRITE, models.CredentialCreate, status=201,
      response=models.IssuedSecret),
    Op("revokeCredential", "POST", "/v1/credentials/{credential_id}/revoke",
      "Revoke an admin credential", Action.CREDENTIALS_WRITE, models.CredentialRevoke),
    Op("credentialAudit", "GET", "/v1/credentials/{credential_id}/audit",
      "A credential's audit trail", Action.AUDIT_READ, response_is_list=True),
    Op("showCeiling", "GET", "/v1/teams/{team}/ceiling", "A team's ceiling",
      Action.CEILINGS_READ),
    Op("setCeiling", "PUT", "/v1/teams/{team}/ceiling",
      "Set the widest policy team admins may give their keys", Action.CEILINGS_WRITE,
      models.CeilingSet),
    Op("reportLeaks", "POST", "/v1/leaks",
      "Report leaked tokens; known keys are revoked and alerted. The answer never reveals "
      "whether a token was known", Action.LEAKS_REPORT, models.LeakReport, body_is_list=True,
      status=202, response=models.LeakReceipt),
)  # fmt: skip

_ERRORS = {
    "400": "Invalid request",
    "401": "No valid admin credential",
    "403": "The credential's role does not allow this (audited)",
    "404": "Not found",
    "503": "Kafka or ClickHouse unavailable (retriable)",
}


def _schema_of(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API."""
    components: dict[str, Any] = {}
    error_ref = _schema_of(models.ErrorBody, components)
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "responses": {},
        }
        if op.action is None:
            item["security"] = []
        else:
            item["description"] = f"Needs a credential whose role allows `{op.action.value}`."
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", op.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind},
             "description": text}
            for name, kind, text in op.query
        ]  # fmt: skip
        if parameters:
            item["parameters"] = parameters
        if op.body is not None:
            ref = _schema_of(op.body, components)
            schema = {"type": "array", "items": ref} if op.body_is_list else ref
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        if op.response is not None:
            answer: dict[str, Any] = _schema_of(op.response, components)
        elif op.response_is_list:
            answer = {"type": "array", "items": {"type": "object"}}
        else:
            answer = {"type": "object"}
        item["responses"][str(op.status)] = {
            "description": "OK",
            "content": {"application/json": {"schema": answer}},
        }
        if op.action is not None:
            for status, text in _ERRORS.items():
                item["responses"][status] = {
                    "description": text,
                    "content": {"application/json": {"schema": error_ref}},
                }
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "keywarden admin API",
            "version": VERSION,
            "description": "Wrapped keys, provider keys, admin credentials and team ceilings; "
            "every change is authorised by role and audited. Authenticate with "
            "`Authorization: Bearer kwa_<id>_<secret>`.",
        },
        "servers": [{"url": "http://127.0.0.1:18090"}],
        "security": [{"adminCredential": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "adminCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an admin credential kwa_<id>_<secret>",
                }
            },
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    PUBLISHED.parent.mkdir(exist_ok=True)
    PUBLISHED.write_text(render())
    print(f"wrote {Path(PUBLISHED).relative_to(PROJECT_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["OPERATIONS", "Operation", "PUBLISHED", "document", "render"]
