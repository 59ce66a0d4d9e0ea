"""A client for Moodle's REST web service (Totara's is the same protocol).

Every call is a POST to `{LMS_URL}/webservice/rest/server.php` with `wstoken`, `wsfunction` and
`moodlewsrestformat=json`, and the function's parameters form-encoded the PHP way: lists and
dicts become `users[0][username]=…`. Moodle answers HTTP 200 even when a call fails, with the
envelope `{"exception": …, "errorcode": …, "message": …}`; this client turns that into
`LmsError`, marked transient (worth retrying) or not:

- transient: timeouts, connection failures, HTTP 5xx/429, the error codes of a site in
  maintenance or a database hiccup (`TRANSIENT_CODES`), and a sealed token that does not open
  under this SECRET_KEY (`TokenUnreadable`: it is opened at the first call, not before);
- permanent: anything else, e.g. `invalidparameter` (a bad e-mail, a taken username) or
  `invalidtoken`/`accessexception` (the token may not do this) — retrying cannot fix those.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import requests

from app.secretbox import SealedSecret, SecretUnreadable, reveal

ENDPOINT = "/webservice/rest/server.php"

# The functions the relay calls; `lms-scim relay test` checks the token may call each one.
REQUIRED_FUNCTIONS = (
    "core_webservice_get_site_info",
    "core_user_get_users_by_field",
    "core_user_create_users",
    "core_user_update_users",
    "core_user_delete_users",
    "core_cohort_search_cohorts",
    "core_cohort_create_cohorts",
    "core_cohort_update_cohorts",
    "core_cohort_delete_cohorts",
    "core_cohort_add_cohort_members",
    "core_cohort_delete_cohort_members",
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_role_unassign_roles",
)

# Moodle error codes that describe the site's state, not the request: retry later.
TRANSIENT_CODES = frozenset(
    {
        "sitemaintenance",
        "dbconnectionfailed",
        "dmlreadexception",
        "dmlwriteexception",
        "dmltransactionexception",
        "servicenotavailable",
    }
)
# The record asked for does not exist (e.g. deleting an account that is already gone).
MISSING_CODES = frozenset({"invalidrecord", "invalidrecordunknown"})


class LmsError(Exception):
    """A failed call: `transient` ones are retried, others are dead letters."""

    def __init__(self, message: str, *, errorcode: str | None = None, transient: bool) -> None:
        super().__init__(message)
        self.errorcode = errorcode
        self.transient = transient

    @property
    def missing(self) -> bool:
        return self.errorcode in MISSING_CODES


class TokenUnreadable(LmsError):
    """The LMS token is sealed and does not open under SECRET_KEY or SECRET_KEY_PREVIOUS: no
    call can be made until an operator sets it again or restores the key. Transient, so the
    rows wait with the usual back-off instead of all becoming dead letters at once."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


