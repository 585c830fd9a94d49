"""accord's error tree mapped onto HTTP statuses, in one place.

==========================  ======  =====================================================
error                       status  meaning
==========================  ======  =====================================================
``BadRequest``              400     the request cannot be read (encoding, a bad header)
``ManifestError``           422     the manifest is invalid; ``problems`` name line+field
``InvalidFlowError``        422     the flow is invalid; ``problems`` name line+task
``StaleStateError``         409     the node moved since the caller looked (``expect``)
``TransitionError``         422     the lifecycle table or a guard refuses
other ``InputError``        422     bad input; nothing was changed
``ConflictError``           409     a compare-and-set lost, or the thing already exists
``NotFoundError``           404     no such node, manifest, version or token
``PreconditionFailed``      412     ``If-Match`` names a revision that is no longer current
``PreconditionRequired``    428     an update of an existing record without ``If-Match``
``StoreUnavailableError``   503     the store cannot be reached now (retry later)
request validation          422     pydantic refused a parameter or body (``problems``)
==========================  ======  =====================================================

Bad input never yields a 500: every ``InputError`` maps to a 4xx, and request bodies are
validated by pydantic (422) before a handler runs. Every error body is a
:class:`Problem`: ``{"detail": message, "error": class name}``, plus ``"problems"`` (one line
each) for an invalid manifest, lifecycle or flow and for request validation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from accord import errors
from accord.engine.flows.model import InvalidFlowError


class BadRequest(errors.InputError):
    """The request itself is malformed (not its content)."""


class PreconditionFailed(errors.ConflictError):
    """``If-Match`` did not match the current revision."""


class PreconditionRequired(errors.ConflictError):
    """The record exists; an update must say which revision it replaces."""


_STATUS: tuple[tuple[type[errors.AccordError], int], ...] = (
    # Most specific first: the first match wins.
    (BadRequest, status.HTTP_400_BAD_REQUEST),
    (errors.StaleStateError, status.HTTP_409_CONFLICT),
    (errors.InputError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (PreconditionFailed, status.HTTP_412_PRECONDITION_FAILED),
    (PreconditionRequired, status.HTTP_428_PRECONDITION_REQUIRED),
    (errors.ConflictError, status.HTTP_409_CONFLICT),
    (errors.NotFoundError, status.HTTP_404_NOT_FOUND),
    (errors.StoreUnavailableError, status.HTTP_503_SERVICE_UNAVAILABLE),
)


def status_of(exc: errors.AccordError) -> int:
    """The HTTP status for an accord error (500 only for accord's own failures)."""
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return status.HTTP_500_INTERNAL_SERVER_ERROR


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.AccordError)
    body: dict[str, object] = {"detail": str(exc), "error": type(exc).__name__}
    if isinstance(exc, errors.ManifestError | InvalidFlowError):
        body["problems"] = exc.problems
    headers = {"Retry-After": "1"} if isinstance(exc, errors.StoreUnavailableError) else None
    return JSONResponse(body, status_code=status_of(exc), headers=headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """Request validation failures, in the same shape as every other error."""
    assert isinstance(exc, RequestValidationError)
    found = [
        f"{'.'.join(str(part) for part in e.get('loc', ())) or 'request'}: {e.get('msg', '')}"
        for e in exc.errors()
    ]
    body = {
        "detail": f"invalid request ({len(found)} problem{'s' * (len(found) != 1)})",
        "error": "RequestValidationError",
        "problems": found,
    }
    return JSONResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install(app: FastAPI) -> None:
    """Register the mapping on ``app``."""
    app.add_exception_handler(errors.AccordError, _handle)
    app.add_exception_handler(RequestValidationError, _invalid)


class Problem(BaseModel):
    """The body of every error response."""

    detail: str
    error: str = Field(default="", description="The accord error class, if accord raised it.")
    problems: list[str] | None = Field(
        default=None,
        description="For an invalid manifest, lifecycle or flow: one line per problem.",
    )


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}


_WHY = {
    400: "The request cannot be read.",
    401: "No token, or an unknown one.",
    403: "The token's role does not allow this.",
    404: "No such thing.",
    409: "A conflict: the thing exists, or changed since the caller looked.",
    412: "If-Match names a revision that is no longer current.",
    413: "The body is too large.",
    422: "Invalid input; nothing was changed.",
    428: "The record exists: send If-Match.",
    501: "This control plane does not run flows (it was started without a flows directory).",
    503: "The store cannot be reached now; retry.",
}
