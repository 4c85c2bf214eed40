# Set-up, build, run and test. `make dev` and `make test` install whatever
# is missing first, and skip what is already present at the right version.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PORT ?= 8787
CARGO_BIN := $(HOME)/.cargo/bin
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"$$/\1/p}' Cargo.lock)
WORKER_BUILD_VERSION := 0.8.7

# worker-build downloads these tools unless told where local copies are.
export WASM_BINDGEN_BIN := $(CARGO_BIN)/wasm-bindgen
export ESBUILD_BIN := $(CURDIR)/node_modules/.bin/esbuild
export WASM_OPT_BIN := $(CURDIR)/node_modules/.bin/wasm-opt
export WRANGLER_SEND_METRICS := false
export PATH := $(CARGO_BIN):$(PATH)

.PHONY: help setup dev dev-secret build worker test test-native test-interop rust-tools node-tools python-tools mosquitto clean

help:
	@echo "make dev    install what is missing, build, run the broker on ws://127.0.0.1:$(PORT)/mqtt"
	@echo "make test   install what is missing and run every test"
	@echo "make build  build the Worker into edge/build"

setup: rust-tools node-tools python-tools mosquitto

rust-tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
		|| rustup target add wasm32-unknown-unknown
	@if ! wasm-bindgen --version 2>/dev/null | grep -Eq "(^| )$(WASM_BINDGEN_VERSION)$$"; then \
		echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (about 5 minutes)"; \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi
	@if ! worker-build --version 2>/dev/null | grep -Eq "(^| )$(WORKER_BUILD_VERSION)$$"; then \
		echo "installing worker-build $(WORKER_BUILD_VERSION) (about 4 minutes)"; \
		cargo install worker-build --version $(WORKER_BUILD_VERSION) --locked; \
	fi

# npm ci runs only when package-lock.json changed since the last install.
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

node-tools: node_modules/.package-lock.json
	@npx --no-install wrangler --version >/dev/null

python-tools:
	@python3 -c 'import paho.mqtt' 2>/dev/null \
		|| python3 -m pip install --quiet -r interop-tests/requirements.txt

# The reference broker of the side-by-side interop tests (Debian's 2.0.11).
mosquitto:
	@command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto; }

build: rust-tools node-tools worker

# The [build] command of wrangler.toml: compiles the Worker with the tools
# that `rust-tools` and `node-tools` installed, and installs nothing. It is a
# no-op while the build is newer than every source, because wrangler dev runs
# it again at start and whenever its file watcher fires.
WORKER_SOURCES := $(shell find codec/src broker/src auth/src edge/src -name '*.rs' 2>/dev/null) \
	Cargo.toml Cargo.lock $(wildcard */Cargo.toml)

worker: edge/build/worker/shim.mjs

edge/build/worker/shim.mjs: $(WORKER_SOURCES)
	cd edge && worker-build --release
	@touch $@

# Local development allows anonymous clients, and keeps a random HMAC secret
# in .dev-secret (for `mint-token --secret-file`) and .dev.vars (which
# wrangler dev reads as secrets).
dev: build dev-secret
	npx --no-install wrangler dev --ip 127.0.0.1 --port $(PORT) --show-interactive-dev-session=false \
		--var AUTH_ANONYMOUS:true

dev-secret:
	@test -s .dev-secret || od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > .dev-secret
	@grep -qs '^AUTH_HMAC_SECRET=' .dev.vars || echo "AUTH_HMAC_SECRET=$$(cat .dev-secret)" >> .dev.vars
	@grep -qs '^ADMIN_TOKEN=' .dev.vars \
		|| echo "ADMIN_TOKEN=$$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars
	@grep -qs '^BRIDGE_WEBHOOK_SECRET=' .dev.vars \
		|| echo "BRIDGE_WEBHOOK_SECRET=$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars

test: setup test-native build test-interop

test-native:
	cargo test --workspace --exclude interop-tests

test-interop:
	cargo test -p interop-tests

clean:
	cargo clean
	rm -rf edge/build .wrangler

# Benchmarks (not part of `make test`): the broker, the relay baseline of
# bench/relay and mosquitto side by side, about 15 minutes. BENCH_QUICK=1
# runs a 2-minute smoke into target/bench-quick instead of docs/bench.
BENCH_OUT := $(if $(filter 1,$(BENCH_QUICK)),target/bench-quick,docs/bench)

.PHONY: bench
bench: build mosquitto
	cd bench/relay && worker-build --release
	cargo build --release -p loadgen
	ulimit -n $$(ulimit -Hn) && ./target/release/loadgen suite --out $(BENCH_OUT)
