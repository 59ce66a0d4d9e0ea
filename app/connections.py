"""Counting each SCIM request's outcome per credential, cheaply, for the `/admin` connection
pages (`app.store.outcomes`).

On the request path this is a dictionary update under a lock: the count of (tenant,
credential, hour, status) goes up, and a failed request (400 and up) keeps its SCIM
`scimType` and `detail` (read from the error body it already has). A process writes what it
counted at most every `FLUSH_SECONDS` (its first request at once), in one transaction: one
upsert of the counts, one insert of the failures. So the pages are up to that long behind for
requests other processes served, and a process that dies loses at most that much; the page
itself writes its own process's counts first. OAuth token requests count for the client they
name (`attribute`), a refused secret too, and a known token's requests after it expired or was
revoked count for it (`app.auth.TokenRefused`); an unknown bearer token names no credential and
is not counted here (the request log and metrics have it).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, g, request

from app.store import outcomes
from app.store.models import utcnow

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0
PRUNE_SECONDS = 3600.0  # old hourly counts are deleted at most this often per process
MAX_FAILURES = 200  # failures held between writes; past it the oldest are dropped (counted still)
MAX_PATH = 300
MAX_DETAIL = 1000
_EXTENSION = "lms_scim_outcomes"


class Recorder:
    """One process's counts and failures not yet written."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._tallies: dict[Any, list[Any]] = {}
        self._failures: list[outcomes.Failure] = []
        self._flushed: float | None = None
        self._pruned: float | None = None

    def note(
        self,
        tenant_id: int,
        credential: str,
        status: int,
        failure: tuple[str, str, str | None, str | None, str | None] | None = None,
    ) -> None:
        """Count one request; `failure` (method, path, scimType, detail, request id) for one
        that failed. Writes the batch when it is due."""
        now = utcnow()
        key = (tenant_id, credential, outcomes.hour_of(now), status)
        tick = time.monotonic()
        with self._lock:
            counted = self._tallies.setdefault(key, [0, now])
            counted[0] += 1
            counted[1] = now
            if failure is not None:
                method, path, scim_type, detail, request_id = failure
                if len(self._failures) >= MAX_FAILURES:
                    del self._failures[0]
                self._failures.append(
                    outcomes.Failure(
                        tenant_id,
                        credential,
                        now,
                        method,
                        path,
                        status,
                        scim_type,
                        detail,
                        request_id,
                    )
                )
            if self._flushed is not None and tick - self._flushed < self.flush_seconds:
                return
            self._flushed = tick
        self.flush()

    def flush(self) -> None:
        """Write what this process counted so far (never fails the caller)."""
        tick = time.monotonic()
        with self._lock:
            tallies, self._tallies = self._tallies, {}
            failures, self._failures = self._failures, []
            prune = self._pruned is None or tick - self._pruned >= PRUNE_SECONDS
            if prune:
                self._pruned = tick
        if not tallies and not failures:
            return
        try:
            outcomes.write({k: (v[0], v[1]) for k, v in tallies.items()}, failures)
            if prune:
                outcomes.prune()
        except Exception:  # never fail a request over bookkeeping (an outage, a full pool)
            log.warning("could not record request outcomes", exc_info=True)


def attribute(tenant_id: int, credential: str) -> None:
    """Count this request for `credential` though no SCIM principal was set (a token request
    of an OAuth client, `app.oauth.endpoint`)."""
    g.outcome_credential = (tenant_id, credential)


def _error_of(response: Response) -> tuple[str | None, str | None]:
    """The error's type and detail from the body being sent: SCIM's scimType and detail
    (RFC 7644 §3.12), or OAuth's error and error_description (RFC 6749 §5.2)."""
    if response.is_streamed or response.mimetype not in (
        "application/scim+json",
        "application/json",
    ):
        return None, None
    body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return None, None
    scim_type = body.get("scimType", body.get("error"))
    detail = body.get("detail", body.get("error_description"))
    return (
        scim_type if isinstance(scim_type, str) else None,
        detail[:MAX_DETAIL] if isinstance(detail, str) else None,
    )


def _note(response: Response) -> Response:
    principal = g.get("principal")
    if principal is not None:
        tenant_id, credential = principal.tenant_id, principal.token_name
    elif "outcome_credential" in g:
        tenant_id, credential = g.outcome_credential
    else:
        return response
    status = response.status_code
    failure = None
    if status >= 400:
        scim_type, detail = _error_of(response)
        failure = (
            request.method[:8],
            request.path[:MAX_PATH],
            scim_type,
            detail,
            g.get("request_id"),
        )
    of(current_app).note(tenant_id, credential, status, failure)
    return response


def of(app: Flask) -> Recorder:
    return app.extensions[_EXTENSION]


def register(app: Flask) -> None:
    """Count every request a credential was accepted for (SCIM, under either base URL)."""
    app.extensions[_EXTENSION] = Recorder()
    app.after_request(_note)
