"""A stateful stand-in for a Moodle site's REST web service, behind `responses`.

Written from Moodle's documented web-service contract (the functions' `*_parameters` and
`*_returns` descriptions in `user/externallib.php`, `cohort/externallib.php`,
`enrol/manual/externallib.php`, `course/externallib.php`, `webservice/rest/locallib.php`):

- one endpoint, `POST /webservice/rest/server.php`, with `wstoken`, `wsfunction`,
  `moodlewsrestformat=json` and PHP-style form arrays (`users[0][username]=…`);
- failures are HTTP 200 with `{"exception", "errorcode", "message"}`: `invalidtoken` for a
  wrong token, `accessexception` for a function outside the token's service,
  `invalidparameter` for missing or invalid parameters (a taken username or e-mail, a
  duplicate cohort idnumber, a course that does not exist), `invalidrecord` for a record that
  does not exist (MUST_EXIST lookups);
- courses and categories as Moodle 4.3 makes them (`core_course_create_courses` →
  `create_course()`, `core_course_duplicate_course`, `core_course_update_courses`,
  `core_course_create_categories` → `core_course_category::create()`,
  `core_course_get_categories`, `core_course_get_courses_by_field`), with their errors: a taken
  shortname is `shortnametaken`, a taken idnumber `courseidnumbertaken` or
  `categoryidnumbertaken`, a course in a missing category `errorcatcontextnotvalid` (the
  category context does not validate), a category under a missing parent `unknowcategory`;
  update_courses reports a course's failure as a warning, as Moodle does;
- the behaviours the relay relies on: adding an existing cohort member is a warning (code 3),
  not an error; enrolling an enrolled user again changes nothing; unenrolling removes the
  user's enrolment in the course; deleting a user removes their cohort memberships and
  enrolments.

Faults can be injected per function: a timeout, an HTTP 503, Moodle's `sitemaintenance`, or a
crash of the *caller* right after the site applied the call (to test a relay restart).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import requests
import responses

URL = "https://lms.example.test"
TOKEN = "moodle-ws-token-0123456789abcdef"  # a test token for the simulated site
ASSIGNABLE_ROLES = {3: "editingteacher", 4: "teacher", 5: "student"}
_USERNAME = re.compile(r"[a-z0-9_.@-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class SimulatedCrash(BaseException):
    """The relay process dies right after the LMS applied a call (not an `Exception`, so the
    relay cannot catch it: like a kill -9, its bookkeeping never happens)."""


class WsError(Exception):
    def __init__(self, exception: str, errorcode: str, message: str) -> None:
        super().__init__(message)
        self.envelope = {"exception": exception, "errorcode": errorcode, "message": message}


def invalid(message: str = "Invalid parameter value detected") -> WsError:
    return WsError("invalid_parameter_exception", "invalidparameter", message)


def missing(table: str) -> WsError:
    return WsError(
        "dml_missing_record_exception",
        "invalidrecord",
        f"Can't find data record in database table {table}.",
    )


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`users[0][username]=a` → `{"users": [{"username": "a"}]}` (PHP's form decoding)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def _param_int(params: dict[str, Any], key: str) -> None:
    """Moodle's PARAM_INT check of an optional parameter (`validate_parameters`)."""
    value = params.get(key)
    if value is not None and not re.fullmatch(r"-?[0-9]+", str(value)):
        raise invalid(
            f'Invalid external api parameter: the value is "{value}", the server was '
            'expecting "int" type'
        )


@dataclass
class Fault:
    kind: str  # pass | timeout | http503 | maintenance | crash_after | invalidparameter
    times: int = 1


