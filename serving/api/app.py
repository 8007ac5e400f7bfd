"""The FastAPI app, built by :func:`create_app` from injected collaborators (no globals)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from serving.api import inspector, routes
from serving.api.metrics import ApiMetrics
from serving.api.models import Readiness
from serving.api.problems import install_problem_handlers
from serving.api.runtime import ApiDeps, Runtime

DESCRIPTION = """\
Ask Resonate what it recommends for a listener, what sounds like a track or a file, and
seed a new listener. Lists come from the `recommendations` topic (the latest per listener);
seeds go out as `like` interactions. Errors are `application/problem+json`. Writes need the
`X-API-Key` header when the `api_key` setting is set. The inspector page is at `/inspector`.
"""


def create_app(*, deps: ApiDeps, metrics: ApiMetrics | None = None) -> FastAPI:
    """The API with its routes, problem handlers, request metrics and inspector page."""
    metrics = metrics or ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime(deps=deps, metrics=metrics)
        app.state.runtime = rt
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(
        title="Resonate query API", version="1", description=DESCRIPTION, lifespan=lifespan
    )
    install_problem_handlers(app)
    metrics.install(app)
    app.include_router(routes.router)
    app.include_router(inspector.router)
    app.mount("/static", StaticFiles(directory=inspector.STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/inspector")

    @app.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"], responses={503: {"model": Readiness}})
    def ready(rt: routes.Rt) -> JSONResponse:
        """Kafka view caught up, Milvus connected, Triton ready (503 until then)."""
        comps = rt.components()
        body = Readiness(ready=all(comps.values()), components=comps)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    return app
