# devport: `make run` starts it on its embedded defaults; `make test` runs every test.
GO ?= go
VENDOR := static/vendor/htmx.min.js static/vendor/pico.min.css

.PHONY: run test bench generate static build vet fmt clean

run: static
	$(GO) run . serve

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

generate:
	$(GO) tool templ generate

test: static
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

bench: static
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
	$(GO) tool templ fmt views

clean:
	rm -rf bin node_modules $(VENDOR)
