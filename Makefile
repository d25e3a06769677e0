# AssetGen: `make run` starts the whole system, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_SRC := $(wildcard protos/assetgen/v1/*.proto)
PROTO_OUT := gen
PROTO_STAMP := $(PROTO_OUT)/.stamp

.PHONY: run test test-unit test-integration protos venv lint bench chaos deploy-render clean

run: $(STAMP) $(PROTO_STAMP)
	$(BIN)/assetgen-dev

test: lint
	$(BIN)/pytest -q

test-unit: $(STAMP) $(PROTO_STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) $(PROTO_STAMP)
	$(BIN)/pytest -q tests/integration

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# The editable install maps the generated package's folder, so it must exist first.
	mkdir -p $(PROTO_OUT)/assetgen/v1 && touch $(PROTO_OUT)/assetgen/__init__.py $(PROTO_OUT)/assetgen/v1/__init__.py
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[embedded,dev]'
	touch $@

# Regenerates every stub from scratch: messages, .pyi types, gRPC stubs and their typed .pyi.
protos: $(STAMP)
	rm -rf $(PROTO_OUT) && $(MAKE) --no-print-directory $(PROTO_STAMP)

$(PROTO_STAMP): $(PROTO_SRC) | $(STAMP)
	rm -rf $(PROTO_OUT)/assetgen && mkdir -p $(PROTO_OUT)
	$(BIN)/python -m grpc_tools.protoc \
	  -I protos -I "$$($(BIN)/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')" \
	  --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=$(PROTO_OUT) \
	  $(PROTO_SRC)
	touch $(PROTO_OUT)/assetgen/__init__.py $(PROTO_OUT)/assetgen/v1/__init__.py $(PROTO_OUT)/assetgen/py.typed
	touch $@

lint: $(STAMP) $(PROTO_STAMP)
	$(BIN)/ruff check lib services tools tests bench
	$(BIN)/ruff format --check lib services tools tests bench
	$(BIN)/mypy lib services tools bench

clean:
	rm -rf $(VENV) $(PROTO_OUT) .pytest_cache .mypy_cache .ruff_cache

# Prints the rendered manifests of one overlay (dev or production): make deploy-render OVERLAY=production
# kustomize comes with the pinned kubectl of the dev extra, so a fresh machine needs no other install.
deploy-render: OVERLAY ?= dev
deploy-render: $(STAMP)
	@$(BIN)/kubectl kustomize deploy/overlays/$(OVERLAY)

# Benchmarks against a real stack started for the purpose (bench/README.md). One of them, smaller:
# make bench ONLY=throughput N=200; any other option of `python -m bench` goes in ARGS="...".
bench: $(STAMP) $(PROTO_STAMP)
	$(BIN)/python -m bench $(ONLY) $(if $(N),--n $(N)) $(ARGS)

# The real system (every service its own process, NATS, S3, PostgreSQL) under provider faults and
# process kills, then every asset checked; prints one verdict line, writes bench/results/chaos-latest.json.
# Smaller: make chaos N=200; other options of `python -m assetgen_dev.chaos` go in ARGS="...".
chaos: $(STAMP) $(PROTO_STAMP)
	$(BIN)/python -m assetgen_dev.chaos $(if $(N),--n $(N)) $(ARGS)
