"""The set-up files agree: environment.yml (conda) holds the packages of pyproject.toml (the
package and its dev extra), the CI script runs the README's test command, and what the README's
examples write is ignored by git."""
from __future__ import annotations

import os
import re
import shutil
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
    """Every requirement once: from conda-forge, or in environment.yml's pip section (PyPI only)."""
    wanted, requires_python = pyproject_requirements()
    conda, pip, doc = environment_yml()
    python = {r for r in conda if r.startswith("python")}
    assert python == {"python" + requires_python.replace(" ", "")}
    from_pip = {norm(p) for p in pip if not p.replace(" ", "").startswith(("-e", "--editable"))}
    listed = (conda - python - {"pip"}) | from_pip
    assert not (conda & from_pip)
    assert listed == wanted, (
        f"only in pyproject.toml: {sorted(wanted - listed)}; only in environment.yml: {sorted(listed - wanted)}")


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
    for target in ("venv", "test", "bench", "report", "lab", "clean", "clean-runs", "clean-report"):
        assert re.search(rf"^{target}:", text, re.M), target


def readme_writes() -> list[Path]:
    """Every file or folder the README's shell examples write: papermill's output notebook, a
    notebook's ``-p run_dir``, ``--out`` of a4lib's commands (each resolved from where its line runs)."""
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    written = []
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            sub = re.match(r"\(cd (\S+) && (.*)\)\s*(#.*)?$", line.strip())
            cwd, command = (ROOT / sub.group(1), sub.group(2)) if sub else (ROOT, line)
            try:
                words = shlex.split(command, comments=True)
            except ValueError:
                continue
            runner = words[:3] == ["python", "-m", "a4lib.notebook"] or (words and words[0].endswith("papermill"))
            rest = words[3:] if words[:1] == ["python"] else words[1:]
            if runner:
                positional, k = [], 0
                while k < len(rest):
                    if rest[k] in ("-p", "--parameter"):
                        if rest[k + 1] == "run_dir":
                            written.append(cwd / rest[k + 2])
                        k += 3
                    else:
                        positional.append(rest[k])
                        k += 1
                written.append(cwd / positional[1])
            elif "--out" in words and any(w in ("a4lib", "ngram", "train", "sweep") for w in words[:3]):
                written.append(cwd / words[words.index("--out") + 1])
    return written


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="not a git checkout")
def test_what_the_readme_examples_write_is_ignored_by_git():
    """git status stays clean after the README's examples (issue 18 item 4)."""
    import subprocess

    written = readme_writes()
    assert len(written) >= 4  # the notebooks' examples and the command line's
    for path in written:
        rel = os.path.relpath(path.resolve(), ROOT)
        assert not rel.startswith(".."), path
        r = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=ROOT)
        assert r.returncode == 0, f"{rel} (written by a README example) is not ignored by git"
