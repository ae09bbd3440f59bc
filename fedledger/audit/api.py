"""The HTTP face of the auditor: a read-only FastAPI app over an ``AuditService``.

Routes are thin: parameters are validated here (FastAPI answers 422 for malformed ones) and in
the service, which does all reading and checking. Every error, including unknown routes and
malformed parameters, is a JSON ``ErrorResponse`` with a message that names what was wrong; an
unreachable chain is a 503. Handlers are plain functions, so FastAPI runs them in its thread pool
and a slow verdict does not block other requests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fedledger import __version__
from fedledger.audit.errors import AuditError, NotFound
from fedledger.audit.local_privacy import LocalPrivacyModel
from fedledger.audit.models import (
    AccessRecordModel,
    AuditSummary,
    ErrorResponse,
    GlobalModelResponse,
    Health,
    InclusionProof,
    InstitutionHistory,
    InstitutionModel,
    Lineage,
    Page,
    PrivacyAccountModel,
    RoundDetail,
    RoundListItem,
    UpdateListItem,
    UpdateWithVerdict,
)
from fedledger.audit.params import (
    ADDRESS_PATTERN,
    CID_PATTERN,
    DEFAULT_LIMIT,
    MAX_CID_LENGTH,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_ROUND,
)
from fedledger.audit.service import AuditService
from fedledger.httpdocs import offline_docs_app

log = logging.getLogger(__name__)

RoundParam = Annotated[int, Path(ge=0, le=MAX_ROUND, description="Round number (0 is the first round).")]
InstitutionParam = Annotated[
    str, Path(pattern=ADDRESS_PATTERN, description="The institution's Ethereum address (0x + 40 hex).")
]
CidParam = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_CID_LENGTH,
        pattern=CID_PATTERN,
        description="A CID: CIDv0 ('Qm…') or CIDv1 in base32 ('b…') or base58btc ('z…').",
    ),
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Entries to skip.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Entries per page (1..{MAX_LIMIT}).")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Not on the ledger."},
    422: {"model": ErrorResponse, "description": "A malformed parameter."},
    503: {"model": ErrorResponse, "description": "The chain cannot be reached."},
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "Not posted yet, or not included."}
}

DESCRIPTION = """\
Read-only audit of a fedledger consortium ledger: the rounds, each institution's SM9-signed update
entries, each round's k-of-n threshold-signed global model, membership and access records.

Every verdict is recomputed from the chain, the content store and the signatures: content present
and its SM3 digest as on the ledger, SM9 signatures valid (the EVM cannot check them), at least k
distinct member approvals, and the round record's Merkle root recomputed from the included entries.
Each model file is streamed and checked once per CID and the verdict kept (bounded cache).
The audit fails closed: no ledger at the address, another chain or deployment, or a rollback is an
error (503), never "verified".

