"""The FastAPI app factory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kairo_backend import __version__
from kairo_backend.core import security
from kairo_backend.core.config import Settings
from kairo_backend.deps import Context
from kairo_backend.errors import install_handlers
from kairo_backend.fleet.sweep import FleetSweep
from kairo_backend.gate import RequestGate
from kairo_backend.jobs.dispatcher import Dispatcher
from kairo_backend.routes import datasets, deployments, exports, health, models, robots, runs
from kairo_backend.store import Store
from kairo_backend.store.replicas import ReplicaHeartbeat
from kairo_backend.ui import install as install_dashboard


def create_app(settings: Settings) -> FastAPI:
    settings.ensure_dirs()
    if settings.database_url:  # worker processes open the same database
        os.environ["KAIRO_DATABASE_URL"] = settings.database_url
    store = Store(settings.database)  # upgraded to the newest schema first
    ctx = Context(settings, store, Dispatcher(settings, store), _link_secret(settings, store))
    fleet_sweep = FleetSweep(store)
    heartbeat = ReplicaHeartbeat(store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        heartbeat.start()
        ctx.dispatcher.start()
        fleet_sweep.start()
        yield
        fleet_sweep.stop()
        ctx.dispatcher.stop()
        heartbeat.stop()

    app = FastAPI(title="Kairo Models API (embedded backend)", version=__version__,
                  description="Trigger training runs, manage model versions, and export "
                              "trained models.", lifespan=lifespan)
    app.state.ctx = ctx
    install_handlers(app)
    app.add_middleware(RequestGate, ctx=ctx)
    for r in (health.router, models.router, runs.router, exports.router, datasets.router,
              robots.router, deployments.router):
        app.include_router(r)
    install_dashboard(app)  # /ui, outside the OpenAPI schema
    return app


def _link_secret(settings: Settings, store: Store) -> bytes:
    """The key of signed download links: one for every replica, never one per process."""
    if settings.link_secret:
        return settings.link_secret.encode()
    if store.postgres:
        return store.shared_secret("link_secret")
    return security.load_or_create_secret(settings.secret_path)
