# spiderpool-agent. `make run` and `make test` are the two commands a
# newcomer needs; see README.md.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X github.com/spiderpool-agent/spiderpool-agent/core/version.Version=$(VERSION) \
            -X github.com/spiderpool-agent/spiderpool-agent/core/version.Commit=$(COMMIT)
BIN      := bin
# The built-ins ship inside the agent's executable (the module's root package
# links both): bin/plugins/spiderpool-plugins is a symlink to it, which the
# agent runs once per built-in. plugins/cmd/spiderpool-plugins (the set alone)
# and the per-plugin mains (plugins/NAME/cmd) still build for anyone who
# wants them apart.
PREFIX   ?= /usr/local
# Build tags of the agent's executable: leave out what it links but never
# uses - gRPC's x/net/trace event log (off unless a program turns it on) and
# net/http's bundled HTTP/2 (every server of the agent speaks HTTP/1.1; gRPC
# has its own HTTP/2). 0.84 MB less, for the deb's 30 MB budget.
# test/agenttest builds the agent with the same tags (test/layout checks).
AGENT_TAGS := grpcnotrace,nethttpomithttp2
CNI_LDFLAGS := -s -w -X github.com/spiderpool-agent/spiderpool-agent/core/cniplugin.Version=$(VERSION)
# The CNI IPAM plugin: runtimes look for plugins in /opt/cni/bin, whatever
# PREFIX is.
CNIBINDIR ?= /opt/cni/bin
DESTDIR  ?=

# Pinned generator versions for `make proto`.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

.PHONY: deb-denylist all build run run-clean prereq test test-short fuzz bench faults proto deb install lint clean man

all: build

## build: bin/spiderpool-agent (the agent and the built-ins in one executable),
## the symlink bin/plugins/spiderpool-plugins to it, the denylist example in
## bin/plugins/, and the CNI IPAM plugin bin/cni/spiderpool
build:
	@mkdir -p $(BIN)/plugins
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/spiderpool-agent .
	ln -sfn ../spiderpool-agent $(BIN)/plugins/spiderpool-plugins
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/plugins/spiderpool-plugin-denylist github.com/spiderpool-agent/spiderpool-agent/sdk/examples/denylist/cmd/spiderpool-plugin-denylist
	@mkdir -p $(BIN)/cni
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(CNI_LDFLAGS)' -o $(BIN)/cni/spiderpool ./core/cmd/spiderpool-cni

## run: build, then start the real agent in a sandbox: a namespace LAN (node,
## gateway, a neighbour owning an address) that Ctrl-C removes. It never
## touches the host's sysctls. Running on the host is `make install` or the deb.
run: build
	@sh test/prereq.sh run
	bash test/sandbox/sandbox.sh $(CURDIR)/$(BIN)

## run-clean: remove what an interrupted `make run` left (namespaces, processes)
run-clean:
	bash test/sandbox/sandbox.sh --clean

## test: the whole suite, unit and network-namespace tests, with -race (as root),
## for the agent's module and the sdk module (sdk/ has a go.mod of its own, so
## the root's ./... does not reach it), then a brief run of the config and
## frame parser fuzz targets
test:
	@sh test/prereq.sh test
	$(GO) vet ./...
	cd sdk && $(GO) vet ./...
	AGENTTEST_RACE=1 $(GO) test -race -count=1 -timeout 15m ./...
	cd sdk && $(GO) test -race -count=1 ./...
	$(GO) test -run XXX -fuzz FuzzLoadHCL -fuzztime 10s ./core/config/
	cd sdk && $(GO) test -run XXX -fuzz FuzzDecode -fuzztime 5s .
	$(GO) test -run XXX -fuzz FuzzParseFrame -fuzztime 5s ./plugins/probe/

## fuzz: run each fuzz target for FUZZTIME (default 10m) - by hand, not in CI
FUZZTIME ?= 10m
fuzz:
	cd sdk && $(GO) test -run XXX -fuzz FuzzDecode -fuzztime $(FUZZTIME) .
	$(GO) test -run XXX -fuzz FuzzLoadHCL -fuzztime $(FUZZTIME) ./core/config/
	$(GO) test -run XXX -fuzz FuzzParseFrame -fuzztime $(FUZZTIME) ./plugins/probe/
	$(GO) test -run XXX -fuzz FuzzHandle -fuzztime $(FUZZTIME) ./plugins/probe/
	$(GO) test -run XXX -fuzz FuzzBuildParse -fuzztime $(FUZZTIME) ./plugins/probe/

## bench: latency, scale, start-up, memory and load tables (as root; see test/bench/README.md)
BENCHFLAGS ?=
bench: build
	@sh test/prereq.sh bench
	$(GO) run ./test/bench -bin $(CURDIR)/$(BIN) $(BENCHFLAGS)

## faults: the fault suite's table (as root; see test/bench/README.md)
faults: build
	@sh test/prereq.sh faults
	$(GO) run ./test/bench -bin $(CURDIR)/$(BIN) -faults $(BENCHFLAGS)

## proto: regenerate sdk/proto with pinned generators (needs protoc)
proto:
	@mkdir -p $(BIN)/tools
	GOBIN=$(CURDIR)/$(BIN)/tools $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/$(BIN)/tools $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(CURDIR)/$(BIN)/tools:$$PATH protoc -I sdk/proto \
		--go_out=sdk/proto --go_opt=paths=source_relative \
		--go-grpc_out=sdk/proto --go-grpc_opt=paths=source_relative \
		sdk/proto/spiderpool/plugin/v1/plugin.proto

## man: the spiderpool-agent(8) man page, from the commands' own help and
## config.hcl.example, in $(BIN)/man/
MAN_DATE ?= $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%d 2>/dev/null)
man:
	@mkdir -p $(BIN)/man
	$(GO) run ./packaging/manpage -config config.hcl.example -date '$(MAN_DATE)' > $(BIN)/man/spiderpool-agent.8

