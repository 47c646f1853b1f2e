# CodeIntel front door. `make run` indexes a repository and answers a question on the embedded
# default; `make test` runs every test. Both install what they need first (`make deps`).
SHELL := /bin/bash
export CODEINTEL_CACHE ?= /var/cache/codeintel
export CARGO_TARGET_DIR ?= $(CODEINTEL_CACHE)/target
BIN := $(CARGO_TARGET_DIR)/release
REPO ?= .
NAME ?= codeintel
QUESTION ?= how does the answer service fuse dense and lexical results?
APT_PACKAGES := cmake g++ libopenblas-dev protobuf-compiler libprotobuf-dev redis-server pkg-config openssl
# The runtime image, and its base: codeintel-base:bookworm is debootstrapped here (make image-base);
# where Docker Hub is reachable, DOCKER_BASE=debian:bookworm-slim works as well.
IMAGE ?= codeintel:dev
DOCKER_BASE ?= codeintel-base:bookworm

.PHONY: help deps system-deps fetch build build-gpu run test fmt lint check bench clean-data \
	docker-deps image-base image test-deploy helm-check test-deps-s3 test-deps-mcp certs corpus-100k train-venv train-data train-rerank train-rerank-questions train-embed train-embed-mined train-embed-query train-questions train-embed-questions

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system-deps: ## install the Debian packages the build and tests need (cmake, BLAS, protoc, redis)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing npm"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

fetch: ## fetch and verify libduckdb.so and the model files into $(CODEINTEL_CACHE)
	@scripts/fetch-deps.sh

deps: system-deps fetch ## everything the build needs

build: deps ## release build of every binary
	cargo build --release --workspace

build-gpu: deps ## vector-svc and codeintel with GPU exact search (CUDA loaded at run time; no toolkit needed to build)
	cargo build --release -p vector-svc -p codeintel --features vector-svc/gpu,codeintel/gpu

run: build ## index $(REPO) as $(NAME), start the mesh, ask $(QUESTION), stop
	@scripts/demo.sh "$(BIN)" "$(REPO)" "$(NAME)" "$(QUESTION)"

test: deps test-deps-s3 test-deps-mcp ## all tests (unit, integration, end-to-end), release profile
	cargo build --release --workspace --bins
	cargo test --release --workspace --all-targets
	@# vector-svc's GPU code compiled and its CPU fallback tested (GPU-only tests are ignored here).
	@# Built with the whole workspace's features, so no dependency is rebuilt (a `-p vector-svc`
	@# build resolves features for vector-svc alone and recompiles FAISS, arrow and parquet).
	@out=$$(cargo test --release --workspace --features vector-svc/gpu --lib --no-run 2>&1); echo "$$out"; \
	  t=$$(echo "$$out" | sed -n 's/.*Executable unittests src\/lib.rs (\(.*vector_svc-[0-9a-f]*\)).*/\1/p'); \
	  test -x "$$t" || { echo "vector-svc's GPU test binary was not built"; exit 1; }; "$$t"
	@$(MAKE) --no-print-directory test-deploy

certs: ## a local CA and mesh certificates for TLS demos and tests, in certs/ (CERTS=dir to choose)
	@scripts/certs.sh "$(or $(CERTS),certs)"

fmt: ## format
	cargo fmt --all

lint: ## formatting and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo clippy --release --workspace --features vector-svc/gpu,codeintel/gpu --all-targets -- -D warnings

check: lint test ## what CI runs, and the lint

bench: build ## dev benchmark from outside: index, up, grpcurl, eval + score --strict
	@CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) ../shared/bench/check.sh

corpus-100k: ## fetch the pinned ~100K-chunk scale corpus (2 PyPI packages, 10 crates) into $(CODEINTEL_CACHE)/corpus-100k
	@scripts/corpus-100k.sh

TRAIN_VENV := $(CODEINTEL_CACHE)/venv-train
RERANK_STEPS ?= 4200

train-venv: $(TRAIN_VENV)/.installed ## the Python venv that mines and trains the retrieval models (issue 19; PyTorch, ~5.4 GB)

$(TRAIN_VENV)/.installed: scripts/train/requirements.txt
	python3 -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q -r scripts/train/requirements.txt
	touch $@

