# TrustChain: `make run` and `make test` set everything up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/default.toml
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench system-deps test-deps hsm-token clean

run: $(INSTALLED) hsm-token
	$(BIN)/trustchain --config $(CONFIG) run

test: $(INSTALLED) test-deps
	$(BIN)/pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(INSTALLED) system-deps
	$(BIN)/python bench/actors.py
	$(BIN)/python bench/issuance.py --no-ct
	$(BIN)/python bench/issuance.py
	$(BIN)/python bench/ctlog.py
	$(BIN)/python bench/vdf.py
	$(BIN)/python bench/trust.py
	$(BIN)/python bench/issuance.py --consensus
	$(BIN)/python bench/doq.py
	@$(call ensure,pebble:pebble,pebble)
	$(BIN)/python bench/acme.py

# System packages, installed with apt when we are root; otherwise the exact commands
# are printed and make stops. $(call ensure,COMMAND:PACKAGE ...,BREW FORMULAS) installs
# each PACKAGE whose COMMAND is missing.
define ensure
missing=""; \
for pair in $(1); do \
  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
done; \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
    echo "installing:$$missing"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
  else \
    echo "TrustChain needs:$$missing. Install, then run make again:"; \
    echo "  Debian/Ubuntu: sudo apt-get install$$missing"; \
    echo "  macOS:         brew install $(2)"; \
    exit 1; \
  fi; \
fi
endef

# Running: SoftHSMv2 (the default HSM), openssl, and Python's venv module (Debian
# ships it apart; looked for as a module, so its package is named here by hand).
system-deps:
	@$(call ensure,softhsm2-util:softhsm2 openssl:openssl,softhsm openssl)
	@$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 \
	  || { $(call ensure,no-such-command:python3-venv,python); }

# Testing, besides: the other three TLS stacks every chain is checked with (openssl is
# the fourth): GnuTLS (gnutls-bin: certtool, gnutls-cli; looked for as gnutls-cli, since
# macOS has an unrelated certtool), NSS (libnss3-tools: vfychain, tstclnt) and Go; and
# lego, the Go ACME client (certbot comes from PyPI with the test extras).
test-deps: system-deps
	@$(call ensure,gnutls-cli:gnutls-bin vfychain:libnss3-tools go:golang-go lego:lego,gnutls nss go lego)

# The .pth puts src/ (src/trustchain/* are symlinks to the four folders) on the venv's
# path, so editors and tools that read the venv's path but run no import hook see the package.
$(INSTALLED): setup.cfg pyproject.toml | system-deps
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "TrustChain needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,dev]'
	echo '$(CURDIR)/src' > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/trustchain-src.pth"
	touch $@

# A project-local SoftHSM token under var/hsm (PINs generated 0600); reused when present.
hsm-token: $(INSTALLED) system-deps
	$(BIN)/trustchain --config $(CONFIG) hsm init

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
