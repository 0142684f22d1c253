# a4lib: `make report` builds the submission, `make test` runs every check.
# Both create the virtual environment .venv and install the project into it when needed.
#
#   make report                  the full assignment run -> report/report.html, report/report.pdf
#   make report QUICK=1          a small run (about 30 s), same sections -> report/quick/
#                                (never replaces report/report.pdf, the submission)
#   make report CORPUS=path ETA=0.05 ...   the report's settings are make variables: the build maps
#                                each to its option in one place (report/build.py, MAKE_VARIABLES;
#                                `.venv/bin/python -m report.build --help` lists them)
#   make lab                     the notebooks in JupyterLab (LAB_ARGS=--no-browser and other
#                                jupyter-lab options pass on)
#   make clean                   build intermediates only (report/build, report/quick, figures,
#                                caches); never your runs or the submission:
#   make clean-runs              deletes runs/ (every run, yours too)
#   make clean-report            deletes report/report.html and report/report.pdf (the submission)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test bench report best lab clean clean-runs clean-report

venv: $(STAMP)

# VENV=$$CONDA_PREFIX: an activated conda environment (environment.yml) is used as it is
$(STAMP): pyproject.toml
	@if [ -d "$(VENV)/conda-meta" ]; then echo "using the conda environment $(VENV)"; else $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m a4lib bench

# the headline run (report/best.py): the configuration that did best in 15 minutes, into runs/best,
# beside the Kneser-Ney 8-gram on the same split (CORPUS= as for the report)
best: $(STAMP)
	$(PY) -m report.best $(if $(CORPUS),--corpus '$(CORPUS)')

# the variables given to make reach the build in its environment (make exports them); it reads
# those it knows (--make)
report: $(STAMP)
	$(PY) -m report.build --make

# JupyterLab comes with the notebooks extra ('.[dev]'); the kernel is this environment's Python.
lab: $(STAMP)
	JUPYTER_PATH="$(abspath $(VENV))/share/jupyter" JUPYTER_PLATFORM_DIRS=1 \
	  $(VENV)/bin/jupyter-lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean:
	rm -rf report/build report/quick figures/*.png .pytest_cache
	find a4lib report tests -name __pycache__ -type d -prune -exec rm -rf {} +

clean-runs:
	rm -rf runs

clean-report:
	rm -f report/report.html report/report.pdf
