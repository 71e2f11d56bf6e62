"""Exports the JSON Schema of every topic's record contract to `schemas/jsonschema/`.

Run `python -m schemas.export` after changing a model; a test fails while file and model differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.events.admin import AdminRegistryEvent
from schemas.events.alert import AlertEvent
from schemas.events.audit import AuditEvent
from schemas.events.dead_letter import AlertDeadLetter, RequestDeadLetter
from schemas.events.delivery import DeliveryRecord
from schemas.events.keys import RegistryEvent
from schemas.events.request import RequestEvent
from schemas.events.spend import SpendEvent

JSONSCHEMA_DIR = Path(__file__).with_name("jsonschema")

# A model, or a type pydantic validates (a pydantic dataclass, a union of models).
EXPORTED: dict[str, Any] = {
    "llm.request.v1": RequestEvent,
    "alert.v1": AlertEvent,
    "spend.v1": SpendEvent,
    "key.registry.v1": RegistryEvent,
    "audit.v1": AuditEvent,
    "admin.registry.v1": AdminRegistryEvent,
    "llm.request.dead_letter.v1": RequestDeadLetter,
    "alert.dead_letter.v1": AlertDeadLetter,
    "alert.delivered.v1": DeliveryRecord,
}


def render(name: str, model: Any) -> str:
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema = model.model_json_schema(by_alias=True, mode="validation")
    else:
        schema = TypeAdapter(model).json_schema(by_alias=True, mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://keywarden.dev/schemas/{name}.json",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    JSONSCHEMA_DIR.mkdir(exist_ok=True)
    for name, model in EXPORTED.items():
        path = JSONSCHEMA_DIR / f"{name}.json"
        path.write_text(render(name, model), encoding="utf-8")
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