def flatten(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """PHP-style form fields: `{"users": [{"username": "a"}]}` → `users[0][username]=a`."""
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        yield from _flatten_value(name, value)


def _flatten_value(name: str, value: Any) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        yield from flatten(value, name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _flatten_value(f"{name}[{index}]", item)
    elif isinstance(value, bool):
        yield name, "1" if value else "0"
    else:
        yield name, str(value)


class MoodleClient:
    """One LMS: its base URL, token and request timeout (seconds)."""

    def __init__(
        self,
        url: str,
        token: str | SealedSecret,
        timeout: float,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/") + ENDPOINT
        self.token = token  # a tenant's or target's own stays sealed until the first call
        self.timeout = timeout
        self.session = session or requests.Session()

    def call(self, function: str, **params: Any) -> Any:
        """Call a web-service function; its decoded JSON result, or `LmsError`."""
        try:
            token = reveal(self.token)
        except SecretUnreadable as exc:
            raise TokenUnreadable(str(exc)) from None
        data = [
            ("wstoken", token),
            ("wsfunction", function),
            ("moodlewsrestformat", "json"),
            *flatten(params),
        ]
        try:
            response = self.session.post(self.url, data=data, timeout=self.timeout)
        except requests.Timeout:
            raise LmsError(
                f"{function}: no answer within {self.timeout:g} s", transient=True
            ) from None
        except requests.RequestException as exc:
            raise LmsError(f"{function}: {type(exc).__name__}", transient=True) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise LmsError(f"{function}: HTTP {response.status_code}", transient=True)
        if response.status_code >= 400:
            raise LmsError(f"{function}: HTTP {response.status_code}", transient=False)
        try:
            body = response.json()
        except ValueError:
            raise LmsError(f"{function}: the answer is not JSON", transient=False) from None
        if isinstance(body, dict) and "exception" in body:
            code = body.get("errorcode")
            message = f"{function}: {code}: {body.get('message', '')}".rstrip(": ")
            raise LmsError(message, errorcode=code, transient=code in TRANSIENT_CODES)
        return body

    # -- users -------------------------------------------------------------------------------

    def users_by_field(self, field: str, value: str) -> list[dict[str, Any]]:
        return self.call("core_user_get_users_by_field", field=field, values=[value]) or []

    def create_user(self, user: Mapping[str, Any]) -> int:
        created = self.call("core_user_create_users", users=[dict(user)])
        return int(created[0]["id"])

    def update_user(self, lms_id: int, changes: Mapping[str, Any]) -> None:
        self.call("core_user_update_users", users=[{"id": lms_id, **changes}])

    def delete_user(self, lms_id: int) -> None:
        self.call("core_user_delete_users", userids=[lms_id])

    # -- cohorts (audiences) -----------------------------------------------------------------

    def find_cohort(self, idnumber: str) -> int | None:
        """The system cohort whose idnumber is exactly `idnumber` (search matches substrings)."""
        found = self.call(
            "core_cohort_search_cohorts",
            query=idnumber,
            context={"contextlevel": "system", "instanceid": 0},
            includes="self",
        )
        for cohort in (found or {}).get("cohorts", ()):
            if cohort.get("idnumber") == idnumber:
                return int(cohort["id"])
        return None

    def create_cohort(self, name: str, idnumber: str) -> int:
        cohort = {"categorytype": {"type": "system", "value": ""}, "name": name}
        created = self.call(
            "core_cohort_create_cohorts", cohorts=[{**cohort, "idnumber": idnumber}]
        )
        return int(created[0]["id"])

    def update_cohort(self, lms_id: int, name: str, idnumber: str) -> None:
        cohort = {"id": lms_id, "categorytype": {"type": "system", "value": ""}, "name": name}
        self.call("core_cohort_update_cohorts", cohorts=[{**cohort, "idnumber": idnumber}])

    def delete_cohort(self, lms_id: int) -> None:
        self.call("core_cohort_delete_cohorts", cohortids=[lms_id])

    def add_cohort_member(self, cohort_id: int, user_id: int) -> None:
        """Adding a member twice is harmless: Moodle answers with a warning (code 3)."""
        member = {
            "cohorttype": {"type": "id", "value": cohort_id},
            "usertype": {"type": "id", "value": user_id},
        }
        result = self.call("core_cohort_add_cohort_members", members=[member])
        for warning in (result or {}).get("warnings", ()):
            if str(warning.get("warningcode")) != "3":  # 3: already a member
                raise LmsError(
                    f"core_cohort_add_cohort_members: {warning.get('message')}", transient=False
                )

    def remove_cohort_member(self, cohort_id: int, user_id: int) -> None:
        self.call(
            "core_cohort_delete_cohort_members",
            members=[{"cohortid": cohort_id, "userid": user_id}],
        )

    # -- enrolments --------------------------------------------------------------------------

    def enrol(
        self,
        user_id: int,
        course_id: str,
        role_id: int,
        timestart: int | None = None,
        timeend: int | None = None,
    ) -> None:
        """Enrolling an enrolled user again adds the role and sets the enrolment's dates: Moodle
        takes a missing `timestart`/`timeend` as 0 (none) and updates the user enrolment when
        they differ (`enrol_plugin::enrol_user`), so every call carries the dates it should
        have."""
        enrolment = {"roleid": role_id, "userid": user_id, "courseid": course_id}
        if timestart is not None:
            enrolment["timestart"] = timestart
        if timeend is not None:
            enrolment["timeend"] = timeend
        self.call("enrol_manual_enrol_users", enrolments=[enrolment])

    def unenrol(self, user_id: int, course_id: str) -> None:
        self.call(
            "enrol_manual_unenrol_users", enrolments=[{"userid": user_id, "courseid": course_id}]
        )

    def unassign_role(self, user_id: int, course_id: str, role_id: int) -> None:
        """Take one role in a course away and leave the enrolment (another rule still gives
        the course with another role)."""
        unassignment = {
            "roleid": role_id,
            "userid": user_id,
            "contextlevel": "course",
            "instanceid": course_id,
        }
        self.call("core_role_unassign_roles", unassignments=[unassignment])

    # -- the connection ----------------------------------------------------------------------

    def site_info(self) -> dict[str, Any]:
        return self.call("core_webservice_get_site_info")

    def check(self, also: Sequence[str] = ()) -> tuple[dict[str, Any], list[str]]:
        """Site info (URL and token work), and the required functions (and `also`) the token
        may not call (site info lists the functions the token's service allows)."""
        info = self.site_info()
        allowed = {f.get("name") for f in info.get("functions", ()) if isinstance(f, dict)}
        return info, [name for name in (*REQUIRED_FUNCTIONS, *also) if name not in allowed]
