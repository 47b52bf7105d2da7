# The two README commands: `make demo` (the full closed loop on the embedded default) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
RUN := . $(VENV)/bin/activate && . scripts/ros_env.sh &&
PYTEST_ARGS ?=

.PHONY: setup test demo bench docs clean stress

setup:            ## create/refresh the self-contained venv (idempotent)
	bash scripts/setup_env.sh

test: setup       ## the whole test suite
	$(RUN) python -m pytest $(PYTEST_ARGS)

demo: setup       ## simulated arm + cameras + tiny model + RunEpisode + recording, then a summary
	$(RUN) lingbot-va-demo

bench: setup      ## every benchmark; regenerates docs/benchmarks.md
	$(RUN) python benchmarks/run_all.py

docs: setup       ## regenerate docs/parameters.md from the parameter schemas
	$(RUN) python -m lingbot_va_ros.common.params_doc > docs/parameters.md

stress:           ## `make test` on fresh clones, 3 runs, one core kept busy (scripts/stress_suite.sh -h for options)
	bash scripts/stress_suite.sh -n $${RUNS:-3} --hog

clean:
	rm -rf build/ artifacts/
