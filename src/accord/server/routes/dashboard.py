"""The web dashboard: ``GET /`` serves a static page; ``/dashboard/*`` its script and style.

The assets hold no data and need no token; the page asks the API for everything with the
token it reads from the URL fragment (``/#token=…``, never sent to the server in a request
line or logged) or from a prompt, and keeps it in ``sessionStorage``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = resources.files("accord.server").joinpath("dashboard")

router = APIRouter(include_in_schema=False)
# Only our own script, style and API; never framed; the URL (fragment aside) not leaked.
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    return HTMLResponse(ASSETS.joinpath("index.html").read_text(), headers=HEADERS)


def static_files() -> StaticFiles:
    """The dashboard's assets, to mount at ``/dashboard``."""
    return StaticFiles(directory=str(ASSETS))
