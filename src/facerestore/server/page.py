"""The web page: one HTML file and its static assets; it reads its choices from /v1/models and the schema."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles


def web_directory() -> Path:
    return Path(str(resources.files("facerestore") / "web"))


router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> Response:
    return FileResponse(web_directory() / "index.html", media_type="text/html")


def static_files() -> StaticFiles:
    return StaticFiles(directory=web_directory())
