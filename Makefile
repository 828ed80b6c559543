# Two entry points: `make demo` and `make test`. Both create/refresh .venv and the system packages
# they need, idempotently: a second run only checks stamps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HEADCAST := $(VENV)/bin/headcast
STAMP := $(VENV)/.headcast-installed
APT_STAMP := $(VENV)/.apt-installed
# Host packages: Mesa EGL (surfaceless GL for the headless renderer and tests), mmdebstrap for the
# Debian 13 root that holds Monado on Debian 12 hosts.
APT_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglx-mesa0 libgles2 libopengl0 xvfb xauth ca-certificates
# Test-only: the browser tests drive Debian's headless Chromium through chromium-driver (the page of
# `render --web`, MP4 playback). Not needed by `make demo`.
TEST_APT_PACKAGES := chromium chromium-driver
TEST_APT_STAMP := $(VENV)/.apt-test-installed

.PHONY: all install demo test test-host test-xr xr-env clean

all: install

$(APT_STAMP): scripts/ensure_apt.sh Makefile
	@mkdir -p $(VENV)
	bash scripts/ensure_apt.sh $(APT_PACKAGES)
	@touch $@

$(STAMP): $(APT_STAMP) requirements.lock setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 required, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" "setuptools>=68" wheel
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps mediapipe==0.10.14
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP)

$(TEST_APT_STAMP): scripts/ensure_apt.sh Makefile $(STAMP)
	bash scripts/ensure_apt.sh $(TEST_APT_PACKAGES)
	@touch $@

demo: install
	$(HEADCAST) demo

# Test-only: the Khronos glTF validator (npm), which tests/test_gltf_export.py runs on a built mesh.glb.
GLTF_VALIDATOR := $(VENV)/node_modules/gltf-validator/package.json
$(GLTF_VALIDATOR): $(STAMP)
	npm install --prefix $(VENV) --no-audit --no-fund --silent gltf-validator@2.0.0-dev.3.10

# Test-only: three.js (npm), in which tests/test_gltf_threejs.py renders a built mesh.glb in Chromium.
THREEJS := $(VENV)/node_modules/three/package.json
$(THREEJS): $(GLTF_VALIDATOR)
	npm install --prefix $(VENV) --no-audit --no-fund --silent three@0.187.0

test: install $(TEST_APT_STAMP) $(GLTF_VALIDATOR) $(THREEJS)
	bash scripts/run_tests.sh

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
