# webstack: `make up` runs the stack in containers, `make run` as local
# processes, `make test` runs every test. Each does its own set-up (the
# virtual environment from the lock files; for containers, the base image and
# the wheels). `make help` lists every target.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/services/src
export WEBSTACK_CONFIG ?= $(CURDIR)/config/stack.toml

# The load generator's own environment (locust must never share a process
# with a service), and the knobs of `make load` (empty: config/locust.conf).
LOADVENV ?= .venv-load
USERS ?=
SPAWN ?=
DURATION ?=
SCENARIO ?= mixed
WORKERS ?= 0
HOST ?=
LOAD_WORKERS = $(if $(filter-out 0,$(WORKERS)),$(WORKERS),2)

# Benchmark knobs (see README, "Benchmarks"): seconds of each wrk run,
# client aborts per proxy, and the client counts N of the lateness runs (N
# clients of a 2-s delay connecting over N/1000 s; empty: none).
BENCH_OUT ?= bench-results
BENCH_DURATION ?= 5
BENCH_ABORTS ?= 200
BENCH_ROUNDS ?= 3
BENCH_LATENESS ?= 2000,5000,9000
BENCH_INSTRUCTIONS ?= 3000

# Containers (see README, "Containers").
SUITE ?= bookworm
ARCH := $(shell uname -m)
WHEELS := build/wheels
SERVICE ?=
N ?= 1
TAIL ?= 100
# Prometheus (monitoring/; UI and query API on 127.0.0.1:9090, or
# WEBSTACK_PROMETHEUS_PUBLISH) is built and started with the stack;
# MONITORING=0 leaves it out (and removes it if it runs).
MONITORING ?= 1
ifneq ($(filter-out 0 1,$(MONITORING)),)
$(error MONITORING is 1 (Prometheus with the stack, the default) or 0 (without), not '$(MONITORING)')
endif
MONITORING_ON := $(filter 1,$(MONITORING))
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
             elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
export COMPOSE_PROJECT_NAME ?= webstack
export COMPOSE_DOCKER_CLI_BUILD := 1
export BUILDX_BUILDER := default
# pip must be told every manylinux tag up to the image's glibc (bookworm: 2.36),
# or it silently picks older releases of some packages.
PLATFORMS := $(foreach m,$(shell seq 5 36),--platform manylinux_2_$(m)_$(ARCH)) \
             --platform manylinux2014_$(ARCH) --platform manylinux2010_$(ARCH) \
             --platform manylinux1_$(ARCH)

# Signs Digest challenges, the same for every auth replica; made once, kept
# out of git.
DIGEST_KEY := config/auth/digest.key
# Signs the front's routing cookie (sticky routes), the same for every front
# worker and replica; made once, kept out of git.
ROUTE_KEY := config/front/route.key

# `make lock`: uv resolves for the images' Python and platform whatever the
# host is (any wheel of a locked release still installs: every one is
# hashed); UPGRADE=1 moves every pin to the newest release the inputs allow
# (otherwise the pins that still fit are kept).
LOCK_PYTHON ?= 3.11
LOCK_PLATFORM ?= x86_64-manylinux_2_36
UPGRADE ?=

.DEFAULT_GOAL := help
.PHONY: help venv venv-load lock load load-ui run test test-unit test-integration bench bench-instructions clean \
        docker-check wheels images up down ps logs restart scale user load-compose load-ui-compose

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: services/requirements.lock services/requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "webstack needs Python 3.11 or newer as $(PYTHON) (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "installing python3-venv with apt-get"; \
	      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; \
	    else echo "$(PYTHON) cannot make a virtual environment: install python3-venv"; exit 1; fi; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
	  -r services/requirements-dev.lock
	@touch $@

venv: $(VENV)/.installed ## Create .venv from the lock files

