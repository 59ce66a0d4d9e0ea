"""The README's commands run as written from a fresh clone: one convention (`.venv/bin/lms-scim`),
every command and subcommand it names exists, and `PORT=8600 make run` serves on 8600."""

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


def _shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_commands_in_code_blocks_follow_one_convention() -> None:
    bare = [
        line
        for line in _shell_lines()
        if re.search(r"(^|[\s;&|])lms-scim ", line) and ".venv/bin/lms-scim" not in line
    ]
    assert not bare, bare
    assert not re.search(r"(?<![\w/.-])`lms-scim (?!…)[a-z]", README), "bare `lms-scim …` in text"


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
