# Two commands from a fresh clone: `make demo` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv demo test test-fast lint browser terminal slurm bench serve install uninstall server-stop clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## make demo: sample data, then every pipeline end to end on the embedded default.
demo: $(STAMP)
	PREFECT_HOME=$(CURDIR)/.prefect $(VENV)/bin/salvo demo --root demo

## make test: the whole suite (real Prefect API, real S3 endpoint, real Dask processes), on TEST_WORKERS pytest
## workers (each starts its own servers; a test file stays on one worker). Three on two cores: many tests wait
## on processes (leases, heartbeats, SLURM, timeouts), and a third worker fills those waits (16.6 min against
## 18.8 min with two, on the same idle 2-core machine).
TEST_WORKERS ?= 3
test: $(STAMP) lint browser terminal slurm
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

## make lint: ruff's checks and formatting (config in pyproject.toml, lines at most 120 characters).
lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

## A real headless browser for the report checks (Debian's chromium; installed once, as root in CI).
browser:
	@command -v chromium >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null; }

## A real single-node SLURM for the cluster tests (Debian's slurmctld, slurmd, slurm-client, munge; the tests
## start and stop the daemons themselves, on 127.0.0.1: see tests/slurm.py and docs/hpc.md).
slurm:
	@command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq slurmctld slurmd slurm-client munge >/dev/null; }

## A real terminal for the terminal-output checks (Debian's tmux; installed once, as root in CI).
terminal:
	@command -v tmux >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq tmux >/dev/null; }

## make test-fast: the pure tier (domain logic; no Prefect API) less its slow tests, on two workers: 34 s on an idle
## 2-core machine (47 s on one worker).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "pure and not slow" -p no:cacheprovider -n 2

## make bench: speed and memory against the real peers (GNU parallel, CDO) and each seed's own approach;
## writes benchmarks/RESULTS.md. The peers come from Debian's packages (parallel, cdo, nco).
## Every row issue 26 asks for (2,000 and 10,000 tiny items, P1 at 500 files) is in the default run (about 25 min);
## SALVO_BENCH_FULL=1 adds the slower variants (the seed's eager merge, a second merge pair, one item per task).
bench: $(STAMP)
	@command -v parallel >/dev/null && command -v cdo >/dev/null && command -v ncks >/dev/null || { \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get -o DPkg::Lock::Timeout=600 install -y -qq parallel cdo nco >/dev/null; }
	PREFECT_HOME=$(CURDIR)/.prefect $(PY) -m benchmarks.run_all

## make serve: Prefect server + blocks + work pool + deployments + a worker (UI on 127.0.0.1:4200).
serve: $(STAMP)
	PREFECT_HOME=$(CURDIR)/.prefect $(VENV)/bin/salvo serve

## make install: put salvo, pyddt-salvage, pyddt-merge and prefect on the PATH as symlinks into
## .venv/bin, in BINDIR (default ~/.local/bin; `make install BINDIR=/usr/local/bin` for everyone).
BINDIR ?= $(HOME)/.local/bin
INSTALLED := salvo pyddt-salvage pyddt-merge prefect
install: $(STAMP)
	mkdir -p $(BINDIR)
	for b in $(INSTALLED); do ln -sfn $(CURDIR)/$(VENV)/bin/$$b $(BINDIR)/$$b; done
	@echo "Linked $(INSTALLED) into $(BINDIR) (-> $(CURDIR)/$(VENV)/bin); remove them with: make uninstall BINDIR=$(BINDIR)"
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) echo "Note: $(BINDIR) is not on your PATH: add  export PATH=\"$(BINDIR):\$$PATH\"  to your shell profile";; esac

uninstall:
	for b in $(INSTALLED); do [ "$$(readlink $(BINDIR)/$$b)" = "$(CURDIR)/$(VENV)/bin/$$b" ] && rm -f $(BINDIR)/$$b || true; done

## make server-stop: stop the local Prefect server `make demo` left running in .prefect (see docs/deploy.md).
server-stop:
	-test -x $(VENV)/bin/salvo && PREFECT_HOME=$(CURDIR)/.prefect $(VENV)/bin/salvo server stop

clean: server-stop
	rm -rf demo .prefect benchmarks/.work
