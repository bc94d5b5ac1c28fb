# The two commands a newcomer runs; both set up the virtualenv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: bench bench-full test setup lock

setup:
	@bash scripts/setup.sh

## make bench: set up, then run the mini suite end to end (results + PDF report)
bench: setup
	$(VENV)/bin/prt-bench run --suite mini

## make bench-full: every mini suite with a committed reference (mini, then the language studies:
## α/λ sweeps, IFEval, reward arithmetic), each compared with its reference (not timed cold as one run)
bench-full: setup
	for suite in mini mini-lm-alpha mini-lm-ifeval mini-merge; do $(VENV)/bin/prt-bench run --suite $$suite || exit 1; done

## make test: set up, then run the test suite
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

## make lock: re-resolve requirements/pins.txt + pyproject.toml into requirements/{cpu,gpu}.lock
lock: setup
	@bash scripts/lock.sh
