"""Errors as RFC 9457 problem details: one exception type, handlers for FastAPI's own."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api.models import Problem
from serving.redact import redact_text

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Missing or wrong API key",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    503: "Not ready",
}


class ProblemError(Exception):
    """Raise in a route to answer with a problem+json body."""

    def __init__(self, status: int, detail: str, *, title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")


def problem_response(request: Request, status: int, detail: str, title: str = "") -> JSONResponse:
    """A problem+json response for ``request``."""
    body = Problem(
        type="about:blank",
        title=title or _TITLES.get(status, "Error"),
        status=status,
        detail=redact_text(detail),  # an error quoting a signed URL shows no token
        instance=request.url.path,
    )
    return JSONResponse(body.model_dump(), status_code=status, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the app answers, ours or FastAPI's, becomes problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(request, exc.status, exc.detail, exc.title)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(request, exc.status_code, str(exc.detail))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return problem_response(request, 422, errors)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
