"""The API's OpenAPI 3.1 description, written as data and served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

from facerestore import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_IMAGE = {
    "description": "an image",
    "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
}
_BUSY = {
    "description": "every job slot and queue place is taken; retry after the Retry-After header's seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": _ref("Error")}},
}
_UPLOAD_ERRORS = {
    "400": _error("a wrong option or a malformed form: the message says what to fix"),
    "401": _error("missing or wrong API key (only when the server has keys)"),
    "413": _error("the upload is larger than the server's limit"),
    "415": _error("the body is not multipart/form-data"),
    "422": _error("the file is not a readable image: not an image, truncated, or too many pixels"),
    "429": _BUSY,
}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_JOB_ERRORS = {"404": _error("no such job (or deleted after the retention time)")}


def _form(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"multipart/form-data": {"schema": _ref(schema)}}}


_DETECT_FIELDS: dict[str, Any] = {
    "image": {
        "type": "string",
        "format": "binary",
        "description": "the picture; its content decides the format",
    },
    "detector": {"type": "string", "enum": ["retinaface", "yunet"], "default": "retinaface"},
    "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "min_face_size": {"type": "number", "minimum": 0, "default": 10, "description": "pixels"},
    "only_center_face": {"type": "boolean", "default": False},
    "only_largest_face": {"type": "boolean", "default": False},
}
_RESTORE_FIELDS: dict[str, Any] = {
    **_DETECT_FIELDS,
    "scale": {"type": "number", "minimum": 1, "maximum": 8, "default": 2},
    "face_model": {
        "type": "string",
        "default": "auto",
        "description": "auto (best installed face prior, else realesrgan-x4plus) or a name from /v1/models; "
        "codeformer and gpen-* are licensed for non-commercial use only",
    },
    "fidelity": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5, "description": "CodeFormer"},
    "blend": {"type": "number", "minimum": 0, "maximum": 1, "default": 1},
    "color_fix": {"type": "boolean", "default": True},
    "bg_upsampler": {
        "type": "string",
        "enum": ["auto", "realesrgan-x4plus", "realesr-compact-x4", "realesr-compact-x2", "none"],
        "default": "auto",
    },
    "bg_precision": {"type": "string", "enum": ["auto", "fp32", "int8"], "default": "auto"},
    "aligned": {"type": "boolean", "default": False, "description": "the picture is one aligned face crop"},
    "format": {
        "type": "string",
        "enum": ["auto", "png", "jpeg", "jpg", "webp", "tiff"],
        "default": "auto",
        "description": "auto keeps JPEG, PNG and WebP; other inputs come back as PNG",
    },
    "quality": {"type": "integer", "minimum": 1, "maximum": 100, "default": 95},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "one line that says what to fix"}},
    },
    "DetectForm": {"type": "object", "required": ["image"], "properties": _DETECT_FIELDS},
    "RestoreForm": {"type": "object", "required": ["image"], "properties": _RESTORE_FIELDS},
    "Face": {
        "type": "object",
        "properties": {
            "box": {"type": "array", "items": {"type": "number"}, "description": "x1, y1, x2, y2 in pixels"},
            "score": {"type": "number"},
            "landmarks": {
                "type": "object",
                "description": "left_eye, right_eye, nose, mouth_left, mouth_right: [x, y] each",
                "additionalProperties": {"type": "array", "items": {"type": "number"}},
            },
            "model": {"type": "string"},
            "crop_size": {"type": "integer"},
            "upscaled_first": {"type": "boolean"},
        },
    },
    "Detection": {
        "type": "object",
        "properties": {
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "faces": {"type": "array", "items": _ref("Face")},
        },
    },
    "Result": {
        "type": "object",
        "properties": {
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "format": {"type": "string"},
            "scale": {"type": "number"},
            "face_model": {"type": "string"},
            "bg_upsampler": {"type": "string"},
            "faces": {"type": "array", "items": _ref("Face")},
            "timings": {"type": "object", "additionalProperties": {"type": "number"}},
            "input": {"type": "object", "description": "width, height and format of the upload"},
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "status", "progress", "links"],
        "properties": {
            "id": {"type": "string", "description": "random; the only handle on the job"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "progress": {
                "type": "object",
                "properties": {
                    "stage": {
                        "type": "string",
                        "enum": ["queued", "detect", "upscale", "faces", "done", "encode"],
                    },
                    "done": {"type": "integer"},
                    "total": {"type": "integer"},
                    "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
            "queue_position": {"type": "integer", "description": "queued jobs ahead of this one"},
            "cancel_requested": {"type": "boolean"},
            "created": {"type": "string", "format": "date-time"},
            "started": {"type": ["string", "null"], "format": "date-time"},
            "finished": {"type": ["string", "null"], "format": "date-time"},
            "expires": {"type": "string", "format": "date-time", "description": "when it will be deleted"},
            "error": {"type": ["string", "null"]},
            "result": _ref("Result"),
            "links": {
                "type": "object",
                "description": "self, cancel; when succeeded also result, input, faces",
            },
        },
    },
    "Models": {
        "type": "object",
        "properties": {
            "models": {"type": "array", "items": {"type": "object"}},
            "choices": {
                "type": "object",
                "description": "valid values of face_model, bg_upsampler, detector",
            },
            "auto_face_model": {"type": "string", "description": "what face_model=auto uses on this server"},
            "defaults": {"type": "object"},
            "limits": {"type": "object"},
        },
    },
}

_PATHS: dict[str, Any] = {
    "/v1/health": {
        "get": {
            "summary": "Liveness: the process answers",
            "security": [],
            "responses": {"200": {"description": "alive"}},
        }
    },
    "/v1/ready": {
        "get": {
            "summary": "Readiness: default models loaded and a queue place free",
            "security": [],
            "responses": {
                "200": {"description": "ready"},
                "503": {"description": "loading, failed, or full"},
            },
        }
    },
    "/v1/models": {
        "get": {
            "summary": "Models, which are installed, licences, option choices",
            "responses": {"200": _json("models", "Models")},
        }
    },
    "/v1/detect": {
        "post": {
            "summary": "Find faces: boxes, scores, five landmarks",
            "requestBody": _form("DetectForm"),
            "responses": {"200": _json("the faces found", "Detection"), **_UPLOAD_ERRORS},
        }
    },
    "/v1/restore": {
        "post": {
            "summary": "Restore a small picture and answer with the result image",
            "description": "Waits for the result. Pictures above the server's sync limit need a job (413). "
            "Headers: X-Job-Id (its metadata stays at /v1/jobs/{id} until retention ends), X-Face-Count.",
            "requestBody": _form("RestoreForm"),
            "responses": {
                "200": _IMAGE,
                **_UPLOAD_ERRORS,
                "500": _error("the restore failed on the server (for example a model that does not load)"),
            },
        }
    },
    "/v1/jobs": {
        "post": {
            "summary": "Queue a restore; poll its status, then fetch the result",
            "requestBody": _form("RestoreForm"),
            "responses": {"202": _json("queued; Location points to the job", "Job"), **_UPLOAD_ERRORS},
        }
    },
    "/v1/jobs/{job_id}": {
        "parameters": [_JOB_ID],
        "get": {
            "summary": "Status, progress, and when finished the result's metadata",
            "responses": {"200": _json("the job", "Job"), **_JOB_ERRORS},
        },
        "delete": {
            "summary": "Cancel if needed and delete the job and its images now",
            "responses": {"204": {"description": "deleted"}, **_JOB_ERRORS},
        },
    },
    "/v1/jobs/{job_id}/cancel": {
        "parameters": [_JOB_ID],
        "post": {
            "summary": "Cancel a queued or running job",
            "responses": {"200": _json("the job", "Job"), **_JOB_ERRORS},
        },
    },
    "/v1/jobs/{job_id}/result": {
        "parameters": [_JOB_ID, {"name": "download", "in": "query", "schema": {"type": "boolean"}}],
        "get": {
            "summary": "The restored image at full resolution",
            "responses": {"200": _IMAGE, "409": _error("not succeeded (yet)"), **_JOB_ERRORS},
        },
    },
    "/v1/jobs/{job_id}/input": {
        "parameters": [_JOB_ID],
        "get": {
            "summary": "The upload as decoded (upright), as JPEG or PNG",
            "responses": {"200": _IMAGE, "409": _error("not succeeded (yet)"), **_JOB_ERRORS},
        },
    },
    "/v1/jobs/{job_id}/faces/{index}/{side}": {
        "parameters": [
            _JOB_ID,
            {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
            {
                "name": "side",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": ["before", "after"]},
            },
        ],
        "get": {
            "summary": "A thumbnail of one aligned face before or after restoration",
            "responses": {"200": _IMAGE, **_JOB_ERRORS},
        },
    },
    "/v1/openapi.json": {
        "get": {
            "summary": "This description",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1"}},
        }
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "facerestore",
        "version": __version__,
        "description": 'Restore faces in photos on this server. Every error is JSON: {"error": "..."}.',
    },
    "servers": [{"url": "/"}],
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "only when keys are set"}
        },
    },
    "security": [{"bearer": []}, {}],
}
