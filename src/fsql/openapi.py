"""The OpenAPI 3.1 description of ``fsql serve``'s HTTP API, served as ``GET /openapi.json``.

Written by hand as one data structure: the schemas are JSON Schema 2020-12 (what OpenAPI 3.1
uses), and the tests validate the server's real responses against them.
"""

from __future__ import annotations

from typing import Any

from fsql.serve import CORRUPT, DEFINITION_CHANGED, EXPIRED, MISSING, PRESENT


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_COLUMN_VALUES = {"type": "array", "description": "One entry per requested entity."}

SCHEMAS: dict[str, Any] = {
    "GetOnlineFeaturesRequest": {
        "type": "object",
        "properties": {
            "features": {"type": "array", "items": {"type": "string"},
                         "description": "Feature names: 'view' or 'view.feature'."},
            "feature_service": {"type": "string",
                                "description": "A training set: its features, as trained."},
            "entities": {"type": "object",
                         "additionalProperties": {"type": "array"},
                         "description": "Join key -> one value per entity row."},
            "request_data": {"type": "object",
                             "additionalProperties": {"type": "array"},
                             "description": "Request field of on-demand features -> one "
                                            "value per entity row."},
        },
        "required": ["entities"],
        "oneOf": [{"required": ["features"]}, {"required": ["feature_service"]}],
        "additionalProperties": False,
    },
    "GetOnlineFeaturesResponse": {
        "type": "object",
        "properties": {
            "metadata": {
                "type": "object",
                "properties": {
                    "feature_names": {"type": "array", "items": {"type": "string"},
                                      "description": "The entity columns, then the features; "
                                                     "results[i] is column i."},
                    "status": {"const": DEFINITION_CHANGED},
                    "definition_changed": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["feature_names"],
                "additionalProperties": False,
            },
            "results": {"type": "array", "items": _ref("FeatureColumn")},
        },
        "required": ["metadata", "results"],
        "additionalProperties": False,
    },
    "FeatureColumn": {
        "type": "object",
        "properties": {
            "values": {**_COLUMN_VALUES,
                       "description": "Values (null unless PRESENT; NaN and infinities as "
                                      "the strings 'NaN', 'Infinity', '-Infinity')."},
            "statuses": {**_COLUMN_VALUES,
                         "items": {"enum": [PRESENT, MISSING, EXPIRED, CORRUPT]}},
            "event_timestamps": {**_COLUMN_VALUES,
                                 "items": {"type": ["string", "null"]},
                                 "description": "ISO 8601 event time of each value."},
        },
        "required": ["values", "statuses", "event_timestamps"],
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "additionalProperties": False,
    },
    "DefinitionChangedError": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "status": {"const": DEFINITION_CHANGED},
            "definition_changed": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["error", "status", "definition_changed"],
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"enum": ["ok", "degraded", "unavailable"]},
            "views": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "View -> why it cannot be served."},
            "error": {"type": "string"},
        },
        "required": ["status"],
        "additionalProperties": False,
    },
}

_NOT_ALLOWED = {"404": _error("No such path."), "405": _error("Method not allowed.")}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "fsql serve", "version": "1",
             "description": "Online feature values from fsql's online store."},
    "paths": {
        "/get-online-features": {"post": {
            "summary": "Feature values of entities (Feast's response shape).",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("GetOnlineFeaturesRequest")}}},
            "responses": {
                "200": _json(_ref("GetOnlineFeaturesResponse"), "The values."),
                "400": _error("A bad request: not JSON, unknown names or fields, too many "
                              "entities or features."),
                "408": _error("The body did not arrive within --read-timeout."),
                "409": _json(_ref("DefinitionChangedError"),
                             "With --strict: the training set's online views changed since "
                             "it was built."),
                "413": _error("The body is larger than --max-body-bytes."),
                "422": _error("An on-demand feature failed on the request data."),
                "500": _error("A bug in fsql (logged)."),
                "503": _error("The online store failed or holds no data for a view."),
                **_NOT_ALLOWED,
            },
        }},
        "/health": {"get": {
            "summary": "Whether this server can serve (answered within about a second).",
            "responses": {"200": _json(_ref("Health"), "ok, or degraded (the views it "
                                                       "cannot serve)."),
                          "503": _json(_ref("Health"), "unavailable."), **_NOT_ALLOWED},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text exposition format).",
            "responses": {"200": {"description": "The metrics of all workers.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_NOT_ALLOWED},
        }},
        "/openapi.json": {"get": {
            "summary": "This description.",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1."), **_NOT_ALLOWED},
        }},
    },
    "components": {"schemas": SCHEMAS},
}