Lists are paginated with `offset` and `limit`. Errors are JSON: `{"error", "message"}`.
"""


def _error(
    status: int,
    code: str,
    message: str,
    detail: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=code, message=message, detail=detail)
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True), headers=headers)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("path", "query"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "invalid parameter(s): " + "; ".join(parts)


def create_app(service: AuditService, aggregator_url: str | None = None) -> FastAPI:
    """The audit REST API over ``service``; with ``aggregator_url``, also the sites' per-round metrics."""
    app = offline_docs_app(
        title="fedledger audit API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "rounds", "description": "Rounds, their update entries and global models, with verdicts."},
            {"name": "institutions", "description": "Members and what each one did."},
            {"name": "models", "description": "Model lineage back to the initial model."},
            {"name": "access", "description": "Who retrieved which model, and why."},
            {"name": "summary", "description": "The whole ledger checked at once."},
        ],
    )
    app.state.audit = service

    @app.exception_handler(AuditError)
    def _audit_error(_request: Request, exc: AuditError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in dict(e).items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return _error(422, "invalid_parameter", _validation_message(errors), errors)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, "not_found", f"no such endpoint: {request.url.path} (see /docs)")
        # keep the exception's headers: a 405 must say which methods are allowed (``Allow``)
        return _error(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("audit API: unexpected error on %s", request.url.path)
        return _error(500, "internal_error", f"unexpected {type(exc).__name__} while answering {request.url.path}")

    @app.get("/health", response_model=Health, tags=["summary"], responses=_ERRORS)
    def health() -> Health:
        """The chain is reachable; the block the index has reached."""
        return service.health()

    @app.get("/metrics", tags=["summary"], responses=_ERRORS)
    def metrics() -> JSONResponse:
        """Per round, each site's metric on its own validation split and the sample-weighted federated
        value: the sites' signed reports as the aggregator holds them, each re-checked against the
        ledger's institutions (a report the audit cannot verify is counted, never shown)."""
        from fedledger.consortium.metrics import MetricRejected, Signers, fetch_verified, per_round

        if aggregator_url is None:
            raise NotFound("no metrics here: serve the audit API with --aggregator-url to show the sites' metrics")
        try:
            reports, bad = fetch_verified(aggregator_url, Signers.of_ledger(service.ledger))
        except MetricRejected as exc:
            return _error(503, "aggregator_unavailable", str(exc))
        return JSONResponse({"rounds": per_round(reports), "unverified_reports": bad})

    @app.get("/summary", response_model=AuditSummary, tags=["summary"], responses=_ERRORS)
    def summary() -> AuditSummary:
        """Check every entry on the ledger now: counts, and each failed check with its reason."""
        return service.summary()

    @app.get("/privacy", response_model=PrivacyAccountModel, tags=["summary"], responses=_ERRORS)
    def privacy() -> PrivacyAccountModel:
        """Epsilon per posted round and cumulatively, recomputed from the rounds' recorded DP
        parameters alone, next to the consortium's privacy budget on the ledger."""
        return service.privacy()

    @app.get("/privacy/local", response_model=LocalPrivacyModel, tags=["summary"], responses=_ERRORS)
    def local_privacy() -> LocalPrivacyModel:
        """Each member's record-level epsilon from local DP-SGD, per round and cumulatively, recomputed
        from the parameters it declared on the ledger ("no local DP" for members without)."""
        return service.local_privacy()

    @app.get("/rounds", response_model=Page[RoundListItem], tags=["rounds"], responses=_ERRORS)
    def rounds(offset: Offset = 0, limit: Limit = DEFAULT_LIMIT) -> Page[RoundListItem]:
        """Rounds in order, with their base and (once posted) global model."""
        return service.rounds(offset, limit)

    @app.get("/rounds/{round}", response_model=RoundDetail, tags=["rounds"], responses=_ERRORS)
    def round_detail(round: RoundParam) -> RoundDetail:
        """One round: how it opened, its base and global model, approvers and a verdict summary."""
        return service.round(round)

    @app.get("/rounds/{round}/updates", response_model=Page[UpdateListItem], tags=["rounds"], responses=_ERRORS)
    def round_updates(round: RoundParam, offset: Offset = 0, limit: Limit = DEFAULT_LIMIT) -> Page[UpdateListItem]:
        """The round's update entries in chain order, each marked included or not."""
        return service.updates(round, offset, limit)

    @app.get(
        "/rounds/{round}/updates/{institution}",
        response_model=UpdateWithVerdict,
        tags=["rounds"],
        responses=_ERRORS,
    )
    def round_update(round: RoundParam, institution: InstitutionParam) -> UpdateWithVerdict:
        """An institution's entry with its verdict: content and digest, SM9 signature, inclusion."""
        return service.update(round, institution)

    @app.get(
        "/rounds/{round}/updates/{institution}/proof",
        response_model=InclusionProof,
        tags=["rounds"],
        responses={**_ERRORS, **_CONFLICT},
    )
    def round_update_proof(round: RoundParam, institution: InstitutionParam) -> InclusionProof:
        """Merkle inclusion proof of the entry's leaf in the posted updates root."""
        return service.update_proof(round, institution)

    @app.get("/rounds/{round}/global", response_model=GlobalModelResponse, tags=["rounds"], responses=_ERRORS)
    def round_global(round: RoundParam) -> GlobalModelResponse:
        """The posted global model with its round record and verdict."""
        return service.global_model(round)

    @app.get("/institutions", response_model=Page[InstitutionModel], tags=["institutions"], responses=_ERRORS)
    def institutions(offset: Offset = 0, limit: Limit = DEFAULT_LIMIT) -> Page[InstitutionModel]:
        """Every institution ever registered, in registration order."""
        return service.institutions(offset, limit)

    @app.get(
        "/institutions/{address}/history",
        response_model=InstitutionHistory,
        tags=["institutions"],
        responses=_ERRORS,
    )
    def institution_history(
        address: InstitutionParam, offset: Offset = 0, limit: Limit = DEFAULT_LIMIT
    ) -> InstitutionHistory:
        """Membership changes, submissions, approvals and accesses (each list paginated alike)."""
        return service.institution_history(address, offset, limit)

    @app.get("/models/{cid}/lineage", response_model=Lineage, tags=["models"], responses=_ERRORS)
    def lineage(cid: CidParam) -> Lineage:
        """A global model's (or update's) ancestry: each round's global from its base, to round 0."""
        return service.lineage(cid)

    @app.get("/access", response_model=Page[AccessRecordModel], tags=["access"], responses=_ERRORS)
    def access(
        accessor: Annotated[
            str | None, Query(pattern=ADDRESS_PATTERN, description="Only this accessor's records.")
        ] = None,
        cid: Annotated[
            str | None,
            Query(
                min_length=1, max_length=MAX_CID_LENGTH, pattern=CID_PATTERN, description="Only records of this CID."
            ),
        ] = None,
        offset: Offset = 0,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Page[AccessRecordModel]:
        """Access records (who retrieved which model and why), in chain order."""
        return service.access_records(accessor, cid, offset, limit)

    return app
