"""The admin API's ASGI app: routes built from `openapi.OPERATIONS` (one handler per operation
id), one error handler mapping `AdminApiError` to its status, and one lifespan that starts and
stops the `AdminService`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas.events.admin import AdminCredentialRecord
from services.admin import models, openapi
from services.admin.auth import bearer_token
from services.admin.errors import AdminApiError, BadRequest
from services.admin.leaks import MAX_REPORTS
from services.admin.service import AdminService

Handler = Callable[[Request, AdminService], Awaitable[Any]]


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=str, separators=(",", ":")).encode()


M = TypeVar("M", bound=BaseModel)


async def _body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        raise BadRequest(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"invalid request body: {where}: {first['msg']}"


def _caller(request: Request, service: AdminService) -> AdminCredentialRecord:
    return service.authenticate(bearer_token(request.headers.get("authorization", "")))


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def _issued(secret: str, **entity: Any) -> dict[str, Any]:
    return {"secret": secret, **entity}


# --- handlers, by operation id ---------------------------------------------------------------


async def health(request: Request, service: AdminService) -> Any:
    return {"status": "ok", "keys": len(service.keys.registry.wrapped_keys)}


async def openapi_document(request: Request, service: AdminService) -> Any:
    return openapi.document()


async def whoami(request: Request, service: AdminService) -> Any:
    return _caller(request, service).public_view()


async def list_keys(request: Request, service: AdminService) -> Any:
    return await service.list_keys(_caller(request, service), _flag(request, "all"))


async def create_key(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    issued, record = await service.create_key(caller, await _body(request, models.KeyCreate))
    return _issued(issued.value, key=record.public_view())


async def show_key(request: Request, service: AdminService) -> Any:
    return await service.show_key(_caller(request, service), request.path_params["key"])


async def set_key_policy(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.PolicyChange)
    return (await service.change_policy(caller, request.path_params["key"], body)).public_view()


async def set_key_tags(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.TagsChange)
    return (await service.change_tags(caller, request.path_params["key"], body)).public_view()


async def set_key_expiry(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.ExpiryChange)
    return (await service.change_expiry(caller, request.path_params["key"], body)).public_view()


async def rotate_key(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.KeyRotate)
    issued, record = await service.rotate_key(caller, request.path_params["key"], body)
    return _issued(issued.value, key=record.public_view())


async def revoke_key(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.KeyRevoke)
    return (
        await service.revoke_key(caller, request.path_params["key"], body.reason)
    ).public_view()


async def key_usage(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    days = request.query_params.get("days", "30")
    if not days.isdigit() or not 0 < int(days) <= 3660:
        raise BadRequest(f"days must be a whole number from 1 to 3660, got {days!r}")
    return await service.key_usage(caller, request.path_params["key"], int(days))


async def key_audit(request: Request, service: AdminService) -> Any:
    return await service.key_audit_trail(_caller(request, service), request.path_params["key"])


async def list_providers(request: Request, service: AdminService) -> Any:
    return await service.list_providers(_caller(request, service), _flag(request, "all"))


async def add_provider(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.ProviderAdd)
    record = await service.add_provider(caller, body.provider, body.secret, body.rotation_days)
    return record.public_view()


async def rotate_provider(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.ProviderRotate)
    new, old = await service.rotate_provider(
        caller, body.provider, body.secret, body.grace_hours, body.rotation_days
    )
    return {"new": new.public_view(), "old": old.public_view()}


async def rekey_providers(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.ProviderRekey)
    version, changed = await service.rekey_providers(caller, body.to_version)
    return {"kek_version": version, "changed": [r.public_view() for r in changed]}


async def retire_providers(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.ProviderRetire)
    retired = await service.retire_providers(caller, body.provider_key_id)
    return {"retired": [r.public_view() for r in retired]}


async def list_credentials(request: Request, service: AdminService) -> Any:
    return await service.list_credentials(_caller(request, service))


async def create_credential(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    issued, record = await service.issue_credential(
        caller, await _body(request, models.CredentialCreate)
    )
    return _issued(issued.value, credential=record.public_view())


async def revoke_credential(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.CredentialRevoke)
    record = await service.revoke_credential(
        caller, request.path_params["credential_id"], body.reason
    )
    return record.public_view()


async def credential_audit(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    await service.authorize(caller, openapi.Action.AUDIT_READ)
    if caller.role.value not in ("owner", "auditor"):
        raise await service.refuse(
            caller, openapi.Action.AUDIT_READ, "only owners and auditors read credential trails"
        )
    return await service.audit_trail(caller, f"cred:{request.path_params['credential_id']}")


async def show_ceiling(request: Request, service: AdminService) -> Any:
    return await service.ceiling(_caller(request, service), request.path_params["team"])


async def set_ceiling(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    body = await _body(request, models.CeilingSet)
    return (await service.set_ceiling(caller, request.path_params["team"], body)).public_view()


_LEAKS = TypeAdapter(list[models.LeakReport])


async def report_leaks(request: Request, service: AdminService) -> Any:
    caller = _caller(request, service)
    try:
        reports = _LEAKS.validate_json(await request.body())
    except ValidationError as error:
        raise BadRequest(_describe(error)) from None
    if len(reports) > MAX_REPORTS:
        raise BadRequest(f"at most {MAX_REPORTS} tokens per report, got {len(reports)}")
    return {"received": await service.report_leaks(caller, reports)}


HANDLERS: dict[str, Handler] = {
    "health": health,
    "openapi": openapi_document,
    "whoami": whoami,
    "listKeys": list_keys,
    "createKey": create_key,
    "showKey": show_key,
    "setKeyPolicy": set_key_policy,
    "setKeyTags": set_key_tags,
    "setKeyExpiry": set_key_expiry,
    "rotateKey": rotate_key,
    "revokeKey": revoke_key,
    "keyUsage": key_usage,
    "keyAudit": key_audit,
    "listProviders": list_providers,
    "addProvider": add_provider,
    "rotateProvider": rotate_provider,
    "rekeyProviders": rekey_providers,
    "retireProviders": retire_providers,
    "listCredentials": list_credentials,
    "createCredential": create_credential,
    "revokeCredential": revoke_credential,
    "credentialAudit": credential_audit,
    "showCeiling": show_ceiling,
    "setCeiling": set_ceiling,
    "reportLeaks": report_leaks,
}


def _endpoint(handler: Handler, status: int, service: AdminService) -> Any:
    async def endpoint(request: Request) -> Response:
        return JSON(await handler(request, service), status_code=status)

    return endpoint


async def _on_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, AdminApiError)
    body = {"error": {"code": error.code, "message": error.message, "retriable": error.retriable}}
    return JSON(body, status_code=error.status_code)


def create_app(service: AdminService) -> Starlette:
    routes = [
        Route(op.path, _endpoint(HANDLERS[op.operation_id], op.status, service),
              methods=[op.method], name=op.operation_id)
        for op in openapi.OPERATIONS
    ]  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(service)
            yield

    return Starlette(
        routes=routes, exception_handlers={AdminApiError: _on_error}, lifespan=lifespan
    )


__all__ = ["HANDLERS", "create_app"]