train-data: train-venv build ## mine the training set (scripts/train/sources.txt) into $(CODEINTEL_CACHE)/train: queries.jsonl, pairs.jsonl, MANIFEST.tsv
	TRAIN_PYTHON=$(TRAIN_VENV)/bin/python scripts/train/mine.sh $(CODEINTEL_CACHE)/train
	$(CARGO_TARGET_DIR)/release/codeintel train pairs $(CODEINTEL_CACHE)/train/queries.jsonl \
		--corpus $(CODEINTEL_CACHE)/train/corpus --out $(CODEINTEL_CACHE)/train/pairs.jsonl

train-rerank: train-venv ## train the local cross-encoder on $(CODEINTEL_CACHE)/train/pairs.jsonl into models/rerank/ (fixed seed, 2 threads; make train-data first)
	$(TRAIN_VENV)/bin/python scripts/train/rerank.py $(CODEINTEL_CACHE)/train/pairs.jsonl \
		$(CODEINTEL_CACHE)/models/splade-tiny models/rerank --steps $(RERANK_STEPS)

RERANK_QUESTIONS_STEPS ?= 600

train-rerank-questions: train-venv train-questions ## a reranker round from models/rerank with a quarter of every batch written questions, into $(CODEINTEL_CACHE)/train/rerank-questions (measured, not shipped: docs/training.md)
	$(TRAIN_VENV)/bin/python scripts/train/rerank.py $(CODEINTEL_CACHE)/train/pairs.jsonl \
		$(CODEINTEL_CACHE)/models/splade-tiny $(CODEINTEL_CACHE)/train/rerank-questions --steps $(RERANK_QUESTIONS_STEPS) \
		--init models/rerank --lr 1e-4 --questions-pairs $(CODEINTEL_CACHE)/train/questions-pairs.jsonl --questions-share 0.25

EMBED_STEPS ?= 700

train-embed: train-venv ## fine-tune the embedder (LoRA deltas) on $(CODEINTEL_CACHE)/train/pairs.jsonl into models/embed/ (fixed seed, 2 threads; make train-data first)
	$(TRAIN_VENV)/bin/python scripts/train/embed.py $(CODEINTEL_CACHE)/train/pairs.jsonl \
		$(CODEINTEL_CACHE)/models/all-MiniLM-L6-v2 models/embed --steps $(EMBED_STEPS) --bf16

EMBED_MINED_STEPS ?= 300

train-embed-mined: train-venv ## a second embedder round from models/embed: its own wrong top hits as hard negatives, a quarter of the queries as questions, into $(CODEINTEL_CACHE)/train/embed-mined (measured, not shipped: docs/training.md)
	$(TRAIN_VENV)/bin/python scripts/train/embed.py $(CODEINTEL_CACHE)/train/pairs.jsonl \
		$(CODEINTEL_CACHE)/models/all-MiniLM-L6-v2 $(CODEINTEL_CACHE)/train/embed-mined --steps $(EMBED_MINED_STEPS) \
		--bf16 --init models/embed --hard 0 --mine 1 --questions 0.25 --lr 1e-4

train-embed-query: train-venv ## a query tower for the base model's documents (embed.py --query-only, EMBED_STEPS) into $(CODEINTEL_CACHE)/train/embed-q (measured, not shipped: docs/training.md)
	$(TRAIN_VENV)/bin/python scripts/train/embed.py $(CODEINTEL_CACHE)/train/pairs.jsonl \
		$(CODEINTEL_CACHE)/models/all-MiniLM-L6-v2 $(CODEINTEL_CACHE)/train/embed-q --steps $(EMBED_STEPS) --bf16 \
		--query-only --skip-before

QUESTIONS_DIRS ?= scripts/train/questions

train-questions: build ## the written questions about the training packages ($(QUESTIONS_DIRS); add scripts/train/questions-next for the next round) as training examples: $(CODEINTEL_CACHE)/train/questions-pairs.jsonl (make train-data first)
	python3 scripts/train/questions.py $(CODEINTEL_CACHE)/train/corpus $(CODEINTEL_CACHE)/train/questions.jsonl $(QUESTIONS_DIRS)
	$(CARGO_TARGET_DIR)/release/codeintel train pairs $(CODEINTEL_CACHE)/train/questions.jsonl \
		--corpus $(CODEINTEL_CACHE)/train/corpus --out $(CODEINTEL_CACHE)/train/questions-pairs.jsonl

EMBED_QUESTIONS_STEPS ?= 300

