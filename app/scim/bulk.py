"""`POST /Bulk` (RFC 7644 §3.7): many POST, PUT, PATCH and DELETE operations on Users and
Groups in one request.

Every operation runs through `Endpoint.run` (`app.scim.endpoint`): the same plain functions the
single-resource routes call (`app.scim.users`, `app.scim.groups`), so validation, password
hashing (before any transaction), ETags, uniqueness and the audit trail (the token and request
id of the bulk request on every operation's record) are exactly theirs.

- **Per-operation transactions.** Each operation commits or fails on its own, as §3.7 asks
  ("MUST continue performing as many changes as possible and disregard partial failures");
  `failOnErrors` stops processing after that many errors but does not undo what succeeded.
- **bulkId references** (§3.7.2): `"value": "bulkId:qwerty"` anywhere in `data` (members,
  manager, PATCH values) and `/Users/bulkId:qwerty` in `path` name the resource that the POST
  with `bulkId` "qwerty" creates. Operations run in request order, except that one waits for
  the operations it references (a group created in operation 1 with a user created in
  operation 3 runs after it); results are reported in request order.
- **Circular references** (§3.7.1): a cycle of bulkId references cannot be ordered; this
  service does not break cycles with follow-up PATCHes (only Users can be members, so the only
  real cycle is between managers), and answers each operation in the cycle, and any waiting
  for one, with status 409, as §3.7.1 allows.
- **Limits** (§3.7.4): more than `maxOperations` operations or `maxPayloadSize` bytes is 413
  with the limit in `detail` (the RFC's example has no `scimType`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Response, request

from app import runtime
from app.config import Config
from app.errors import InvalidSyntax, InvalidValue, PayloadTooLarge, ScimError, scim_response
from app.errors import to_scim_error as scim_error
from app.marshal import fold_keys
from app.scim import bp, groups, users
from app.scim.endpoint import Endpoint
from app.scim.request_checks import read_json
from app.scim.responses import base_url
from scim_schemas import BULK_REQUEST, BULK_RESPONSE

BULK_ID_PREFIX = "bulkId:"


ENDPOINTS = {"users": users.USERS, "groups": groups.GROUPS}
METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Operation:
    """One entry of `Operations`, parsed; `error` is set when it cannot run at all."""

    index: int
    method: str | None = None
    bulk_id: str | None = None
    version: str | None = None
    endpoint: Endpoint | None = None
    resource_id: str | None = None
    data: Any = None
    refs: set[str] = field(default_factory=set)
    error: ScimError | None = None


def _bulk_ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(BULK_ID_PREFIX):
        return value[len(BULK_ID_PREFIX) :]
    return None


def _map_references(data: Any, replace: Callable[[str], str]) -> Any:
    """A copy of `data` in which each `"value": "bulkId:…"` (§3.7.2: members, manager, PATCH
    values) becomes `replace(bulkId)`."""
    if isinstance(data, dict):
        mapped = {}
        for key, value in data.items():
            ref = _bulk_ref(value) if isinstance(key, str) and key.casefold() == "value" else None
            mapped[key] = replace(ref) if ref is not None else _map_references(value, replace)
        return mapped
    if isinstance(data, list):
        return [_map_references(item, replace) for item in data]
    return data


def _references(data: Any) -> set[str]:
    """The bulkIds `data` refers to."""
    found: set[str] = set()

    def note(ref: str) -> str:
        found.add(ref)
        return ref

    _map_references(data, note)
    return found


def _parse_path(operation: Operation, path: Any) -> None:
    """`/Users` or `/Groups` for POST, `/Users/{id}` (or `/Users/bulkId:…`) otherwise."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidValue("path must be a resource path such as /Users or /Users/{id}.")
    parts = path.strip("/").split("/")
    endpoint = ENDPOINTS.get(parts[0].casefold())
    if endpoint is None or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        raise InvalidValue(f"{path!r} is not /Users, /Groups or one of their resources.")
    operation.endpoint = endpoint
    if operation.method == "POST":
        if len(parts) != 1:
            raise InvalidValue(f"POST needs a resource type path such as /Users, not {path!r}.")
        return
    if len(parts) != 2:
        raise InvalidValue(
            f"{operation.method} needs the path of one resource, e.g. /Users/{{id}}."
        )
    operation.resource_id = parts[1]
    ref = _bulk_ref(parts[1])
    if ref is not None:
        operation.refs.add(ref)


