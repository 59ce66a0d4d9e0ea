"""The README's worked examples (issue 17 §5), end to end on SQLite and PostgreSQL: the IdP pushes
users and groups over SCIM, the commands are read from the README's "Worked examples" and run as
written through the CLI runner, the relay delivers to simulated Moodle sites, and each site's
whole end state is what the README's tables say; then the follow-up events it describes."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask

from app.config import Config
from app.store.models import utcnow
from tests.helpers import Clock as StoreClock
from tests.helpers import create_group, create_user, feed, patch_ok, run
from tests.relay.harness import leave, set_active
from tests.relay.moodle_sim import TOKEN, MoodleSim

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
HUB = "A Totara Connect-style hub"
SCHOOL = "A Classter-style school"
T_START = int(dt.datetime(2027, 1, 15, tzinfo=dt.UTC).timestamp())
T_END = int(dt.datetime(2027, 6, 30, tzinfo=dt.UTC).timestamp())
ANN, BOB, PIA = "ann@hub.example", "bob@hub.example", "pia@hub.example"
SAM, SUE, SID = "sam@school.example", "sue@school.example", "sid@school.example"


def example_commands(title: str) -> list[list[str]]:
    """The `lms-scim` commands of the README's worked example `title`, as argument lists."""
    section = README.split("\n### Worked examples\n", 1)[1].split("\n## ", 1)[0]
    example = section.split(f"\n#### {title}", 1)[1].split("\n#### ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", example, re.DOTALL)
    commands = []
    for line in (line for block in blocks for line in block.splitlines() if line.strip()):
        program, *args = shlex.split(line, comments=True)
        assert program == ".venv/bin/lms-scim", line
        commands.append(args)
    assert commands, f"no commands under {title!r}"
    return commands


