# Everything a fresh machine needs, from nothing: `make test` installs the Debian
# packages the tests use, creates the venv, builds (or finds) the lab's Kubernetes
# binaries and the two container images, then runs ruff, mypy and pytest.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := tmux openssh-server openssh-client git
# What `make images` builds with: a daemonless builder and Debian's rootfs maker.
IMAGE_APT_PACKAGES := buildah mmdebstrap
# gcc and libicu-dev: Dolt (real Gas Town's database) is a CGO build that links ICU.
APT_BUILD_PACKAGES := gcc libc6-dev libicu-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
DEV_ARGS ?=

.PHONY: test deps system-deps image-deps images venv lab node gastown-tools lint typecheck pytest reliability unit bench dev crd clean-lab

test: deps lab node gastown-tools images lint typecheck pytest

deps: system-deps venv

system-deps:
	@missing=""; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh-keygen >/dev/null || missing="$$missing openssh-client"; \
	command -v git >/dev/null || missing="$$missing git"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@missing=""; \
	command -v gcc >/dev/null || missing="$$missing gcc libc6-dev"; \
	dpkg -s libicu-dev >/dev/null 2>&1 || missing="$$missing libicu-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_BUILD_PACKAGES); \
	fi
	@command -v go >/dev/null || { echo "Go is needed to build the test lab (https://go.dev/dl)"; exit 1; }

image-deps:
	@missing=""; \
	for tool in $(IMAGE_APT_PACKAGES); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			-o DPkg::Lock::Timeout=300 $$missing </dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

venv: $(VENV)/.installed

# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
# and helm from the Go modules pinned in gastown/devcluster/modules (first run only).
lab: venv
	$(PY) -m gastown.devcluster.binaries

# The lab's real node (gastown/devcluster/node.py): containerd, runc, the CNI plugins and
# iproute2 from Debian (their services are never started: the node runs its own
# containerd), gcc for the pause image, and a kubelet built from the pinned module
# gastown/devcluster/node_module into ~/.cache/gastown/node/<version>.
NODE_APT_PACKAGES := containerd runc containernetworking-plugins iproute2 gcc libc6-dev
node: lab
	@missing=""; \
	[ -x /usr/bin/containerd ] || missing="$$missing containerd"; \
	[ -x /usr/sbin/runc ] || missing="$$missing runc"; \
	[ -x /usr/lib/cni/bridge ] || missing="$$missing containernetworking-plugins"; \
	[ -x /usr/sbin/ip ] || missing="$$missing iproute2"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing="$$missing libc6-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(NODE_APT_PACKAGES); \
	fi
	$(PY) -m gastown.devcluster.node_binaries

# The operator and agent images from Dockerfile and Dockerfile.agent, built with buildah
# on a Debian base made here, as OCI archives for containerd (cached per source hash
# under ~/.cache/gastown/images; see gastown/devcluster/images.py). buildah needs root;
# under sudo the cache stays the invoking user's, where the tests look for it.
images: image-deps venv
	$(SUDO) env XDG_CACHE_HOME="$${XDG_CACHE_HOME:-$$HOME/.cache}" nice $(PY) -m gastown.devcluster.images

# Builds the real Gas Town (gt, bd, dolt) from the pins in
# gastown/devcluster/gastown_tools/pins.json into ~/.cache/gastown/gastown-tools/<hash>/bin
# (first run only, ~8 min); the local-mode tests run against it.
gastown-tools: venv
	nice -n 5 $(PY) -m gastown.devcluster.gastown_tools

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

# Everything but the fault and security suite, then that suite verbosely, so its results
# (one line per fault, see RELIABILITY.md) stand out in the CI log.
pytest: venv
	$(VENV)/bin/pytest -m "not reliability" $(PYTEST_ARGS)
	$(VENV)/bin/pytest -m reliability -v $(PYTEST_ARGS)

reliability: venv
	$(VENV)/bin/pytest -m reliability -v $(PYTEST_ARGS)

unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

bench: deps lab
	$(PY) -m bench

dev: deps lab
	$(VENV)/bin/gastown-operator dev $(DEV_ARGS)

crd: venv
	$(PY) -m gastown.api.crd

clean-lab:
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/gastown/lab $${XDG_CACHE_HOME:-$$HOME/.cache}/gastown/gastown-tools