## deb: build the Debian package into DIST (dist/) with nfpm; see packaging/README.md
NFPM_VERSION := v2.45.2
DIST         ?= dist
# A Debian version must start with a digit: packaging/debversion.sh maps git
# describe's output onto one that sorts the way the builds were made.
DEB_VERSION  ?= $(shell sh packaging/debversion.sh '$(VERSION)')
# File times in the package: the commit's, so that a rebuild is identical.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
deb: build man
	@mkdir -p $(DIST) $(BIN)/deb
	gzip -9n < $(BIN)/man/spiderpool-agent.8 > $(BIN)/deb/spiderpool-agent.8.gz
	sh packaging/changelog.sh '$(DEB_VERSION)' '$(SOURCE_DATE_EPOCH)' | gzip -9n > $(BIN)/deb/changelog.gz
	VERSION='$(DEB_VERSION)' BIN='$(BIN)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' \
		$(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package \
		--config packaging/nfpm.yaml --packager deb --target $(DIST)/

## deb-denylist: the SDK's example plugin as a package of its own, as a
## vendor ships one (packaging/README.md), into DIST
deb-denylist:
	@mkdir -p $(DIST) $(BIN)/deb-denylist
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/deb-denylist/spiderpool-plugin-denylist github.com/spiderpool-agent/spiderpool-agent/sdk/examples/denylist/cmd/spiderpool-plugin-denylist
	printf 'plugin "denylist" {\n  path     = "/usr/lib/spiderpool-denylist/spiderpool-plugin-denylist"\n  checksum = "sha256:%s"\n}\n' \
		"$$(sha256sum $(BIN)/deb-denylist/spiderpool-plugin-denylist | cut -d' ' -f1)" > $(BIN)/deb-denylist/50-denylist.hcl
	VERSION='$(DEB_VERSION)' BIN='$(BIN)/deb-denylist' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' \
		$(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package \
		--config sdk/examples/denylist/nfpm.yaml --packager deb --target $(DIST)/

## install: the package's layout under DESTDIR/PREFIX, for people who do not
## use packages. Existing files in SYSCONFDIR are kept; the unit and the config
## are rewritten for PREFIX. See packaging/README.md.
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/spiderpool-agent
MANDIR     ?= $(PREFIX)/share/man
install: build man
	install -D -m 0755 $(BIN)/spiderpool-agent $(DESTDIR)$(PREFIX)/bin/spiderpool-agent
	install -d -m 0755 $(DESTDIR)$(PREFIX)/lib/spiderpool/plugins
	ln -sfn ../../../bin/spiderpool-agent $(DESTDIR)$(PREFIX)/lib/spiderpool/plugins/spiderpool-plugins
	install -D -m 0755 $(BIN)/cni/spiderpool $(DESTDIR)$(CNIBINDIR)/spiderpool
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/spiderpool $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/spiderpool/ipam.d
	install -D -m 0644 packaging/ipam.d/pools.hcl.example $(DESTDIR)$(DOCDIR)/ipam.d/pools.hcl.example
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/spiderpool/config.hcl ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/spiderpool/config.hcl"; \
	else \
		echo "install packaging/config.hcl $(DESTDIR)$(SYSCONFDIR)/spiderpool/config.hcl"; \
		sed -e 's|/usr/lib/spiderpool/plugins|$(PREFIX)/lib/spiderpool/plugins|g' \
			-e 's|/usr/share/doc/spiderpool-agent|$(DOCDIR)|g' \
			packaging/config.hcl > $(DESTDIR)$(SYSCONFDIR)/spiderpool/config.hcl && \
		chmod 0644 $(DESTDIR)$(SYSCONFDIR)/spiderpool/config.hcl; \
	fi
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/default/spiderpool-agent ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/default/spiderpool-agent"; \
	else \
		echo "install packaging/spiderpool-agent.default $(DESTDIR)$(SYSCONFDIR)/default/spiderpool-agent"; \
		install -D -m 0644 packaging/spiderpool-agent.default $(DESTDIR)$(SYSCONFDIR)/default/spiderpool-agent; \
	fi
	sed -e 's|/usr/bin/spiderpool-agent|$(PREFIX)/bin/spiderpool-agent|g' \
		-e 's|/etc/spiderpool|$(SYSCONFDIR)/spiderpool|g' \
		-e 's|/etc/default/spiderpool-agent|$(SYSCONFDIR)/default/spiderpool-agent|g' \
		-e 's|/usr/share/doc/spiderpool-agent|$(DOCDIR)|g' \
		packaging/spiderpool-agent.service > $(DESTDIR)$(UNITDIR)/spiderpool-agent.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/spiderpool-agent.service
	install -m 0644 packaging/README.md config.hcl.example $(DESTDIR)$(DOCDIR)/
	install -D -m 0644 $(BIN)/man/spiderpool-agent.8 $(DESTDIR)$(MANDIR)/man8/spiderpool-agent.8
	install -D -m 0644 packaging/completion/spiderpool-agent.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/spiderpool-agent
	install -D -m 0644 packaging/completion/_spiderpool-agent $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_spiderpool-agent
	install -d -m 0755 $(DESTDIR)$(DOCDIR)/monitoring
	install -m 0644 packaging/monitoring/spiderpool-agent.rules.yml packaging/monitoring/spiderpool-agent.dashboard.json packaging/monitoring/README.md $(DESTDIR)$(DOCDIR)/monitoring/
	install -D -m 0644 -t $(DESTDIR)$(DOCDIR)/cni packaging/cni/*

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	cd sdk && $(GO) vet ./...

clean:
	rm -rf $(BIN) dist
