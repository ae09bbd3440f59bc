"""FastAPI apps whose API docs work on an offline hospital network.

FastAPI's ``/docs`` (Swagger UI) and ``/redoc`` pages load their scripts, styles and fonts from a
CDN, so they are blank where the Internet is out of reach. ``offline_docs_app`` builds the app with
those assets served from the installed ``fastapi-offline`` package instead, and turns off Swagger
UI's call to the public validator. Every fedledger HTTP API (audit, aggregator) is built with it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

STATIC_URL = "/static-offline-docs"


def offline_docs_app(**fastapi_options: Any) -> FastAPI:
    """``FastAPI(**fastapi_options)`` with ``/docs`` and ``/redoc`` served from local assets."""
    from fastapi_offline import FastAPIOffline

    parameters = {"validatorUrl": None, **(fastapi_options.pop("swagger_ui_parameters", None) or {})}
    return FastAPIOffline(static_url=STATIC_URL, swagger_ui_parameters=parameters, **fastapi_options)
