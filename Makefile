# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs
# (uv via pip, Python deps with uv, the dev chain's npm packages, Debian packages for tests)
# and is fast the second time: stamps skip work whose inputs did not change.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

# Debian packages the test suite starts for real: PostgreSQL (ledger), Prometheus, Pushgateway
# and Alertmanager (alerting), nginx and htpasswd (the proxy in front of Prefect).
TEST_DEBS := postgresql prometheus prometheus-pushgateway prometheus-alertmanager nginx apache2-utils

.PHONY: run test lint typecheck setup deps-python deps-node deps-system devnet-down clean contracts

# The demo keeps its Prefect state (local server database, blocks) beside the dev chain;
# MONITORING=1 also starts Prometheus, Pushgateway and Alertmanager on loopback.
run: setup .env
	@mkdir -p .devnet
	@echo "the JSON log of this run goes to .devnet/demo.log"
	PREFECT_HOME=$(CURDIR)/.devnet/prefect PREFECT_LOGGING_LEVEL=WARNING \
	  DEXPILOT_LOG_FILE=$(CURDIR)/.devnet/demo.log \
	  PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 \
	  $(BIN)/dexpilot demo --cycles $(or $(CYCLES),10) $(if $(MONITORING),--monitoring)

# dev only: .env.example holds anvil's public test key for the local dev chain.
.env:
	cp .env.example $@

test: setup deps-system lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

setup: deps-python deps-node

deps-python: $(VENV)/.synced
$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

deps-node: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps-system:
	@missing=""; for p in $(TEST_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The token-safety probe's build file is checked in (production has no compiler); a test fails
# when it no longer matches its source.
PROBE := dexpilot/chain/contracts/TokenProbe
contracts: deps-node
	NODE_PATH=node_modules node dexpilot/chain/contracts/compile.js $(PROBE).sol TokenProbe > $(PROBE).json.tmp
	mv $(PROBE).json.tmp $(PROBE).json

devnet-down: setup
	$(BIN)/dexpilot devnet down

clean: devnet-down
	rm -rf .devnet
