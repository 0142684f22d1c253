"""The set-up files agree: environment.yml (conda) holds the packages of pyproject.toml (the
package and its dev extra), the CI script runs the README's test command."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def norm(req: str) -> str:
    """A requirement without spaces, its name lower-case with '-' for '_'."""
    req = req.replace(" ", "")
    m = re.match(r"([A-Za-z0-9_.\-]+)(.*)", req)
    return m.group(1).lower().replace("_", "-") + m.group(2)


def pyproject_requirements() -> tuple[set[str], str]:
    """The requirements of the package and of its dev extra (extras expanded), and requires-python."""
    project = load_toml(ROOT / "pyproject.toml")["project"]
    extras = project.get("optional-dependencies", {})
    name = project["name"]

    def expand(reqs):
        out = set()
        for r in reqs:
            m = re.fullmatch(rf"{re.escape(name)}\[(.*)\]", r.replace(" ", ""))
            if m:
                for extra in m.group(1).split(","):
                    out |= expand(extras[extra])
            else:
                out.add(norm(r))
        return out

    return expand(project["dependencies"]) | expand(extras.get("dev", [])), project["requires-python"]


def environment_yml() -> tuple[set[str], list[str], dict]:
    """The conda dependencies (strings), the pip ones, and the whole document."""
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    try:
        import yaml
        doc = yaml.safe_load(text)
    except ImportError:  # a small reader for this file's simple layout
        doc, deps, pip, section = {}, [], [], None
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            if not raw.startswith(" "):
                key, _, value = line.partition(":")
                section = key.strip()
                if value.strip():
                    doc[section] = value.strip()
                continue
            item = line.strip()
            if item.startswith("- ") and section == "dependencies":
                if item == "- pip:":
                    section = "pip"
                    continue
                (pip if section == "pip" and raw.startswith("      ") else deps).append(item[2:].strip())
            elif item.startswith("- ") and section == "pip":
                if raw.startswith("      "):
                    pip.append(item[2:].strip())
                else:
                    section = "dependencies"
                    deps.append(item[2:].strip())
        doc["dependencies"] = deps + ([{"pip": pip}] if pip else [])
    conda, pip = set(), []
    for d in doc["dependencies"]:
        if isinstance(d, dict):
            pip += d.get("pip", [])
        else:
            conda.add(norm(str(d)))
    return conda, pip, doc


def test_environment_yml_has_the_same_packages_as_pyproject():
    wanted, requires_python = pyproject_requirements()
    conda, pip, doc = environment_yml()
    python = {r for r in conda if r.startswith("python")}
    assert python == {"python" + requires_python.replace(" ", "")}
    assert conda - python - {"pip"} == wanted, (
        f"only in pyproject.toml: {sorted(wanted - conda)}; only in environment.yml: {sorted(conda - python - {'pip'} - wanted)}")


def test_environment_yml_installs_the_project():
    _, pip, doc = environment_yml()
    assert doc.get("name") == "a4lib"
    assert any(p.replace("--editable", "-e").replace(" ", "") == "-e." for p in pip)


def test_ci_runs_the_test_command():
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    assert "make test" in text and "apt-get update" in text and "chromium" in text and "poppler-utils" in text


def test_makefile_targets():
    text = (ROOT / "Makefile").read_text()
    for target in ("venv", "test", "bench", "report", "lab", "clean"):
        assert re.search(rf"^{target}:", text, re.M), target
    assert "CHROMIUM ?=" in text
