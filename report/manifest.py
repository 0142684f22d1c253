"""What a build made, as the report's notebooks open it: ``BUILD/manifest.json``.

The build (``report.build``) writes it last, after every run and check; the notebooks read it with
``load`` (a build folder) or ``latest`` (the newer of the project's full and quick builds, which is
what JupyterLab opens by default). One structure, written and read by this module.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from a4lib.checkpoint import read_json, write_json

from .studies import Plan

MANIFEST = "manifest.json"
#: the project's build folders (without OUT=): the full build and the quick one
BUILD_FOLDERS = (Path("report") / "build" / "full", Path("report") / "build" / "quick")


class NoBuild(FileNotFoundError):
    """No build where one was looked for; one line in a notebook, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


@dataclass(frozen=True)
class Manifest:
    """One build: its settings as the notebooks need them and where its results are."""

    build: Path  # the build folder, holding this manifest
    quick: bool
    made: str  # when the build finished (UTC, ISO 8601)
    command: str  # the make command that repeats the build
    seeds: dict[int, Path]  # the main run from several seeds: seed -> run directory
    gradcheck: Path  # a4lib gradcheck --json
    bench: Path  # a4lib bench --json
    figures: Path
    seed: int  # seeds the passages the notebooks sample
    passage_length: int
    samples_until: int | None  # the samples shown: up to this update (None: all)
    workers: int  # local worker processes of the sweep engine
    scheduler: str | None  # the Dask cluster the runs went to, if any
    plan: Plan | None  # the studies beyond the assignment (None: none asked for)
    scaling: Path | None  # a4lib bench --scaling --json, for the mini-batch study

    @property
    def kind(self) -> str:
        return "quick" if self.quick else "full"

    def main_run(self) -> Path:
        """The report's main run: the best seed's (``a4lib.results.analysis.main_run``)."""
        from a4lib.results.analysis import main_run

        return main_run(self.seeds)

    def save(self) -> Path:
        path = self.build / MANIFEST
        write_json(path, {
            "quick": self.quick, "made": self.made, "command": self.command,
            "seeds": {str(k): str(v) for k, v in self.seeds.items()}, "gradcheck": str(self.gradcheck),
            "bench": str(self.bench), "figures": str(self.figures), "seed": self.seed,
            "passage_length": self.passage_length, "samples_until": self.samples_until, "workers": self.workers,
            "scheduler": self.scheduler, "plan": None if self.plan is None else self.plan.to_json(),
            "scaling": None if self.scaling is None else str(self.scaling)})
        return path


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load(build: str | Path) -> Manifest:
    """The manifest of the build folder ``build``; NoBuild when it has none."""
    build = Path(build)
    path = build / MANIFEST
    if not path.is_file():
        raise NoBuild(f"{build}: no build there (no {MANIFEST}): `make report` or `make report QUICK=1` "
                                f"makes one")
    d = read_json(path)
    return Manifest(build=build, quick=d["quick"], made=d["made"], command=d["command"],
                    seeds={int(k): Path(v) for k, v in d["seeds"].items()}, gradcheck=Path(d["gradcheck"]),
                    bench=Path(d["bench"]), figures=Path(d["figures"]), seed=d["seed"],
                    passage_length=d["passage_length"], samples_until=d["samples_until"], workers=d["workers"],
                    scheduler=d["scheduler"], plan=None if d["plan"] is None else Plan.from_json(d["plan"]),
                    scaling=None if d["scaling"] is None else Path(d["scaling"]))


def latest(root: str | Path | None = None) -> Manifest:
    """The newer of the project's full and quick builds (``root``: the project folder, default
    this checkout's); NoBuild when neither exists."""
    from a4lib.rundir import project_path

    folders = [Path(root) / f if root is not None else project_path(f) for f in BUILD_FOLDERS]
    made = [f for f in folders if (f / MANIFEST).is_file()]
    if not made:
        raise NoBuild("no report built yet: `make report` (or `make report QUICK=1`) builds one")
    return load(max(made, key=lambda f: (f / MANIFEST).stat().st_mtime))
