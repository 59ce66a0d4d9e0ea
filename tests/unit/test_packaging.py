"""The licence the package declares is the LICENSE file it ships, in the PEP 639 form setuptools
asks for (an SPDX string and `license-files`: the TOML table form prints a deprecation warning on
every install), with a setuptools new enough to read it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_licence_is_an_spdx_string_matching_the_license_file() -> None:
    project = PROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_the_build_backend_reads_pep_639() -> None:
    (requirement,) = (r for r in PROJECT["build-system"]["requires"] if r.startswith("setuptools"))
    minimum = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", requirement)
    assert minimum, requirement
    assert int(minimum[1]) >= 77


def test_the_installed_metadata_says_mit() -> None:
    meta = metadata.metadata("lms-scim")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
