# devport: `make run` starts it on its embedded defaults; `make test` runs every test.
GO ?= go
VENDOR := static/vendor/htmx.min.js static/vendor/pico.min.css \
	static/vendor/xterm.js static/vendor/xterm.css static/vendor/addon-fit.js

.PHONY: run run-docker test bench generate static build vet fmt clean docker-image

run: static
	$(GO) run . serve

# devport on the local Docker engine: builds the base image (once), then serves
# the example fleet file with its own data directory. Needs a running dockerd.
run-docker: static docker-image
	DEVPORT_FLEET=$${DEVPORT_FLEET:-fleet/examples/docker.yaml} DEVPORT_DATA_DIR=$${DEVPORT_DATA_DIR:-./data-docker} $(GO) run . serve

build: static
	$(GO) build -o bin/devport .

# Front-end packages come from npm (package-lock.json) and are embedded, never committed.
static: $(VENDOR)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

static/vendor/htmx.min.js: node_modules/.package-lock.json
	cp node_modules/htmx.org/dist/htmx.min.js $@

static/vendor/pico.min.css: node_modules/.package-lock.json
	cp node_modules/@picocss/pico/css/pico.min.css $@

static/vendor/xterm.js: node_modules/.package-lock.json
	cp node_modules/@xterm/xterm/lib/xterm.js $@

static/vendor/xterm.css: node_modules/.package-lock.json
	cp node_modules/@xterm/xterm/css/xterm.css $@

static/vendor/addon-fit.js: node_modules/.package-lock.json
	cp node_modules/@xterm/addon-fit/lib/addon-fit.js $@

generate:
	$(GO) tool templ generate

# The store's and the jobs' tests run a second time on PostgreSQL when
# DEVPORT_TEST_POSTGRES_URL names a role that may create databases
# (.ci/postgres-up DIR PORT starts a throwaway cluster and prints one); under
# DEVPORT_REQUIRE_ALL=1 (CI) its absence is a failure, not a skip.
test: static
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	@if [ -n "$$DEVPORT_TEST_POSTGRES_URL" ]; then \
		echo "DEVPORT_TEST_ENGINE=postgres $(GO) test -count=1 -timeout 20m ./store/... ./jobs/..."; \
		DEVPORT_TEST_ENGINE=postgres $(GO) test -count=1 -timeout 20m ./store/... ./jobs/...; \
	elif [ "$$DEVPORT_REQUIRE_ALL" = 1 ]; then \
		echo "FAIL: DEVPORT_TEST_POSTGRES_URL is not set and DEVPORT_REQUIRE_ALL=1: the store's and the jobs' tests on PostgreSQL cannot run (.ci/postgres-up DIR PORT starts a server)" >&2; \
		exit 1; \
	else \
		echo "######## SKIPPED: the store's and the jobs' tests (and the replica tests) on PostgreSQL: DEVPORT_TEST_POSTGRES_URL is not set (DEVPORT_TEST_POSTGRES_URL=\$$(.ci/postgres-up /tmp/devport-pg 55432) make test) ########"; \
	fi

# BenchmarkReplicas' PostgreSQL cases need DEVPORT_TEST_POSTGRES_URL; when it is
# unset, .ci/postgres-up starts (or reuses) a throwaway cluster in /tmp/devport-pg
# if PostgreSQL is installed, and those cases skip loudly when it cannot.
bench: static
	@url="$$DEVPORT_TEST_POSTGRES_URL"; \
	if [ -z "$$url" ]; then \
		url=$$(.ci/postgres-up /tmp/devport-pg 55432) || { url=; echo "######## PostgreSQL did not start (.ci/postgres-up): the PostgreSQL benchmarks will be SKIPPED ########"; }; \
	fi; \
	echo "DEVPORT_TEST_POSTGRES_URL=$${url:+(set)} $(GO) test -run '^\$$' -bench . -benchmem -timeout 30m ./..."; \
	DEVPORT_TEST_POSTGRES_URL="$$url" $(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

# The Docker driver's base image, from Debian packages (debootstrap, then docker
# import): no image registry is needed. Does nothing when it exists already.
docker-image:
	fleet/docker/image/build.sh

fmt:
	gofmt -w $$(git ls-files '*.go')
	$(GO) tool templ fmt views

clean:
	rm -rf bin node_modules $(VENDOR)
