# Two entry points matter (README.md): `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FIXTURES := build/fixtures
# docker-registry, skopeo: the registry the image tests pull from and push to, and a second client
# to cross-check ours. docker.io: Debian's dockerd, the peer for save/load tests and benchmarks,
# only ever started privately by a test (its own root, socket and containerd; no networking).
# tini: its static build is the init of `docker run --init` (/sbin/docker-init).
# Recommends stay out (apparmor, needrestart would arrive with docker.io).
APT_PACKAGES := busybox-static runc crun containerd libseccomp2 iproute2 nftables util-linux docker-registry skopeo docker.io tini
BENCH_PACKAGES := debootstrap

.PHONY: run test test-dockerpy test-slow bench setup apt venv bytecode fixtures proto clean

# dockyardd on a private socket under build/run, the bundled busybox image loaded, a container
# run from it with the docker CLI, both daemons stopped again.
run: setup
	tools/run-demo.sh

# The main suite, then docker-py's own integration suite against a private dockyardd
# (tests/dockerpy/run.py; failures other than those listed with a reason fail the run).
test: setup
	$(PY) -m pytest -q
	$(PY) tests/dockerpy/run.py

test-dockerpy: setup
	$(PY) tests/dockerpy/run.py

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(MAKE) apt APT_PACKAGES="$(BENCH_PACKAGES)"
	$(PY) bench/runtime.py
	$(PY) bench/shim_memory.py
	$(PY) bench/task_start.py
	$(PY) bench/pull.py
	$(PY) bench/engine.py
	$(PY) bench/network.py

setup: apt venv bytecode fixtures

# apt only when something is missing, so `make test` stays quick on a prepared machine.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Every runtime command is a fresh interpreter: ship bytecode (the environment may forbid
# Python from writing it on its own).
bytecode: venv
	$(PY) -m compileall -q src

fixtures: $(FIXTURES)/.built

$(FIXTURES)/.built: tests/fixtures/busybox.py $(VENV)/.installed
	$(PY) tests/fixtures/busybox.py $(FIXTURES)
	touch $@

PROTOS = $(shell find src/dockyard/api -name '*.proto' | LC_ALL=C sort)

# The gRPC modules under src/dockyard/api are generated and committed: after editing a .proto,
# run `make proto`. `-I src` names every file dockyard/api/…, so the generated code imports
# `dockyard.api…` as it stands; grpcio-tools is pinned (the `proto` extra) so output is stable.
proto: venv
	$(PY) -m pip install -q -e '.[proto]'
	find src/dockyard/api -name '*_pb2*.py' -delete -o -name '*_pb2*.pyi' -delete
	$(PY) -m grpc_tools.protoc -I src --python_out=src --pyi_out=src $(PROTOS)
	$(PY) -m grpc_tools.protoc -I src --grpc_python_out=src $$(grep -l '^service ' $(PROTOS))
	for d in $$(dirname $(PROTOS) | sort -u); do \
		while [ "$$d" != src/dockyard ]; do [ -e $$d/__init__.py ] || touch $$d/__init__.py; d=$$(dirname $$d); done; \
	done

clean:
	rm -rf build
