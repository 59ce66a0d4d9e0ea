"""A resource endpoint's writes as plain functions, and the Flask routes that call them.

`/Users` and `/Groups` each describe their POST, PUT, PATCH and DELETE work once, as plain
functions from the parsed body to `(status, resource)` (`Outcome`). An `Endpoint` holds
them: `route()` attaches the HTTP views (request in, function, response out), and `/Bulk`
(`app.scim.bulk`) calls `run()` for each of its operations, so both go through the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response

from app.scim import bp
from app.scim.request_checks import if_match, read_json
from app.scim.responses import not_modified
from scim_schemas import ResourceType

Outcome = tuple[int, dict[str, Any] | None]
"""What a write endpoint's plain function returns: the HTTP status and the resource (None for
a DELETE's 204)."""

Show = Callable[[dict[str, Any], int], Response]
"""How a resource type answers with one resource and a status (links, projection, ETag)."""


@dataclass(frozen=True)
class Endpoint:
    """The plain functions behind one resource type's writes (RFC 7644 §3.3, §3.5, §3.6)."""

    rtype: ResourceType
    read: Callable[[str], dict[str, Any]]
    create: Callable[[Any], Outcome]
    replace: Callable[[str, Any, str | None], Outcome]
    patch: Callable[[str, Any, str | None], Outcome]
    delete: Callable[[str, str | None], Outcome]

    def run(self, method: str, resource_id: str, data: Any, version: str | None) -> Outcome:
        """The work of `method` (`resource_id` is ignored by POST, `data` by DELETE;
        `version` is the If-Match ETag)."""
        if method == "POST":
            return self.create(data)
        if method == "PUT":
            return self.replace(resource_id, data, version)
        if method == "PATCH":
            return self.patch(resource_id, data, version)
        return self.delete(resource_id, version)

    def route(self, show: Show) -> None:
        """GET, PUT, PATCH and DELETE `/<Type>s/<id>` and POST `/<Type>s`, named `get_user`,
        `create_user`, `replace_user`, `patch_user`, `delete_user` (and the same for groups)."""
        path, name = self.rtype.endpoint, self.rtype.name.lower()

        def get(resource_id: str) -> Response:
            resource = self.read(resource_id)
            if not_modified(resource):  # RFC 7644 §3.14
                return Response(status=304, headers={"ETag": resource["meta"]["version"]})
            return show(resource, 200)

        def create() -> Response:
            return _answer(self.run("POST", "", read_json(), None), show)

        bp.add_url_rule(f"{path}/<resource_id>", f"get_{name}", get, methods=["GET"])
        bp.add_url_rule(path, f"create_{name}", create, methods=["POST"])
        for method, verb in (("PUT", "replace"), ("PATCH", "patch"), ("DELETE", "delete")):
            bp.add_url_rule(
                f"{path}/<resource_id>",
                f"{verb}_{name}",
                self._view(method, show),
                methods=[method],
            )

    def _view(self, method: str, show: Show) -> Callable[[str], Response]:
        def view(resource_id: str) -> Response:
            data = None if method == "DELETE" else read_json()
            return _answer(self.run(method, resource_id, data, if_match()), show)

        return view


def _answer(outcome: Outcome, show: Show) -> Response:
    """A write's response: the resource, or for a 204 nothing but its new ETag (§3.14)."""
    status, resource = outcome
    if resource is None:
        return Response(status=status)
    if status == 204:
        return Response(status=204, headers={"ETag": resource["meta"]["version"]})
    return show(resource, status)
