"""The README's and docs/*.md's commands run as written from a fresh clone: one convention
(`.venv/bin/lms-scim`), every command and subcommand the README names exists, and
`PORT=8600 make run` serves on 8600."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import click
import pytest

from app import create_app
from app.config import Config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
INVOCATION = re.compile(r"\.venv/bin/lms-scim((?: [a-z][a-z-]*)+)")


GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `lms-scim WORD` not preceded by a path (`.venv/bin/`), a URN (`urn:lms-scim:`) or a name.
BARE = re.compile(r"(?<![\w/.:-])lms-scim (?!…)[a-z]")
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def bare_commands(text: str, commands: set[str]) -> list[str]:
    """The commands of a Markdown text written without `.venv/bin/`: any line of a fenced code
    block, any inline code span, and any prose line that starts with `lms-scim COMMAND`."""
    code = [line for block in FENCE.findall(text) for line in block.splitlines()]
    prose = FENCE.sub("", text)
    spans = [m[2] for m in re.finditer(r"(`+)(.+?)\1", prose)]
    starts = [
        line
        for line in prose.splitlines()
        if (m := re.match(r"\s*(?:[-*>$]\s+)*lms-scim ([a-z][a-z-]*)", line)) and m[1] in commands
    ]
    return [text for text in [*code, *spans] if BARE.search(text)] + starts


def test_bare_commands_are_found() -> None:
    text = (
        "Run `lms-scim tokens list` or `urn:lms-scim:x` and `.venv/bin/lms-scim tokens list`.\n"
        "```sh\nexport X=1\nDATABASE_URL=sqlite:///x lms-scim db upgrade\n```\n"
        "   ```\n   .venv/bin/lms-scim db upgrade && lms-scim tokens bootstrap\n   ```\n"
        "lms-scim tokens create okta\nlms-scim returns a list.\n"
    )
    assert bare_commands(text, {"tokens", "db"}) == [
        "DATABASE_URL=sqlite:///x lms-scim db upgrade",
        "   .venv/bin/lms-scim db upgrade && lms-scim tokens bootstrap",
        "lms-scim tokens list",
        "lms-scim tokens create okta",
    ]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: str(path.relative_to(ROOT)))
def test_commands_follow_one_convention(guide: Path, tmp_path: Path) -> None:
    """README.md and every docs/*.md write `lms-scim` commands as they run from a fresh clone."""
    app = create_app(Config.from_env({}, database_url=f"sqlite:///{tmp_path}/x.db", testing=True))
    bare = bare_commands(guide.read_text(encoding="utf-8"), set(app.cli.commands))
    assert not bare, bare


def test_every_command_the_readme_names_exists(tmp_path: Path) -> None:
    app = create_app(Config.from_env({}, database_url=f"sqlite:///{tmp_path}/x.db", testing=True))
    commands = app.cli.commands
    named = {tuple(m.split()[:2]) for m in INVOCATION.findall(README)}
    assert named
    missing = []
    for words in named:
        group = commands.get(words[0])
        if group is None:
            missing.append(words[0])
        elif isinstance(group, click.Group) and len(words) > 1 and words[1] not in group.commands:
            missing.append(" ".join(words))
    assert not missing, missing


BINDS = [
    ({"PORT": "8600"}, "127.0.0.1:8600"),
    ({"HOST": "10.1.2.3", "PORT": "8601"}, "10.1.2.3:8601"),
]


@pytest.mark.parametrize(("env", "bind"), BINDS)
def test_make_run_takes_host_and_port_from_the_environment(env: dict[str, str], bind: str) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")} | env
    # -n: print the commands only; -W: as if installed, so nothing is built.
    dry = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "run"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"--bind {bind} " in dry.stdout, dry.stdout


def test_the_readme_links_the_guides_that_exist() -> None:
    """A new user reaches the IdP set-up and HTTPS guides from the README, and every local
    Markdown link the README makes points at a file of the checkout."""
    links = re.findall(r"\]\(((?!https?:|#)[^)#\s]+)", README)
    assert {"docs/idp-setup.md", "docs/https.md"} <= set(links)
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []


def test_the_readme_says_what_a_new_user_meets(tmp_path: Path) -> None:
    """Issue 19 §1's README fixes that are statements: the first token's name (the one `make
    run` creates), how to choose the port, that the relay is optional and where its page is, and
    no unexplained "design card"."""
    app = create_app(Config.from_env({}, database_url=f"sqlite:///{tmp_path}/x.db", testing=True))
    bootstrap = app.cli.commands["tokens"].commands["bootstrap"]  # type: ignore[attr-defined]
    (name,) = (p.default for p in bootstrap.params if p.name == "name")
    assert f"API token named **`{name}`**" in README
    assert "`PORT=8600 make run`" in README
    assert "**The LMS relay is optional.**" in README
    assert "`/admin/relay`" in README
    assert "design card" not in README.lower()
