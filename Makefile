# Two entry points for a fresh Debian machine with Python 3.11 (see README):
#   make demo   set everything up, then run the daemon against local emulators
#   make test   set everything up, then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
APT_PACKAGES = rsyslog rsyslog-gnutls openssl systemd jq curl valgrind

.PHONY: demo test venv system-deps lint clean

# Debian's python3 needs python3-venv for `-m venv`; install it when it is missing.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The integration tests start a real rsyslog; install it when missing (root, or sudo).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: venv
	$(BIN)/audit-forwarder demo --output-dir demo-output

test: venv system-deps
	$(BIN)/pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check . && $(BIN)/mypy

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
