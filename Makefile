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

test: static
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

bench: static
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

# The Docker driver's base image, from Debian packages (debootstrap, then docker
# import): no image registry is needed. Does nothing when it exists already.
docker-image:
	fleet/docker/image/build.sh

fmt:
	gofmt -w $$(git ls-files '*.go')
	$(GO) tool templ fmt views

clean:
	rm -rf bin node_modules $(VENDOR)