def run_example(app: Flask, title: str) -> dict[str, str]:
    """Run the example's commands in order (a token on stdin for `lms add`); their output by
    command line."""
    outputs = {}
    for args in example_commands(title):
        result = feed(app, TOKEN + "\n", *args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        outputs[" ".join(args)] = result.stdout
    return outputs


@pytest.fixture
def config(config: Config) -> Config:
    """As the README's examples start: no LMS_URL in the environment (the relay conftest's
    default names the simulated Moodle)."""
    return replace(config, lms_url=None, lms_token=None)


@pytest.fixture
def lms_sites() -> Iterator[dict[str, MoodleSim]]:
    """The sites the worked examples name, behind one `responses` mock."""
    sites = {
        "academy": MoodleSim(url="https://academy.example.com"),
        "partners": MoodleSim(url="https://partners.example.com"),
        "school": MoodleSim(url="https://moodle.school.example"),
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for site in sites.values():
            site.install(mock)
        yield sites


def in_step(app: Flask) -> dict[str, tuple[int, int] | None]:
    """Per target: (changes waiting, dead letters), or None for the unset `default` target
    (no LMS_URL here: the relay is opt-in, so nothing is queued for it or sent)."""
    shown = json.loads(run(app, "relay", "status", "--format", "json").stdout)
    return {
        t["target"]: None if t["lms"] is None else (t["backlog"], t["failures"])
        for t in shown["targets"]
    }


def accounts(site: MoodleSim) -> dict[str, bool]:
    """username → suspended."""
    return {name: user["suspended"] for name, user in site.state()["users"].items()}


def times(site: MoodleSim) -> dict[tuple[str, int], tuple[int, int]]:
    """(username, course) → (timestart, timeend) of each user enrolment."""
    names = {uid: u["username"] for uid, u in site.users.items()}
    return {
        (names[user], course): (start, end)
        for (user, course), (start, end, _status) in site.enrolment_times.items()
    }


def test_the_hub_example(app: Flask, scim: Any, lms_sites: dict[str, MoodleSim]) -> None:
    ann, bob, pia = (create_user(scim, f"{n}@hub.example") for n in ("ann", "bob", "pia"))
    create_group(scim, "Staff", ann["id"], bob["id"])
    portal = create_group(scim, "Partner portal", ann["id"], pia["id"])
    run_example(app, HUB)
    assert in_step(app) == {"default": None, "academy": (0, 0), "partners": (0, 0)}
    academy, partners = lms_sites["academy"], lms_sites["partners"]
    assert accounts(academy) == {ANN: False, BOB: False, PIA: False}
    assert accounts(partners) == {ANN: False, PIA: False}  # bob: not in the audience
    assert academy.state()["cohorts"] == {"Partner portal": [ANN, PIA], "Staff": [ANN, BOB]}
    assert partners.state()["cohorts"] == {"Partner portal": [ANN, PIA]}  # its only cohort
    assert partners.count("core_cohort_create_cohorts") == 1
    assert academy.state()["enrolments"] == [(ANN, 101, "student"), (BOB, 101, "student")]
    assert partners.state()["enrolments"] == [(ANN, 102, "student"), (PIA, 102, "student")]
    assert academy.course_list() == partners.course_list() == []
    assert lms_sites["school"].calls == []

    # ann leaves the audience: suspended on partners only, never deleted.
    leave(scim, portal["id"], ann["id"])
    run(app, "relay", "run", "--once")
    assert accounts(partners) == {ANN: True, PIA: False}
    assert partners.state()["cohorts"] == {"Partner portal": [PIA]}
    assert partners.state()["enrolments"] == [(PIA, 102, "student")]
    assert accounts(academy) == {ANN: False, BOB: False, PIA: False}
    assert academy.state()["cohorts"] == {"Partner portal": [PIA], "Staff": [ANN, BOB]}
    assert academy.state()["enrolments"] == [(ANN, 101, "student"), (BOB, 101, "student")]
    assert academy.count("core_user_delete_users") == partners.count("core_user_delete_users") == 0
    assert in_step(app) == {"default": None, "academy": (0, 0), "partners": (0, 0)}


def test_the_school_example(
    app: Flask, scim: Any, lms_sites: dict[str, MoodleSim], monkeypatch: pytest.MonkeyPatch
) -> None:
    school = lms_sites["school"]
    school.add_user("tina.t", "tina@school.example", firstname="T.")  # made by the school
    people = {
        name: create_user(scim, f"{name}@school.example", userType=user_type)
        for name, user_type in [
            ("sam", "student"),
            ("sue", "student"),
            ("sid", "student"),
            ("tina", "teacher"),
            ("tom", "teacher"),
            ("pam", "parent"),
        ]
    }

    def ids(*names: str) -> list[str]:
        return [people[n]["id"] for n in names]

    physics = create_group(scim, "Physics 7B", *ids("sam", "sue"), externalId="7")
    maths = create_group(scim, "Maths 8A", *ids("sid"), externalId="8")
    create_group(scim, "Physics 7B teachers", *ids("tina", "tom"))
    outputs = run_example(app, SCHOOL)
    assert in_step(app) == {"default": None, "school": (0, 0)}

    assert school.category_paths() == ["Category 1", "School", "School/Year 7", "School/Year 8"]
    assert school.course_list() == [
        ("Maths 8A", "Maths 8A, year 8", "School/Year 8", f"lms-scim:{maths['id']}"),
        ("Physics 7B", "Physics 7B, year 7", "School/Year 7", f"lms-scim:{physics['id']}"),
    ]
    by_name = {c["shortname"]: cid for cid, c in school.course_records.items() if cid > 1000}
    assert by_name == {"Physics 7B": 1001, "Maths 8A": 1002}
    assert "Physics 7B  school" in outputs["courses list"]
    assert outputs["courses list"].split("\n")[1].split()[-1] == "1001"
    assert accounts(school) == {SAM: False, SID: False, SUE: False, "tina.t": False}
    tina_lms = next(u for u in school.users.values() if u["username"] == "tina.t")
    assert tina_lms["firstname"] == "Alice"  # update: her names are pushed
    assert school.state()["cohorts"] == {
        "Maths 8A": [SID],
        "Physics 7B": [SAM, SUE],
        "Physics 7B teachers": ["tina.t"],
    }
    assert school.state()["enrolments"] == [
        (SAM, 1001, "student"),
        (SID, 1002, "student"),
        (SUE, 1001, "student"),
        ("tina.t", 1001, "editingteacher"),  # role id 3
    ]
    assert times(school) == {
        (SAM, 1001): (T_START, T_END),
        (SUE, 1001): (T_START, T_END),
        (SID, 1002): (T_START, T_END),
        ("tina.t", 1001): (T_START, 0),
    }
    # The actions per type are the issue's: students all three, teachers update and deactivate
    # (matched, never created), parents none.
    shown = json.loads(run(app, "lms", "show", "school", "--format", "json").stdout)
    assert shown["actions"] == {
        "parent": [],
        "student": ["create", "update", "deactivate"],
        "teacher": ["update", "deactivate"],
    }
    created = [
        user["email"]
        for function, params in school.calls
        if function == "core_user_create_users"
        for user in params["users"]
    ]
    assert sorted(created) == [SAM, SID, SUE]  # never tom (a teacher), never pam (a parent)
    status = next(out for line, out in outputs.items() if line.startswith("users status"))
    assert (
        "LMS school:    actions update, deactivate; not created: userType teacher: create not "
        "allowed on target school; no account matched by email"
    ) in status
    for name in ("academy", "partners"):
        assert lms_sites[name].calls == []

    # sam and tina are deactivated: both suspended (teachers have `deactivate`), never deleted;
    # tom still has no account.
    set_active(scim, people["sam"]["id"], False)
    set_active(scim, people["tina"]["id"], False)
    run(app, "relay", "run", "--once")
    assert accounts(school) == {SAM: True, SID: False, SUE: False, "tina.t": True}
    assert len(school.state()["enrolments"]) == 4  # a deactivated user keeps them
    assert school.count("core_user_delete_users") == 0
    assert in_step(app) == {"default": None, "school": (0, 0)}

    # The end date passes here (the store's clock a day after it): nothing is sent, as Moodle
    # applies timeend itself; tina's enrolment has none.
    calls = len(school.calls)
    StoreClock(monkeypatch).advance(seconds=T_END + 86_400 - time.time())
    assert utcnow().timestamp() > T_END
    run(app, "relay", "run", "--once")
    assert len(school.calls) == calls
    assert times(school)[("tina.t", 1001)] == (T_START, 0)
    assert accounts(school) == {SAM: True, SID: False, SUE: False, "tina.t": True}

    # The school makes tom's account: his next change matches it (never creates one).
    school.add_user("tom.t", "tom@school.example")
    created = school.count("core_user_create_users")
    patch_ok(
        scim, f"/Users/{people['tom']['id']}", {"op": "replace", "path": "title", "value": "Dr"}
    )
    run(app, "relay", "run", "--once")
    assert school.count("core_user_create_users") == created
    # The README's table "at the end".
    assert accounts(school) == {SAM: True, SID: False, SUE: False, "tina.t": True, "tom.t": False}
    assert school.state()["cohorts"] == {
        "Maths 8A": [SID],
        "Physics 7B": [SAM, SUE],
        "Physics 7B teachers": ["tina.t", "tom.t"],
    }
    assert school.state()["enrolments"] == [
        (SAM, 1001, "student"),
        (SID, 1002, "student"),
        (SUE, 1001, "student"),
        ("tina.t", 1001, "editingteacher"),
        ("tom.t", 1001, "editingteacher"),
    ]
    assert times(school)[("tom.t", 1001)] == (T_START, 0)
    assert in_step(app) == {"default": None, "school": (0, 0)}