@dataclass
class MoodleSim:
    """The site: users, cohorts and members, courses and manual enrolments."""

    url: str = URL
    # A hung site: every call waits for this event (at most a minute), then times out.
    stall: threading.Event | None = None
    # Set once a call is waiting on `stall` (the site really holds a relay's call).
    hanging: threading.Event = field(default_factory=threading.Event)
    courses: set[int] = field(default_factory=lambda: {101, 102, 103, 201})
    allowed: set[str] | None = None  # functions the token may call (None: all)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    cohorts: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: set[tuple[int, int]] = field(default_factory=set)  # (cohort id, user id)
    enrolments: dict[tuple[int, int], set[int]] = field(default_factory=dict)  # (user, course)
    # The user enrolment's (timestart, timeend, status) per (user, course); 0: no date.
    enrolment_times: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=lambda: defaultdict(list))
    _ids: Any = field(default_factory=lambda: itertools.count(2))  # 1 is the admin
    _cohort_ids: Any = field(default_factory=lambda: itertools.count(1))
    # Course records by id (every id in `courses` has one) and course categories by id; Moodle's
    # own "Category 1" (id 1) is there from the start.
    course_records: dict[int, dict[str, Any]] = field(default_factory=dict)
    categories: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Runs once, just before the named function is applied (e.g. another relay's work).
    before: dict[str, Any] = field(default_factory=dict)
    # Calls of the named function wait for each other in twos (two relays racing), at most
    # `timeout` seconds; then the site applies them one at a time, as its database would.
    rendezvous: dict[str, threading.Barrier] = field(default_factory=dict)
    _apply: threading.RLock = field(default_factory=threading.RLock)
    _course_ids: Any = field(default_factory=lambda: itertools.count(1001))
    _category_ids: Any = field(default_factory=lambda: itertools.count(2))

    def __post_init__(self) -> None:
        if 1 not in self.categories:
            self.categories[1] = self._new_category(1, "Category 1", 0, "")
        for course_id in sorted(self.courses):
            self.course_records.setdefault(
                course_id,
                self._new_course(course_id, f"Course {course_id}", f"C{course_id}", 1, ""),
            )

    # -- setting up --------------------------------------------------------------------------

    def add_user(self, username: str, email: str, **extra: Any) -> int:
        """An account that existed before lms-scim (to be matched, not created)."""
        user_id = next(self._ids)
        self.users[user_id] = {
            "id": user_id,
            "username": username,
            "email": email,
            "firstname": extra.get("firstname", username),
            "lastname": extra.get("lastname", "-"),
            "idnumber": extra.get("idnumber", ""),
            "auth": extra.get("auth", "manual"),
            "suspended": 0,
        }
        return user_id

    def add_course(
        self, shortname: str, fullname: str = "", category: int = 1, **extra: Any
    ) -> int:
        """A course that existed before lms-scim (to be matched, or a template to copy)."""
        course_id = next(self._course_ids)
        course = self._new_course(course_id, fullname or shortname, shortname, category, "")
        self.course_records[course_id] = {**course, **extra}
        self.courses.add(course_id)
        return course_id

    def add_category(self, name: str, parent: int = 0, idnumber: str = "") -> int:
        category_id = next(self._category_ids)
        self.categories[category_id] = self._new_category(category_id, name, parent, idnumber)
        return category_id

    def category_paths(self) -> list[str]:
        """Every category as "Parent/Child" names, sorted (Moodle's own "Category 1" too)."""
        return sorted(self._category_path(c) for c in self.categories)

    def _category_path(self, category_id: int) -> str:
        category = self.categories[category_id]
        parent = category["parent"]
        return (f"{self._category_path(parent)}/" if parent else "") + category["name"]

    def course_list(self) -> list[tuple[str, str, str, str]]:
        """(shortname, fullname, category path, idnumber) of every course made or matched
        after the preset ones, by shortname."""
        return sorted(
            (c["shortname"], c["fullname"], self._category_path(c["categoryid"]), c["idnumber"])
            for cid, c in self.course_records.items()
            if cid > 1000
        )

    def fail(self, function: str, kind: str, times: int = 1) -> None:
        self.faults[function].append(Fault(kind, times))

    def install(self, mock: responses.RequestsMock) -> None:
        endpoint = f"{self.url}/webservice/rest/server.php"
        mock.add_callback(responses.POST, endpoint, callback=self._handle)

    # -- the final state, for assertions and for printing -----------------------------------

    def state(self) -> dict[str, Any]:
        """Users (by username) with suspension, cohorts with member usernames, enrolments."""
        names = {uid: u["username"] for uid, u in self.users.items()}
        return {
            "users": {
                u["username"]: {"email": u["email"], "suspended": bool(u["suspended"])}
                for u in sorted(self.users.values(), key=lambda u: u["username"])
            },
            "cohorts": {
                c["name"]: sorted(names[uid] for cid, uid in self.members if cid == c["id"])
                for c in sorted(self.cohorts.values(), key=lambda c: c["name"])
            },
            "enrolments": sorted(
                (names[uid], course, ASSIGNABLE_ROLES[role])
                for (uid, course), roles in self.enrolments.items()
                for role in roles
            ),
        }

    def dump(self) -> str:
        """The state as short lines, to quote in a note."""
        state = self.state()
        lines = ["users:"]
        for name, user in state["users"].items():
            flag = "SUSPENDED" if user["suspended"] else "active"
            lines.append(f"  {name:<24} {user['email']:<24} {flag}")
        lines.append("cohorts:")
        lines += [
            f"  {name}: {', '.join(members) or '-'}" for name, members in state["cohorts"].items()
        ]
        lines.append("enrolments (user, course, role):")
        lines += [f"  {user:<24} {course:<5} {role}" for user, course, role in state["enrolments"]]
        return "\n".join(lines)

    def count(self, function: str) -> int:
        return sum(1 for name, _ in self.calls if name == function)

    # -- the web service ---------------------------------------------------------------------

    def _handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = request.body or ""
        pairs = parse_qsl(body if isinstance(body, str) else body.decode(), keep_blank_values=True)
        params = unflatten(pairs)
        token = params.pop("wstoken", None)
        function = params.pop("wsfunction", "")
        if params.pop("moodlewsrestformat", None) != "json":
            return 200, {"Content-Type": "application/xml"}, "<RESPONSE/>"
        fault = self._fault(function)
        if self.stall is not None:
            self.hanging.set()
            self.stall.wait(60)
            fault = "timeout"
        if fault == "timeout":
            raise requests.exceptions.ReadTimeout("simulated: the LMS did not answer")
        if fault == "http503":
            return 503, {"Content-Type": "text/html"}, "<h1>Service Unavailable</h1>"
        try:
            if fault == "maintenance":
                raise WsError("moodle_exception", "sitemaintenance", "Site is in maintenance")
            if fault == "invalidparameter":
                raise invalid("Invalid parameter value detected (simulated)")
            if token != TOKEN:
                raise WsError("moodle_exception", "invalidtoken", "Invalid token - token not found")
            if self.allowed is not None and function not in self.allowed:
                raise WsError(
                    "webservice_access_exception", "accessexception", "Access control exception"
                )
            handler = getattr(self, function, None)
            if handler is None:
                raise WsError(
                    "dml_missing_record_exception",
                    "invalidrecord",
                    "Can't find data record in database table external_functions.",
                )
            hook = self.before.pop(function, None)
            if hook is not None:
                hook()
            barrier = self.rendezvous.get(function)
            if barrier is not None:
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
            with self._apply:
                result = handler(**params)
        except WsError as exc:
            self.calls.append((f"!{function}", params))
            return 200, {"Content-Type": "application/json"}, json.dumps(exc.envelope)
        except TypeError as exc:  # missing or unexpected parameters
            envelope = invalid(f"Invalid parameter value detected ({exc})").envelope
            return 200, {"Content-Type": "application/json"}, json.dumps(envelope)
        self.calls.append((function, params))
        if fault == "crash_after":
            raise SimulatedCrash(f"simulated crash after {function}")
        return 200, {"Content-Type": "application/json"}, json.dumps(result)

    def _fault(self, function: str) -> str | None:
        queue = self.faults.get(function)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault.kind

    def _user(self, user_id: Any) -> dict[str, Any]:
        user = self.users.get(int(user_id))
        if user is None:
            raise missing("user")
        return user

    def _check_user(self, user: dict[str, Any], user_id: int | None = None) -> None:
        if "username" in user:
            if not _USERNAME.fullmatch(user["username"]):
                raise invalid(f"Invalid username: {user['username']}")
            if any(
                u["username"] == user["username"] and uid != user_id
                for uid, u in self.users.items()
            ):
                raise invalid(f"Username already exists: {user['username']}")
        if "email" in user:
            if not _EMAIL.fullmatch(user["email"]):
                raise invalid(f"Email address is invalid: {user['email']}")
            if any(u["email"] == user["email"] and uid != user_id for uid, u in self.users.items()):
                raise invalid(f"Email address already exists: {user['email']}")

    # core_user ------------------------------------------------------------------------------

    def core_user_get_users_by_field(self, field: str, values: list[str]) -> list[dict[str, Any]]:
        if field not in ("id", "idnumber", "username", "email"):
            raise invalid()
        found = [u for u in self.users.values() if str(u[field]) in values]
        return [
            {
                **u,
                "fullname": f"{u['firstname']} {u['lastname']}",
                "suspended": bool(u["suspended"]),
            }
            for u in found
        ]

    def core_user_create_users(self, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
        created = []
        for user in users:  # one transaction: check all first
            for required in ("username", "firstname", "lastname", "email"):
                if required not in user:
                    raise invalid(f"Missing required key in single structure: {required}")
            if not user.get("password") and user.get("createpassword") != "1":
                raise invalid(
                    "Invalid password: you must provide a password, or set createpassword."
                )
            self._check_user(user)
        for user in users:
            user_id = next(self._ids)
            self.users[user_id] = {
                "id": user_id,
                "username": user["username"],
                "email": user["email"],
                "firstname": user["firstname"],
                "lastname": user["lastname"],
                "idnumber": user.get("idnumber", ""),
                "auth": user.get("auth", "manual"),
                "suspended": 0,
            }
            created.append({"id": user_id, "username": user["username"]})
        return created

    def core_user_update_users(self, users: list[dict[str, Any]]) -> dict[str, Any]:
        for user in users:
            self._check_user(user, int(user["id"]))
            self._user(user["id"])
        for user in users:
            stored = self._user(user["id"])
            for key in ("username", "email", "firstname", "lastname", "idnumber", "auth"):
                if key in user:
                    stored[key] = user[key]
            if "suspended" in user:
                stored["suspended"] = int(user["suspended"])
        return {"warnings": []}

    def core_user_delete_users(self, userids: list[str]) -> None:
        for user_id in userids:
            self._user(user_id)
        for user_id in map(int, userids):
            del self.users[user_id]
            self.members = {(c, u) for c, u in self.members if u != user_id}
            self.enrolments = {k: v for k, v in self.enrolments.items() if k[0] != user_id}
            self.enrolment_times = {
                k: v for k, v in self.enrolment_times.items() if k[0] != user_id
            }

    # core_cohort ----------------------------------------------------------------------------

    def core_cohort_search_cohorts(
        self, query: str, context: dict[str, str], includes: str = "parents", **_: Any
    ) -> dict[str, Any]:
        if context.get("contextlevel") != "system" and context.get("contextid") != "1":
            raise invalid("Invalid context")
        found = [c for c in self.cohorts.values() if query in c["name"] or query in c["idnumber"]]
        return {"cohorts": [dict(c) for c in found]}

    def _category(self, cohort: dict[str, Any]) -> None:
        if cohort.get("categorytype", {}).get("type") not in ("id", "idnumber", "system"):
            raise invalid("category type must be id, idnumber or system")

    def core_cohort_create_cohorts(self, cohorts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for cohort in cohorts:
            self._category(cohort)
            if any(c["idnumber"] == cohort["idnumber"] for c in self.cohorts.values()):
                raise invalid(f"record already exists: idnumber={cohort['idnumber']}")
        created = []
        for cohort in cohorts:
            cohort_id = next(self._cohort_ids)
            self.cohorts[cohort_id] = {
                "id": cohort_id,
                "name": cohort["name"],
                "idnumber": cohort["idnumber"],
                "description": "",
                "descriptionformat": 1,
                "visible": True,
            }
            created.append(dict(self.cohorts[cohort_id]))
        return created

    def core_cohort_update_cohorts(self, cohorts: list[dict[str, Any]]) -> None:
        for cohort in cohorts:
            self._category(cohort)
            if not cohort["name"].strip():
                raise invalid("Invalid cohort name")
            if int(cohort["id"]) not in self.cohorts:
                raise missing("cohort")
        for cohort in cohorts:
            self.cohorts[int(cohort["id"])].update(name=cohort["name"], idnumber=cohort["idnumber"])

    def core_cohort_delete_cohorts(self, cohortids: list[str]) -> None:
        for cohort_id in cohortids:
            if int(cohort_id) not in self.cohorts:
                raise missing("cohort")
        for cohort_id in map(int, cohortids):
            del self.cohorts[cohort_id]
            self.members = {(c, u) for c, u in self.members if c != cohort_id}

    def core_cohort_add_cohort_members(self, members: list[dict[str, Any]]) -> dict[str, Any]:
        warnings = []
        for member in members:
            ctype, utype = member["cohorttype"], member["usertype"]
            if ctype["type"] != "id" or utype["type"] != "id":
                warnings.append({"warningcode": "1", "message": "invalid parameter"})
                continue
            cohort_id, user_id = int(ctype["value"]), int(utype["value"])
            if cohort_id not in self.cohorts:
                warnings.append(
                    {"warningcode": "2", "message": f"cohort id={cohort_id} not exists"}
                )
            elif user_id not in self.users:
                warnings.append({"warningcode": "2", "message": f"user id={user_id} not exists"})
            elif (cohort_id, user_id) in self.members:
                warnings.append({"warningcode": "3", "message": "record already exists"})
            else:
                self.members.add((cohort_id, user_id))
        return {"warnings": warnings}

    def core_cohort_delete_cohort_members(self, members: list[dict[str, str]]) -> None:
        for member in members:
            if int(member["cohortid"]) not in self.cohorts:
                raise missing("cohort")
            self._user(member["userid"])
        for member in members:
            self.members.discard((int(member["cohortid"]), int(member["userid"])))

    # enrol_manual ---------------------------------------------------------------------------

    def _course(self, course_id: str) -> int:
        if int(course_id) not in self.courses:
            raise invalid("Context does not exist")
        return int(course_id)

    def enrol_manual_enrol_users(self, enrolments: list[dict[str, str]]) -> None:
        """Moodle 4.3: `timestart`, `timeend` and `suspend` are optional PARAM_INTs; a missing
        date is 0 (none), and enrolling an enrolled user sets the user enrolment's dates and
        status again (`enrol_plugin::enrol_user` updates it when they differ)."""
        for e in enrolments:
            for key in ("roleid", "userid", "courseid", "timestart", "timeend", "suspend"):
                _param_int(e, key)
            self._course(e["courseid"])
            self._user(e["userid"])
            if int(e["roleid"]) not in ASSIGNABLE_ROLES:
                raise WsError(
                    "moodle_exception", "wsusercannotassign", "You cannot assign this role"
                )
        for e in enrolments:
            key = (int(e["userid"]), int(e["courseid"]))
            self.enrolments.setdefault(key, set()).add(int(e["roleid"]))
            status = 1 if int(e.get("suspend") or 0) else 0
            times = (int(e.get("timestart", 0)), int(e.get("timeend", 0)), status)
            self.enrolment_times[key] = times

    def enrol_manual_unenrol_users(self, enrolments: list[dict[str, str]]) -> None:
        for e in enrolments:
            self._course(e["courseid"])
            if int(e["userid"]) not in self.users:
                raise invalid(f"User id not exist: {e['userid']}")
        for e in enrolments:
            self.enrolments.pop((int(e["userid"]), int(e["courseid"])), None)
            self.enrolment_times.pop((int(e["userid"]), int(e["courseid"])), None)

    # core_role ------------------------------------------------------------------------------

    def core_role_unassign_roles(self, unassignments: list[dict[str, str]]) -> None:
        for u in unassignments:
            if u.get("contextlevel") != "course":
                raise invalid("Only course contexts are simulated")
            self._course(u["instanceid"])
            self._user(u["userid"])
        for u in unassignments:
            roles = self.enrolments.get((int(u["userid"]), int(u["instanceid"])))
            if roles is not None:
                roles.discard(int(u["roleid"]))

    # core_course: courses --------------------------------------------------------------------

    @staticmethod
    def _new_course(
        course_id: int, fullname: str, shortname: str, category: int, idnumber: str
    ) -> dict[str, Any]:
        return {
            "id": course_id,
            "fullname": fullname,
            "displayname": fullname,
            "shortname": shortname,
            "categoryid": category,
            "idnumber": idnumber,
            "summary": "",
            "summaryformat": 1,
            "format": "topics",
            "visible": 1,
        }

    def _course_out(self, course: dict[str, Any]) -> dict[str, Any]:
        return {**course, "categoryname": self.categories[course["categoryid"]]["name"]}

    def _check_course_names(
        self, records: dict[int, dict[str, Any]], course: dict[str, Any], own: int | None
    ) -> None:
        """create_course()/update_course(): shortname first, then idnumber (course/lib.php)."""
        for key in ("fullname", "shortname"):
            if key in course and not str(course[key]).strip():
                raise WsError(
                    "moodle_exception", "errorinvalidparam", f'The param "{key}" is invalid.'
                )
        shortname = course.get("shortname")
        if shortname and any(
            c["shortname"] == shortname and cid != own for cid, c in records.items()
        ):
            raise WsError(
                "moodle_exception",
                "shortnametaken",
                f"Short name is already used for another course ({shortname})",
            )
        idnumber = course.get("idnumber")
        if idnumber and any(c["idnumber"] == idnumber and cid != own for cid, c in records.items()):
            raise WsError(
                "moodle_exception",
                "courseidnumbertaken",
                f"ID number is already used for another course ({idnumber})",
            )

    def _category_context(self, category_id: Any) -> int:
        """`context_coursecat::instance($id, IGNORE_MISSING)` then `validate_context`: a
        missing category is `errorcatcontextnotvalid` (create_courses)."""
        if int(category_id) not in self.categories:
            raise WsError(
                "moodle_exception",
                "errorcatcontextnotvalid",
                f"You cannot execute functions in the category context (category id:"
                f"{category_id}). The context error message was: Context does not exist",
            )
        return int(category_id)

    def core_course_create_courses(self, courses: list[dict[str, Any]]) -> list[dict[str, Any]]:
        records = dict(self.course_records)  # one transaction: all or nothing
        created = []
        for course in courses:
            for required in ("fullname", "shortname", "categoryid"):
                if required not in course:
                    raise invalid(f"Missing required key in single structure: {required}")
            category = self._category_context(course["categoryid"])
            self._check_course_names(records, course, None)
            course_id = next(self._course_ids)
            records[course_id] = self._new_course(
                course_id,
                course["fullname"],
                course["shortname"],
                category,
                course.get("idnumber", ""),
            )
            if "format" in course:
                records[course_id]["format"] = course["format"]
            created.append({"id": course_id, "shortname": course["shortname"]})
        self.course_records = records
        self.courses |= {c["id"] for c in created}
        return created

    def core_course_get_courses_by_field(self, field: str = "", value: str = "") -> dict[str, Any]:
        found = list(self.course_records.values())
        if field == "id":
            found = [c for c in found if str(c["id"]) == value]
        elif field == "ids":
            found = [c for c in found if str(c["id"]) in value.split(",")]
        elif field in ("shortname", "idnumber"):
            found = [c for c in found if c[field] == value]
        elif field == "category":
            found = [c for c in found if str(c["categoryid"]) == value]
        elif field != "":
            raise invalid("Invalid field name")
        return {"courses": [self._course_out(c) for c in found], "warnings": []}

    def core_course_duplicate_course(
        self,
        courseid: str,
        fullname: str,
        shortname: str,
        categoryid: str,
        visible: str = "1",
        options: Any = (),
    ) -> dict[str, Any]:
        source = self.course_records.get(int(courseid))
        if source is None:
            raise WsError(
                "moodle_exception", "invalidcourseid", "You are trying to use an invalid course ID"
            )
        if int(categoryid) not in self.categories:  # context_coursecat::instance(MUST_EXIST)
            raise missing("course_categories")
        taken = [c["fullname"] for c in self.course_records.values() if c["shortname"] == shortname]
        if taken:
            raise WsError(
                "moodle_exception",
                "shortnametaken",
                f"Short name is already used for another course ({','.join(taken)})",
            )
        course_id = next(self._course_ids)
        # Backup and restore: the copy keeps the content, not the idnumber (taken by the source).
        self.course_records[course_id] = {
            **source,
            **self._new_course(course_id, fullname, shortname, int(categoryid), ""),
            "format": source["format"],
            "summary": source["summary"],
            "visible": int(visible),
            "duplicated_from": source["id"],
        }
        self.courses.add(course_id)
        return {"id": course_id, "shortname": shortname}

    def core_course_update_courses(self, courses: list[dict[str, Any]]) -> dict[str, Any]:
        warnings = []
        for course in courses:
            course_id = int(course["id"])
            try:  # each course on its own; a failure is a warning (as Moodle does)
                if course_id not in self.course_records:
                    raise missing("course")
                if "categoryid" in course and int(course["categoryid"]) not in self.categories:
                    raise missing("course_categories")
                self._check_course_names(self.course_records, course, course_id)
            except WsError as exc:
                warnings.append(
                    {
                        "item": "course",
                        "itemid": course_id,
                        "warningcode": exc.envelope["errorcode"],
                        "message": exc.envelope["message"],
                    }
                )
                continue
            stored = self.course_records[course_id]
            for key in ("fullname", "shortname", "idnumber"):
                if key in course:
                    stored[key] = course[key]
            if "fullname" in course:
                stored["displayname"] = course["fullname"]
            if "categoryid" in course:
                stored["categoryid"] = int(course["categoryid"])
        return {"warnings": warnings}

    # core_course: categories -----------------------------------------------------------------

    def _new_category(
        self, category_id: int, name: str, parent: int, idnumber: str
    ) -> dict[str, Any]:
        above = self.categories[parent]["path"] if parent else ""
        return {
            "id": category_id,
            "name": name,
            "idnumber": idnumber,
            "description": "",
            "descriptionformat": 1,
            "parent": parent,
            "sortorder": category_id * 10000,
            "coursecount": 0,
            "visible": 1,
            "depth": (self.categories[parent]["depth"] + 1) if parent else 1,
            "path": f"{above}/{category_id}",
        }

    def core_course_create_categories(
        self, categories: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        made: dict[int, dict[str, Any]] = {}  # one transaction: all or nothing
        for category in categories:
            parent = int(category.get("parent", 0) or 0)
            if parent and parent not in self.categories and parent not in made:
                raise WsError("moodle_exception", "unknowcategory", "Unknown category.")
            # core_course_category::create()
            name = str(category.get("name", "")).strip()
            if not name:
                raise WsError(
                    "moodle_exception", "categorynamerequired", "A category name is required."
                )
            if len(name) > 255:
                raise WsError("moodle_exception", "categorytoolong", "Category name too long")
            idnumber = category.get("idnumber")
            if idnumber is not None:
                if len(idnumber) > 100:
                    raise WsError("moodle_exception", "idnumbertoolong", "ID number is too long")
                existing = [*self.categories.values(), *made.values()]
                if idnumber != "" and any(c["idnumber"] == idnumber for c in existing):
                    raise WsError(
                        "moodle_exception",
                        "categoryidnumbertaken",
                        "ID number is already used for another category",
                    )
            category_id = next(self._category_ids)
            self.categories[category_id] = made[category_id] = self._new_category(
                category_id, name, parent, idnumber or ""
            )
        return [{"id": c["id"], "name": c["name"]} for c in made.values()]

    def core_course_get_categories(
        self, criteria: Any = (), addsubcategories: str = "1"
    ) -> list[dict[str, Any]]:
        found = list(self.categories.values())
        for criterion in criteria or ():
            key, value = criterion["key"].strip(), criterion["value"]
            if key in ("id", "parent"):
                found = [c for c in found if str(c[key]) == str(int(value or 0))]
            elif key in ("name", "idnumber"):
                found = [c for c in found if c[key] == value]
            elif key == "ids":
                found = [c for c in found if str(c["id"]) in value.split(",")]
            elif key == "visible":
                found = [c for c in found if str(c["visible"]) == value]
            else:
                raise WsError(
                    "moodle_exception",
                    "criteriaerror",
                    f"You can not search on this criteria: {key}",
                )
        if criteria and found and addsubcategories != "0":
            paths = [c["path"] + "/" for c in found]
            found += [
                c
                for c in self.categories.values()
                if any(c["path"].startswith(p) for p in paths) and c not in found
            ]
        return [dict(c) for c in sorted(found, key=lambda c: c["sortorder"])]

    # core_webservice ------------------------------------------------------------------------

    def core_webservice_get_site_info(self) -> dict[str, Any]:
        names = (
            sorted(self.allowed)
            if self.allowed is not None
            else [
                "core_webservice_get_site_info",
                *(n for n in dir(self) if n.startswith(("core_", "enrol_"))),
            ]
        )
        return {
            "sitename": "Simulated Moodle",
            "username": "lms-scim-service",
            "userid": 1,
            "siteurl": self.url,
            "release": "4.5 (Build: simulated)",
            "version": "2024100700",
            "functions": [{"name": n, "version": "2024100700"} for n in dict.fromkeys(names)],
        }