$(LOADVENV)/.installed: loadtest/requirements.lock $(VENV)/.installed
	rm -rf $(LOADVENV)
	$(PYTHON) -m venv $(LOADVENV)
	$(LOADVENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes \
	  -r loadtest/requirements.lock
	@touch $@

venv-load: $(LOADVENV)/.installed ## Create .venv-load (locust) from its lock file

# Each lock is made in a copy of itself under build/lock/ (uv keeps the pins it
# finds there that still fit), then given its header (what it is, what it was
# made from and the sha256 of those requirements, which
# services/tests/test_locks.py recomputes) and put in place only if it changed.
LOCK_COMPILE = $(VENV)/bin/uv pip compile --quiet --no-header --generate-hashes \
  --only-binary :all: --python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
  $(if $(UPGRADE),--upgrade)

define LOCK_STAMP
import hashlib, pathlib, re, sys, textwrap, tomllib
made, lock, source, group, what = sys.argv[1:]
if source.endswith(".toml"):
    toml = tomllib.loads(pathlib.Path(source).read_text())
    wanted = toml["project"]["dependencies"] + (toml["dependency-groups"][group] if group else [])
    part = "[project] dependencies" + (" and [dependency-groups] " + group if group else "")
else:
    wanted = [line.split("#")[0] for line in pathlib.Path(source).read_text().splitlines()]
    part = "requirements"
wanted = "\n".join(line.strip() for line in wanted if line.strip())
header = (" ".join(what.split()) + " Made by `make lock` (uv pip compile --generate-hashes,"
          " for CPython $(LOCK_PYTHON) on $(LOCK_PLATFORM)) from the " + part + " of " + source +
          ": never edit it by hand, change those and run `make lock`.")
header = re.sub("`[^`]*`", lambda m: m.group().replace(" ", "\0"), header)
text = "".join("# " + line.replace("\0", " ") + "\n" for line in textwrap.wrap(header, 78))
text += "# input-sha256: " + hashlib.sha256(wanted.encode()).hexdigest() + "\n"
text += pathlib.Path(made).read_text()
if not pathlib.Path(lock).exists() or pathlib.Path(lock).read_text() != text:
    pathlib.Path(lock).write_text(text)
    print("wrote", lock)
endef
export LOCK_STAMP

lock: venv ## Re-resolve the lock files (with hashes) from their inputs; UPGRADE=1: newest releases
	@mkdir -p build/lock/services build/lock/loadtest
	cp services/requirements.lock build/lock/services/requirements.lock
	$(LOCK_COMPILE) services/pyproject.toml -o build/lock/services/requirements.lock
	@$(PY) -c "$$LOCK_STAMP" build/lock/services/requirements.lock services/requirements.lock \
	  services/pyproject.toml "" "Exact versions, with hashes, of everything the services \
	  run on: the image installs these wheels (build/wheels) with --require-hashes."
	cp services/requirements-dev.lock build/lock/services/requirements-dev.lock
	$(LOCK_COMPILE) services/pyproject.toml --group services/pyproject.toml:dev \
	  -c services/requirements.lock -o build/lock/services/requirements-dev.lock
	@$(PY) -c "$$LOCK_STAMP" build/lock/services/requirements-dev.lock services/requirements-dev.lock \
	  services/pyproject.toml dev "The services' lock (the same pins) plus the test runner \
	  and the lock tool: .venv, never an image."
	cp loadtest/requirements.lock build/lock/loadtest/requirements.lock
	$(LOCK_COMPILE) loadtest/requirements.in -o build/lock/loadtest/requirements.lock
	@$(PY) -c "$$LOCK_STAMP" build/lock/loadtest/requirements.lock loadtest/requirements.lock \
	  loadtest/requirements.in "" "The load generator's own environment (.venv-load, the \
	  locust image): locust must never share a process with a Twisted service (importing \
	  it patches the reactor's epoll away)."

LOAD_ARGS = $(if $(HOST),--host $(HOST)) $(if $(USERS),--users $(USERS)) \
            $(if $(SPAWN),--spawn-rate $(SPAWN)) $(if $(DURATION),--duration $(DURATION)) \
            --scenario $(SCENARIO) --workers $(WORKERS)

load: venv-load ## Headless load run against the stack: USERS= SPAWN= DURATION= SCENARIO= WORKERS= HOST=
	$(LOADVENV)/bin/python loadtest/run.py $(LOAD_ARGS)

load-ui: venv-load ## locust's web UI on http://127.0.0.1:8089 against the stack
	$(LOADVENV)/bin/python loadtest/run.py --ui $(LOAD_ARGS)

$(DIGEST_KEY):
	@$(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > $@
	@echo "made $@ (the Digest key every auth replica shares)"

$(ROUTE_KEY):
	@mkdir -p $(dir $@)
	@$(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > $@.tmp && mv $@.tmp $@
	@echo "made $@ (the routing cookie's key every front shares)"

user: venv ## Add a user or change a password: make user NAME=carol [PASSWORD=...]
	@test -n "$(NAME)" || { echo "usage: make user NAME=name (the password is asked for, or taken from PASSWORD)"; exit 2; }
	$(PY) -m webstack.auth.users set $(NAME)

run: venv $(DIGEST_KEY) $(ROUTE_KEY) ## Run the whole stack as local processes (front on 127.0.0.1:8080)
	$(PY) -m webstack.localstack

test: venv venv-load ## Run every test (unit, loopback, load smoke, containers)
	$(PY) -m pytest

test-unit: venv ## Only the in-memory tests
	$(PY) -m pytest -m "not integration and not compose"

test-integration: venv venv-load ## Only the tests over real sockets and processes
	$(PY) -m pytest -m integration

# The chart is drawn by the load environment's interpreter, which has
# matplotlib: the services' lock stays free of it.
bench: venv venv-load $(ROUTE_KEY) ## Front (1, 2 workers) beside direct, nginx, stock Twisted; writes $(BENCH_OUT)/ (JSON, PNG)
	$(PY) -m webstack.bench --out $(BENCH_OUT) --duration $(BENCH_DURATION) \
	  --rounds $(BENCH_ROUNDS) --aborts $(BENCH_ABORTS) --lateness "$(BENCH_LATENESS)"
	$(LOADVENV)/bin/python -m webstack.bench.chart $(BENCH_OUT)/latest.json $(BENCH_OUT)/latest.png

bench-instructions: venv ## Instructions per proxied request (callgrind), one front and one of two workers: for A/B work on the front's cost (repeatable within about 1%)
	$(PY) -m webstack.bench.instructions --out $(BENCH_OUT) --requests $(BENCH_INSTRUCTIONS)

clean: ## Remove the virtual environments, wheels and results
	rm -rf $(VENV) $(LOADVENV) $(BENCH_OUT) .pytest_cache build reports

docker-check:
	@docker info >/dev/null 2>&1 || { echo "make up needs a running Docker engine and none answers here: 'make run' starts the same stack as local processes"; exit 1; }
	@test -n "$(COMPOSE)" || { echo "neither 'docker compose' nor 'docker-compose' is installed: 'make run' starts the same stack as local processes"; exit 1; }

wheels: $(WHEELS)/.done ## Download the locked packages as wheels for the image

$(WHEELS)/.done: services/requirements.lock $(VENV)/.installed
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(VENV)/bin/pip download --quiet --disable-pip-version-check --only-binary=:all: \
	  --python-version 3.11 --implementation cp --abi cp311 $(PLATFORMS) \
	  --require-hashes -d $(WHEELS) -r services/requirements.lock
	@touch $@

build/wheels-load/.done: loadtest/requirements.lock $(VENV)/.installed
	rm -rf build/wheels-load && mkdir -p build/wheels-load
	$(VENV)/bin/pip download --quiet --disable-pip-version-check --only-binary=:all: \
	  --python-version 3.11 --implementation cp --abi cp311 $(PLATFORMS) \
	  --require-hashes -d build/wheels-load -r loadtest/requirements.lock
	@touch $@

export LOAD_UID := $(shell id -u)
export LOAD_GID := $(shell id -g)
# The auth container reads config/auth as the image's own user while the
# user files are readable by all (a fresh checkout), and as their owner
# once `make user` has made them 0600 (an HA1 is as good as a password).
export WEBSTACK_AUTH_USER ?= $(shell stat -c '%A %u:%g' config/auth/htpasswd 2>/dev/null | \
  awk '{ print (substr($$1, 8, 1) == "r" ? "10001:10001" : $$2) }')

load-compose: docker-check build/wheels-load/.done ## locust master + WORKERS (default 2) worker containers against `make up`
	@base=$$(SUITE=$(SUITE) BUILD_DIR=build services/docker/base-image.sh) && \
	  BASE_IMAGE=$$base $(COMPOSE) --profile load build --quiet locust-master
	@mkdir -p reports
	WORKERS=$(LOAD_WORKERS) $(COMPOSE) --profile load up --scale locust-worker=$(LOAD_WORKERS) \
	  --exit-code-from locust-master locust-master locust-worker; \
	  status=$$?; $(COMPOSE) --profile load rm -fsv locust-master locust-worker >/dev/null 2>&1; exit $$status

load-ui-compose: docker-check build/wheels-load/.done ## locust's web UI in containers (master + WORKERS) on 127.0.0.1:8089; Ctrl-C stops it
	@base=$$(SUITE=$(SUITE) BUILD_DIR=build services/docker/base-image.sh) && \
	  BASE_IMAGE=$$base $(COMPOSE) --profile load build --quiet locust-master
	@mkdir -p reports
	@echo "locust's UI: http://$${WEBSTACK_LOCUST_PUBLISH:-127.0.0.1:8089}/ (Ctrl-C stops it)"
	@# Ctrl-C stops compose (its containers) but not this shell, which then
	@# removes them (a handler, not an ignored signal: compose still gets it).
	@trap true INT; LOAD_UI=1 WORKERS=$(LOAD_WORKERS) $(COMPOSE) --profile load up \
	  --scale locust-worker=$(LOAD_WORKERS) locust-master locust-worker; \
	  $(COMPOSE) --profile load rm -fsv locust-master locust-worker >/dev/null 2>&1; true

# Prometheus's image installs Debian's package from the mirrors the host's apt
# uses (APT_SOURCES, read here and never written down; none: the base image's).
images: docker-check wheels ## Build the images: the services' and, unless MONITORING=0, Prometheus's
	@base=$$(SUITE=$(SUITE) BUILD_DIR=build services/docker/base-image.sh) && \
	  echo "building webstack/service:dev from $$base" && \
	  BASE_IMAGE=$$base $(COMPOSE) build --quiet front $(if $(MONITORING_ON),&& \
	  echo "building webstack/prometheus:dev from $$base" && \
	  APT_SOURCES="$$($(PYTHON) services/docker/debian_sources.py $(SUITE) 2>/dev/null)" \
	  BASE_IMAGE=$$base $(COMPOSE) --profile monitoring build --quiet prometheus)

up: images $(DIGEST_KEY) $(ROUTE_KEY) ## Start the stack in containers (front :8080, Prometheus :9090; MONITORING=0: without it)
	$(if $(MONITORING_ON),,$(COMPOSE) --profile monitoring rm -fsv prometheus >/dev/null 2>&1 || true)
	$(COMPOSE) $(if $(MONITORING_ON),--profile monitoring) up -d --remove-orphans
	@services/docker/wait-healthy.sh 180
	@echo "webstack is up: http://$${WEBSTACK_PUBLISH:-127.0.0.1:8080}/  (make ps, make logs SERVICE=front, make down)"
	$(if $(MONITORING_ON),@echo "Prometheus: http://$${WEBSTACK_PROMETHEUS_PUBLISH:-127.0.0.1:9090}/  (targets, rules, alerts; MONITORING=0 make up: without)")

down: docker-check ## Stop and remove every container, network and volume of the stack
	$(COMPOSE) --profile load --profile monitoring down --remove-orphans --volumes --timeout 20

ps: docker-check ## List the stack's containers and their health
	$(COMPOSE) ps

logs: docker-check ## Show logs: make logs [SERVICE=front] [TAIL=100] [FOLLOW=1]
	$(COMPOSE) logs --tail=$(TAIL) $(if $(FOLLOW),--follow) $(SERVICE)

# The id goes to the program through the environment, never through the
# shell's parsing of this line.
.PHONY: trace
trace: export WEBSTACK_TRACE_ID := $(ID)
trace: ## One request's log lines from every service, in time order: make trace ID=<X-Request-Id> [LOGS=file]
	@test -n "$$WEBSTACK_TRACE_ID" || { echo "usage: make trace ID=<request id> [LOGS=file]: the X-Request-Id of a response (or request_id of a log line); the containers' logs, or LOGS= a file saved from make run (make run | tee run.log)"; exit 2; }
	$(if $(LOGS),,@$(MAKE) --no-print-directory docker-check)
	@$(PYTHON) -m webstack.trace $(if $(LOGS),--logs "$(LOGS)",--compose "$(COMPOSE)")

restart: docker-check ## Restart one service: make restart SERVICE=async
	@test -n "$(SERVICE)" || { echo "usage: make restart SERVICE=name"; exit 2; }
	$(COMPOSE) restart $(SERVICE)
	@services/docker/wait-healthy.sh 120

scale: docker-check ## Run N replicas of a service: make scale SERVICE=async N=3
	@test -n "$(SERVICE)" || { echo "usage: make scale SERVICE=name N=count"; exit 2; }
	$(COMPOSE) up -d --no-deps --no-recreate --scale $(SERVICE)=$(N) $(SERVICE)
	@services/docker/wait-healthy.sh 120

# The fault switch (webstack.runtime.faults): every service container has
# one on its own loopback (WEBSTACK_<SERVICE>_ADMIN_LISTEN in
# docker-compose.yml), reached with docker exec. The values go to the
# program through the environment, never through the shell's parsing of
# these lines, and are checked before anything is changed.
LATENCY ?=
ERRORS ?=
RESET ?=
ROUTE ?=
REPLICA ?=
FAULT_SERVICES = $(shell PYTHONPATH=services/src $(PYTHON) -c \
  'from webstack.registry import SERVICES; print(*(s.name for s in SERVICES))')
FAULT_VALUES = --route "$${WEBSTACK_FAULT_ROUTE:-*}" --latency "$${WEBSTACK_FAULT_LATENCY:-0}" \
  --errors "$${WEBSTACK_FAULT_ERRORS:-0}" --reset "$${WEBSTACK_FAULT_RESET:-0}"
# "service container" for each running container of SERVICE (else of every
# service), only REPLICA's (its name or its number) if given.
FAULT_CONTAINERS = for s in $${WEBSTACK_FAULT_SERVICE:-$(FAULT_SERVICES)}; do \
    docker ps --filter "label=com.docker.compose.project=$(COMPOSE_PROJECT_NAME)" \
      --filter "label=com.docker.compose.service=$$s" \
      --format "$$s {{.Label \"com.docker.compose.container-number\"}} {{.Names}}"; \
  done | sort -k1,1 -k2,2n | \
  awk -v r="$$WEBSTACK_FAULT_REPLICA" 'r == "" || $$2 == r || $$3 == r { print $$1, $$3 }'
FAULT_EACH = found=$$($(FAULT_CONTAINERS)); test -n "$$found" || { echo "no running container \
  of $${WEBSTACK_FAULT_SERVICE:-any service}$${WEBSTACK_FAULT_REPLICA:+ (replica \
  $$WEBSTACK_FAULT_REPLICA)} in $(COMPOSE_PROJECT_NAME): make up, make ps"; exit 1; }; \
  echo "$$found" | while read -r service name; do docker exec "$$name" python -m webstack.runtime.faults
.PHONY: fault fault-clear
fault fault-clear: export WEBSTACK_FAULT_SERVICE := $(SERVICE)
fault fault-clear: export WEBSTACK_FAULT_REPLICA := $(REPLICA)
fault fault-clear: export WEBSTACK_FAULT_ROUTE := $(ROUTE)
fault: export WEBSTACK_FAULT_LATENCY := $(LATENCY)
fault: export WEBSTACK_FAULT_ERRORS := $(ERRORS)
fault: export WEBSTACK_FAULT_RESET := $(RESET)

fault: venv docker-check ## Slow or fail a service: make fault SERVICE=async LATENCY=200ms ERRORS=5% [RESET=1%] [ROUTE=/async/] [REPLICA=2]
	@test -n "$(SERVICE)" -a -n "$(LATENCY)$(ERRORS)$(RESET)" || { echo "usage: make fault" \
	  "SERVICE=name [LATENCY=200ms] [ERRORS=5%] [RESET=1%] [ROUTE=/prefix/ (default: every" \
	  "route)] [REPLICA=container name or number (default: every one)]; make fault-clear" \
	  "[SERVICE=name] clears"; exit 2; }
	@$(PY) -m webstack.runtime.faults check $(FAULT_VALUES) >/dev/null
	@$(FAULT_EACH) set --service "$$service" $(FAULT_VALUES) || exit $$?; done

fault-clear: docker-check ## Clear the faults of every service (or SERVICE=, REPLICA=, ROUTE=)
	@$(FAULT_EACH) clear --service "$$service" \
	  $${WEBSTACK_FAULT_ROUTE:+--route "$$WEBSTACK_FAULT_ROUTE"} || exit $$?; done

demo: venv ## List the ops demos (make demo-NAME runs one against `make up`)
	@$(PY) -m webstack.demos

demo-%: venv docker-check ## Run one ops demo against the stack of `make up`: make demo-cancel
	$(PY) -m webstack.demos $* $(if $(SHORT),--short)

# Docker Swarm (docs/swarm.md): the same images as a swarm stack,
# swarm/stack.yml plus the configs and secrets rendered from config/.
# SWARM_STACK names the stack; the front is published on SWARM_PUBLISH
# (a port), bound on SWARM_BIND of the node that runs it when swarm-up made
# the swarm; REGISTRY=host[:port] pushes the images there for other nodes;
# SWARM_EXTRA names more stack files merged last (placement, replicas).
SWARM_STACK ?= webstack
SWARM_PUBLISH ?= 8080
SWARM_BIND ?= 127.0.0.1
SWARM_ADVERTISE ?= 127.0.0.1
SWARM_TIMEOUT ?= 300
REGISTRY ?=
SWARM_EXTRA ?=
SWARM_ENV = SWARM_STACK=$(SWARM_STACK) SWARM_PUBLISH=$(SWARM_PUBLISH) SWARM_BIND=$(SWARM_BIND) \
  SWARM_ADVERTISE=$(SWARM_ADVERTISE) SWARM_TIMEOUT=$(SWARM_TIMEOUT) REGISTRY=$(REGISTRY) \
  SWARM_EXTRA="$(SWARM_EXTRA)" PYTHON=$(PYTHON)
SWARM_CONVERGE = $(PYTHON) swarm/converge.py $(SWARM_STACK) --port $(SWARM_PUBLISH) --timeout $(SWARM_TIMEOUT)
.PHONY: swarm-check swarm-up swarm-down swarm-ps swarm-scale swarm-update swarm-load

swarm-check:
	@docker info >/dev/null 2>&1 || { echo "the swarm targets need a running Docker engine and none answers here"; exit 1; }

swarm-up: swarm-check images $(DIGEST_KEY) $(ROUTE_KEY) ## Deploy on Docker Swarm (a single-node one made if none); front on SWARM_PUBLISH (8080)
	@$(SWARM_ENV) swarm/up.sh

swarm-down: swarm-check ## Remove the swarm stack; leave the swarm only if swarm-up made it
	@$(SWARM_ENV) swarm/down.sh

swarm-ps: swarm-check ## The swarm stack's services and running tasks
	@docker stack services $(SWARM_STACK)
	@docker stack ps --filter desired-state=running $(SWARM_STACK)

swarm-scale: swarm-check ## Run N tasks of a swarm service: make swarm-scale SERVICE=async N=3
	@test -n "$(SERVICE)" || { echo "usage: make swarm-scale SERVICE=name N=count"; exit 2; }
	@case "$(N)" in ''|*[!0-9]*) echo "N must be a count of tasks, not '$(N)'"; exit 2;; esac
	docker service scale --detach $(SWARM_STACK)_$(SERVICE)=$(N)
	@$(SWARM_CONVERGE)

swarm-update: swarm-check ## Rolling update of one swarm service (new tasks, start-first): make swarm-update SERVICE=async
	@test -n "$(SERVICE)" || { echo "usage: make swarm-update SERVICE=name"; exit 2; }
	@since=$$(date +%s) && \
	  docker service update --detach --quiet --force $(SWARM_STACK)_$(SERVICE) && \
	  $(SWARM_CONVERGE) --updated $(SERVICE) --since $$since

swarm-load: swarm-check build/wheels-load/.done ## locust master + WORKERS (default 2) workers as swarm services against the swarm front
	@base=$$(SUITE=$(SUITE) BUILD_DIR=build services/docker/base-image.sh) && \
	  BASE_IMAGE=$$base $(COMPOSE) --profile load build --quiet locust-master
	@$(SWARM_ENV) WORKERS=$(LOAD_WORKERS) USERS=$(USERS) SPAWN=$(SPAWN) DURATION=$(DURATION) \
	  SCENARIO=$(SCENARIO) swarm/load.sh