def _parse_operation(index: int, raw: Any) -> Operation:
    operation = Operation(index)
    try:
        if not isinstance(raw, dict):
            raise InvalidSyntax("Each operation must be a JSON object.")
        fields = fold_keys(raw)
        method = fields.get("method")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise InvalidValue("method must be one of POST, PUT, PATCH, DELETE.")
        operation.method = method.upper()
        bulk_id, version = fields.get("bulkid"), fields.get("version")
        if bulk_id is not None and (not isinstance(bulk_id, str) or not bulk_id):
            raise InvalidValue("bulkId must be a non-empty string.")
        operation.bulk_id = bulk_id
        if version is not None and not isinstance(version, str):
            raise InvalidValue("version must be a string (an ETag).")
        operation.version = version
        if operation.method == "POST" and bulk_id is None:
            raise InvalidValue("A POST operation needs a bulkId (RFC 7644 §3.7).")
        _parse_path(operation, fields.get("path"))
        operation.data = fields.get("data")
        if operation.method != "DELETE" and operation.data is None:
            raise InvalidSyntax(f"A {operation.method} operation needs data.")
        operation.refs |= _references(operation.data)
    except ScimError as error:
        operation.error = error
    return operation


@dataclass(frozen=True)
class BulkRequest:
    operations: list[Operation]
    fail_on_errors: int | None


def parse_bulk_request(body: Any, max_operations: int) -> BulkRequest:
    """The BulkRequest (RFC 7644 §3.7); errors of the request as a whole are raised, errors of
    one operation are kept on it and reported in its result."""
    if not isinstance(body, dict):
        raise InvalidSyntax("The BulkRequest body must be a JSON object.")
    fields = fold_keys(body)
    schemas = fields.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or BULK_REQUEST not in schemas):
        raise InvalidSyntax(f"schemas must contain {BULK_REQUEST}.")
    fail_on_errors = fields.get("failonerrors")
    if fail_on_errors is not None and (
        isinstance(fail_on_errors, bool)
        or not isinstance(fail_on_errors, int)
        or fail_on_errors < 1
    ):
        raise InvalidValue("failOnErrors must be a positive integer.")
    raw = fields.get("operations")
    if not isinstance(raw, list) or not raw:
        raise InvalidSyntax("Operations must be a non-empty list of operations.")
    if len(raw) > max_operations:
        raise PayloadTooLarge(
            f"The bulk request has {len(raw)} operations, more than maxOperations "
            f"({max_operations})."
        )
    operations = [_parse_operation(index, item) for index, item in enumerate(raw)]
    seen: set[str] = set()
    for operation in operations:
        if operation.bulk_id is not None:
            if operation.bulk_id in seen:
                raise InvalidValue(f"bulkId {operation.bulk_id!r} is used by two operations.")
            seen.add(operation.bulk_id)
    declared = {bulk_id for bulk_id, _ in _creators(operations)}
    for operation in operations:
        unknown = sorted(ref for ref in operation.refs if ref not in declared)
        if operation.error is None and unknown:
            operation.error = InvalidValue(
                f"No POST operation in this request has bulkId {', '.join(unknown)}."
            )
    return BulkRequest(operations, fail_on_errors)


def _creators(operations: list[Operation]) -> list[tuple[str, int]]:
    """(bulkId, index) of each POST that declares one: what a `bulkId:` reference can name."""
    return [(op.bulk_id, op.index) for op in operations if op.bulk_id and op.method == "POST"]


def processing_order(operations: list[Operation]) -> tuple[list[Operation], list[Operation]]:
    """The operations in the order they can run: request order, except that an operation
    comes after the POSTs whose bulkIds it references (RFC 7644 §3.7: "in any order, as long
    as the result is the same"). The second list holds those that can never run: they are on
    a circular chain of references, or wait for one (§3.7.1)."""
    creator = dict(_creators(operations))
    waits_for: dict[int, set[int]] = {}
    needed_by: dict[int, list[int]] = {op.index: [] for op in operations}
    for op in operations:
        deps = set() if op.error else {creator[ref] for ref in op.refs}
        waits_for[op.index] = deps
        for dep in deps:
            needed_by[dep].append(op.index)
    ready = [index for index, deps in waits_for.items() if not deps]
    heapq.heapify(ready)
    order: list[Operation] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(operations[index])
        for waiting in needed_by[index]:
            waits_for[waiting].discard(index)
            if not waits_for[waiting]:
                heapq.heappush(ready, waiting)
    stuck = [op for op in operations if waits_for[op.index]]
    return order, stuck