train-embed-questions: train-venv train-questions ## an embedder round from models/embed with a quarter of every batch written questions, into $(CODEINTEL_CACHE)/train/embed-questions (the shipped deltas: make train-embed first, then this; docs/training.md)
	$(TRAIN_VENV)/bin/python scripts/train/embed.py $(CODEINTEL_CACHE)/train/pairs.jsonl \
		$(CODEINTEL_CACHE)/models/all-MiniLM-L6-v2 $(CODEINTEL_CACHE)/train/embed-questions \
		--steps $(EMBED_QUESTIONS_STEPS) --bf16 --init models/embed --lr 1e-4 \
		--questions-pairs $(CODEINTEL_CACHE)/train/questions-pairs.jsonl --questions-share 0.25

S3_VENV := $(CODEINTEL_CACHE)/venv-s3

test-deps-s3: $(S3_VENV)/.installed ## the S3-compatible server (moto, from PyPI) the object-store tests run on loopback

$(S3_VENV)/.installed: tests/e2e/requirements-s3.txt
	@test -x $(S3_VENV)/bin/python || python3 -m venv $(S3_VENV) || { \
	  echo "installing: python3-venv"; rm -rf $(S3_VENV); \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null && \
	  python3 -m venv $(S3_VENV); }
	$(S3_VENV)/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements-s3.txt
	@touch $@

MCP_VENV := $(CODEINTEL_CACHE)/venv-mcp

MCP_INSPECTOR := $(CODEINTEL_CACHE)/mcp-inspector

test-deps-mcp: $(MCP_VENV)/.installed $(MCP_INSPECTOR)/.installed ## the official MCP Python SDK (PyPI `mcp`) and the MCP Inspector's CLI (npm), the clients of the MCP e2e test

# Pinned by tests/e2e/mcp/inspector/package-lock.json (integrity hashes); 0.15.0 is the last
# release that runs on Node 20.
$(MCP_INSPECTOR)/.installed: tests/e2e/mcp/inspector/package.json tests/e2e/mcp/inspector/package-lock.json
	@command -v npm >/dev/null || { echo "installing: nodejs npm"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }
	mkdir -p $(MCP_INSPECTOR)
	cp tests/e2e/mcp/inspector/package.json tests/e2e/mcp/inspector/package-lock.json $(MCP_INSPECTOR)/
	cd $(MCP_INSPECTOR) && npm ci --silent --no-audit --no-fund
	@touch $@

$(MCP_VENV)/.installed: tests/e2e/requirements-mcp.txt
	@test -x $(MCP_VENV)/bin/python || python3 -m venv $(MCP_VENV) || { \
	  echo "installing: python3-venv"; rm -rf $(MCP_VENV); \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null && \
	  python3 -m venv $(MCP_VENV); }
	$(MCP_VENV)/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements-mcp.txt
	@touch $@

HELM_VENV := $(CODEINTEL_CACHE)/venv-deploy

helm-check: $(HELM_VENV)/.installed ## lint, render and schema-validate the Helm charts offline (deploy/helm/check.py)
	$(HELM_VENV)/bin/python deploy/helm/check.py

# The venv of helm-check: created if missing, reinstalled when deploy/helm/requirements.txt changes.
$(HELM_VENV)/.installed: deploy/helm/requirements.txt
	@test -x $(HELM_VENV)/bin/python || python3 -m venv $(HELM_VENV) || { \
	  echo "installing: python3-venv"; rm -rf $(HELM_VENV); \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null && \
	  python3 -m venv $(HELM_VENV); }
	$(HELM_VENV)/bin/python -m pip install -q --disable-pip-version-check -r deploy/helm/requirements.txt
	@touch $@

docker-deps: ## install a docker daemon (docker.io), debootstrap and the Compose v2 plugin, when missing
	@scripts/docker-deps.sh

image-base: docker-deps ## Debian bookworm base image codeintel-base:bookworm (debootstrap; rootfs tarball cached in $(CODEINTEL_CACHE)/docker)
	@scripts/with-dockerd.sh scripts/image-base.sh

image: build docker-deps ## runtime image $(IMAGE) from the release binaries (deploy/docker/Dockerfile, FROM $(DOCKER_BASE))
	@CODEINTEL_IMAGE=$(IMAGE) CODEINTEL_BASE_IMAGE=$(DOCKER_BASE) scripts/with-dockerd.sh scripts/image.sh "$(BIN)"

test-deploy: deps docker-deps helm-check ## the Helm charts checked offline, then the mesh in containers from outside: image, compose up, index, cited Answers, vector-svc down and back
	@CODEINTEL_IMAGE=$(IMAGE) CODEINTEL_BASE_IMAGE=$(DOCKER_BASE) scripts/test-deploy.sh "$(BIN)"
