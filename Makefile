# atomic-mysql — the two commands: `make preview` (offline main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
STACK ?= dev
STACKS := $(patsubst stacks/Pulumi.%.yaml,%,$(wildcard stacks/Pulumi.*.yaml))
# Debian packages the tests run for real: MariaDB (clone/replication rehearsal, verify drills),
# etcd (3-member cluster from the rendered settings), HAProxy (the minions' API proxy),
# cloud-init (user-data schema), ncat/socat, shellcheck (every shell file), systemd (systemd-analyze
# verify of the node units), radosgw on a one-node Ceph (ceph-mon, ceph-osd) with python3-boto3 and awscli
# (the etcd backups into a real S3 API, and the snapshot fetched back) and rclone (the MySQL set's S3
# client) for the backup, archive and restore rehearsals; redis-server (the Guestbook's follower readiness).
APT_PACKAGES := python3-venv mariadb-server mariadb-backup mariadb-client etcd-server etcd-client cloud-init socat ncat openssl haproxy shellcheck systemd radosgw ceph-mon ceph-osd python3-boto3 awscli rclone redis-server

.PHONY: help deps system-deps preview preview-all data-loss test lint bench verify roll-nodes bench-verify bench-clone bench-apply bench-backup restore-drill scan clean

help:
	@echo "make preview [STACK=dev]   offline preview: tree, build/<stack>/{plan.json,k8s/,nodes/}"
	@echo "make data-loss             what each common data change does on dev, staging, prod (docs/mysql.md)"
	@echo "make test                  install what the tests need, then lint and run every test"
	@echo "make bench                 preview timings (dev, prod, synthetic large stacks)"
	@echo "make bench-clone / bench-apply  clone path vs copy floor; parallel vs serial apply (real MariaDB)"
	@echo "make verify [STACK=prod] ARGS='...'  check a deployed MySQL set (see docs/verify.md)"
	@echo "make scan                  checkov over every stack's rendered Kubernetes objects"
	@echo "make roll-nodes STACK=prod [ROLE=master|minion] [ARGS=--yes]  replace nodes one at a time (docs/cluster.md)"
	@echo "make restore-drill [ARGS='--bucket B --prefix P']  restore the latest backup into a scratch set and check it"
	@echo "make bench-backup          backup and restore throughput against the tar | socat floor"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

deps: $(VENV)/.installed

# Installs the real servers the tests use. Only as root (CI, fresh machines); otherwise it
# checks and says what is missing, and the tests that need them fail loudly.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "system packages present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "missing system packages (install as root):" $$missing; fi

preview: deps
	$(PY) -m tools.preview --stack $(STACK) --png

preview-all: deps
	@for s in $(STACKS); do $(PY) -m tools.preview --stack $$s --quiet || exit $$?; echo "previewed $$s"; done

data-loss: deps
	$(PY) -m tools.data_loss

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The checkov and pulumi-policy tool venvs (their pins clash with venv/) are made by
# tools/scan.ensure_venv, the one place that builds them, when the tests first need them.
test: system-deps deps lint
	$(PY) -m pytest

bench: deps
	$(PY) -m tools.bench.preview

# `make verify STACK=prod ARGS=...` reads the stack's outputs from `pulumi stack output` itself, in
# memory (docs/verify.md); without STACK on the command line, verify takes only ARGS.
VERIFY_STACK := $(if $(filter command line,$(origin STACK)),--stack $(STACK))

verify: deps
	$(PY) -m tools.mysql_verify $(VERIFY_STACK) $(ARGS)

bench-verify: deps system-deps
	$(PY) -m tools.bench.catchup $(ARGS)

# The clone path against the tar | socat | tar floor, and parallel against serial apply (real MariaDB).
bench-clone: deps system-deps
	$(PY) -m tools.bench.clone $(ARGS)

bench-apply: deps system-deps
	$(PY) -m tools.bench.apply $(ARGS)

# The plan (which nodes, in which order), or with ARGS=--yes the roll itself: one node at a time,
# etcd kept at quorum (docs/cluster.md, "Changing nodes: make roll-nodes").
roll-nodes: deps
	$(PY) -m tools.roll_nodes --stack $(STACK) $(if $(ROLE),--role $(ROLE)) $(ARGS)

# Without ARGS the drill rehearses the whole loop on this machine (Ceph RGW + MariaDB); with
# ARGS='--bucket B --prefix P [--endpoint URL]' and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY it drills
# the latest backup of a deployed set (docs/backup.md).
restore-drill: deps system-deps
	$(PY) -m tools.restore_drill $(if $(ARGS),$(ARGS),--rehearse)

bench-backup: deps system-deps
	$(PY) -m tools.bench.backup $(ARGS)

scan: deps
	$(PY) -m tools.scan

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