def _location(endpoint: Endpoint, resource_id: str) -> str:
    return f"{base_url()}{endpoint.rtype.endpoint}/{resource_id}"


def _result(operation: Operation) -> dict[str, Any]:
    result: dict[str, Any] = {"method": operation.method}
    if operation.bulk_id is not None:
        result["bulkId"] = operation.bulk_id
    return result


def _failure(operation: Operation, error: ScimError) -> dict[str, Any]:
    """§3.7.3: a failed operation's status and its SCIM error as `response`."""
    result = _result(operation)
    known = operation.resource_id and _bulk_ref(operation.resource_id) is None
    if operation.endpoint is not None and known:
        result["location"] = _location(operation.endpoint, operation.resource_id)
    result["status"] = str(error.status)
    result["response"] = error.body()
    return result


def _perform(operation: Operation, ids: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """Run one operation through its endpoint's plain function; (its result, succeeded)."""
    if operation.error is not None:
        return _failure(operation, operation.error), False
    missing = sorted(ref for ref in operation.refs if ref not in ids)
    if missing:
        error = ScimError(
            f"bulkId {', '.join(missing)} names a resource that was not created: its operation "
            "failed or was not processed.",
            status=409,
        )
        return _failure(operation, error), False
    endpoint, method = operation.endpoint, operation.method
    if endpoint is None or method is None:  # pragma: no cover - parsed without error
        raise RuntimeError("an operation without an error has a method and a path")
    ref = _bulk_ref(operation.resource_id or "")
    if ref is not None:
        operation.resource_id = ids[ref]
    resource_id = operation.resource_id or ""
    try:
        data = _map_references(operation.data, ids.__getitem__)
        status, resource = endpoint.run(method, resource_id, data, operation.version)
    except Exception as exc:  # every failure is reported in the operation's result (§3.7.3)
        return _failure(operation, scim_error(exc)), False
    result = _result(operation)
    if resource is not None:
        result["location"] = _location(endpoint, resource["id"])
        result["version"] = resource["meta"]["version"]
        if operation.bulk_id is not None and operation.method == "POST":
            ids[operation.bulk_id] = resource["id"]
    elif resource_id:
        result["location"] = _location(endpoint, resource_id)
    result["status"] = str(status)
    return result, True


def _circular(operation: Operation) -> dict[str, Any]:
    refs = ", ".join(sorted(operation.refs))
    error = ScimError(
        f"Circular bulkId references: this operation needs bulkId {refs}, which is part of "
        "(or waits for) a cycle of references, so it could not be ordered (RFC 7644 §3.7.1).",
        status=409,
    )
    return _failure(operation, error)


def run_bulk(bulk: BulkRequest) -> list[dict[str, Any]]:
    """Process the operations (each in its own transaction) and return their results in
    request order; stop once `failOnErrors` operations have failed (§3.7.3)."""
    order, stuck = processing_order(bulk.operations)
    circular = {op.index for op in stuck}
    ids: dict[str, str] = {}
    results: dict[int, dict[str, Any]] = {}
    errors = 0
    for operation in order + stuck:
        if bulk.fail_on_errors is not None and errors >= bulk.fail_on_errors:
            break
        if operation.index in circular:
            result, succeeded = _circular(operation), False
        else:
            result, succeeded = _perform(operation, ids)
        results[operation.index] = result
        errors += not succeeded
    return [results[index] for index in sorted(results)]


def payload_limit(config: Config) -> int:
    """`maxPayloadSize`: the bulk limit, within the limit on every request body."""
    return min(config.bulk_max_payload_bytes, config.max_body_bytes)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The size of the bulk operation exceeds the maxPayloadSize ({limit}).")


@bp.post("/Bulk")
def bulk() -> Response:
    """RFC 7644 §3.7: 200 with a BulkResponse whenever the request itself could be read."""
    config = runtime.current().config
    limit = payload_limit(config)
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    body = read_json()
    if len(request.get_data(cache=True)) > limit:  # pragma: no cover - chunked bodies only
        raise _too_large(limit)
    parsed = parse_bulk_request(body, config.bulk_max_operations)
    return scim_response({"schemas": [BULK_RESPONSE], "Operations": run_bulk(parsed)})
