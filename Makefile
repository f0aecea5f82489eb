# Two entry points for a fresh Debian machine with Python 3.11 (see README):
#   make demo   install the forwarder (runtime only), then run the daemon against local emulators
#   make test   install the forwarder with its test and lint tools and the Debian packages the
#               integration tests use (rsyslog, podman...), then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
DEMO_OUTPUT ?= demo-output
# DEMO_PRESETS=1 adds the Okta, GitHub and Google Workspace emulators and their presets
DEMO_PRESETS ?=
BIN     = $(VENV)/bin
APT_PACKAGES = rsyslog rsyslog-gnutls openssl systemd jq curl valgrind postgresql chromium
# tests/ops/test_container_image.py builds and runs the image with podman on a debootstrap base
CONTAINER_PACKAGES = podman runc conmon debootstrap uidmap slirp4netns fuse-overlayfs containernetworking-plugins
SAY = @printf '==> %s\n'

.PHONY: demo test venv runtime system-deps lint constraints clean

# Debian's python3 needs python3-venv for `-m venv`; install it when it is missing.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "==> installing python3-venv (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv; }
	$(SAY) "creating the virtualenv $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	$(SAY) "upgrading pip in $(VENV)"
	@$(BIN)/pip install -q --upgrade pip

# Two stamps: .runtime is the forwarder alone (what the demo needs), .installed adds the test
# and lint extras (pytest, moto, mypy, ruff, matplotlib...). Installing the extras installs the
# runtime too, so it refreshes both stamps; `make demo` then `make test` still adds the extras.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(SAY) "installing audit-forwarder and its runtime dependencies into $(VENV) (pip install -e .)"
	@$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(SAY) "installing audit-forwarder with its test and lint tools into $(VENV) (pip install -e '.[test]')"
	@$(BIN)/pip install -q -e '.[test]'
	@touch $(VENV)/.runtime $@

runtime: $(VENV)/.runtime
venv: $(VENV)/.installed

# The integration tests start a real rsyslog, podman...; install what is missing (root, or sudo).
system-deps:
	@missing=""; for p in $(APT_PACKAGES) $(CONTAINER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: runtime
	$(SAY) "running the demo: vendor emulators on 127.0.0.1, the daemon, output in $(DEMO_OUTPUT)/"
	@$(BIN)/audit-forwarder demo --output-dir $(DEMO_OUTPUT)$(if $(filter 1 yes true,$(DEMO_PRESETS)), --presets)

test: venv system-deps lint
	$(SAY) "running the test suite"
	$(BIN)/pytest -q -p no:cacheprovider

# Formatting, lint and types over forwarder, sinks and bench (pyproject's mypy packages); CI runs it first.
lint: venv
	$(SAY) "checking formatting (ruff format --check), lint (ruff check) and types (mypy --strict)"
	@$(BIN)/ruff format --check . && $(BIN)/ruff check . && $(BIN)/mypy

# Refresh constraints.txt (the exact versions the container image installs) from a fresh
# runtime-only install; then rebuild the image (pytest tests/ops/test_container_image.py).
constraints:
	$(SAY) "resolving the runtime dependencies in a scratch virtualenv"
	@rm -rf .constraints-venv && $(PYTHON) -m venv .constraints-venv
	@.constraints-venv/bin/pip install -q --upgrade pip && .constraints-venv/bin/pip install -q . 'setuptools>=77' wheel
	@{ sed -n '/^#/p' constraints.txt; .constraints-venv/bin/pip freeze --all --exclude-editable \
	   | grep -v -i -e '^audit-forwarder' -e '^pip==' | LC_ALL=C sort -f; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt && rm -rf .constraints-venv
	$(SAY) "constraints.txt updated: review with git diff"

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
