# a4lib: `make report` builds the submission, `make test` runs every check.
# Both create the virtual environment .venv and install the project into it when needed.
#
#   make report                  the full assignment run -> report/report.html, report/report.pdf
#   make report QUICK=1          a small run (about 25 s), same sections -> report/quick/
#                                (never replaces report/report.pdf, the submission)
#   make report CORPUS=path ETA=0.05 M=100 SEQ_LENGTH=25 SIG=0.01 SEED=0 N_UPDATES=... N_EPOCHS=5
#   make report TRAIN_ARGS='--backend numpy --clip 1'   any other `a4lib train` flag for the main run
#   make report N_SEEDS=5        the main run from this many initial seeds (SEED, SEED + 1, ...; quick 2)
#   make report SCHEDULER=tcp://host:8786   every run on a Dask cluster (run folders on a shared filesystem)
#   make report OUT=dir          everything (HTML, PDF, figures, run, build files) under dir
#   make report PDF=0            the HTML only;  FORCE=1  redo the check, benchmarks, training and studies
#   make report BEYOND=0         without the part beyond the assignment; or one section of it off:
#                                BEYOND_BATCHES=0 BEYOND_HELDOUT=0 BEYOND_LSTM=0 BEYOND_SAMPLING=0
#                                BEYOND_OPTIMIZERS=0 BEYOND_TWEETS=0
#   make report TWEETS=path      the tweet corpus of the tweet section (default
#                                ../shared/data/condensed_2018.json when it exists; TWEETS=none: no tweets)
#   make lab                     the notebooks in JupyterLab (LAB_ARGS=--no-browser and other
#                                jupyter-lab options pass on)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The browser that prints the PDF: the first of these on PATH, or CHROMIUM=/path/to/chrome.
CHROMIUM ?= $(firstword $(foreach b,chromium chromium-browser google-chrome google-chrome-stable,$(shell command -v $(b) 2>/dev/null)))

# make variable -> report/build.py option (only those given are passed on)
REPORT_ARGS = $(if $(filter-out 0,$(QUICK)),--quick) \
	$(if $(CORPUS),--corpus '$(CORPUS)') \
	$(if $(M),--m $(M)) \
	$(if $(ETA),--eta $(ETA)) \
	$(if $(SEQ_LENGTH),--seq-length $(SEQ_LENGTH)) \
	$(if $(SIG),--sig $(SIG)) \
	$(if $(OPTIMIZER),--optimizer $(OPTIMIZER)) \
	$(if $(N_UPDATES),--updates $(N_UPDATES)) \
	$(if $(N_EPOCHS),--epochs $(N_EPOCHS)) \
	$(if $(SEED),--seed $(SEED)) \
	$(if $(N_SEEDS),--n-seeds $(N_SEEDS)) \
	$(if $(SCHEDULER),--scheduler '$(SCHEDULER)') \
	$(if $(SAMPLE_EVERY),--sample-every $(SAMPLE_EVERY)) \
	$(if $(SAMPLE_LENGTH),--sample-length $(SAMPLE_LENGTH)) \
	$(TRAIN_ARGS) \
	$(if $(OUT),--out '$(OUT)') \
	$(if $(RUN),--run '$(RUN)') \
	$(if $(filter-out 0,$(FORCE)),--force) \
	$(if $(BEYOND),--beyond '$(BEYOND)') \
	$(if $(BEYOND_BATCHES),--beyond-batches '$(BEYOND_BATCHES)') \
	$(if $(BEYOND_HELDOUT),--beyond-heldout '$(BEYOND_HELDOUT)') \
	$(if $(BEYOND_LSTM),--beyond-lstm '$(BEYOND_LSTM)') \
	$(if $(BEYOND_SAMPLING),--beyond-sampling '$(BEYOND_SAMPLING)') \
	$(if $(BEYOND_OPTIMIZERS),--beyond-optimizers '$(BEYOND_OPTIMIZERS)') \
	$(if $(BEYOND_TWEETS),--beyond-tweets '$(BEYOND_TWEETS)') \
	$(if $(TWEETS),--tweets '$(TWEETS)') \
	$(if $(filter 0,$(PDF)),--no-pdf,$(if $(CHROMIUM),--chromium '$(CHROMIUM)'))

.PHONY: venv test bench report best lab clean

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

report: $(STAMP)
	$(PY) report/build.py $(strip $(REPORT_ARGS))

# JupyterLab comes with the notebooks extra ('.[dev]'); the kernel is this environment's Python.
lab: $(STAMP)
	JUPYTER_PATH="$(abspath $(VENV))/share/jupyter" JUPYTER_PLATFORM_DIRS=1 \
	  $(VENV)/bin/jupyter-lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean:
	rm -rf runs figures/*.png report/report.html report/report.pdf report/build report/quick
