package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

const openAPIURL = "https://devport.test/api/v1/openapi.json"

// fetchOpenAPI reads the document through the real server, without
// credentials.
func fetchOpenAPI(t *testing.T, srv *handlertest.Server) (raw string, doc map[string]any) {
	t.Helper()
	resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/openapi.json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json without credentials: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	return body, doc
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

// documented is every "METHOD /path" of the document.
func documented(doc map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for path, item := range doc["paths"].(map[string]any) {
		for m, op := range item.(map[string]any) {
			if slices.Contains(httpMethods, m) {
				out[strings.ToUpper(m)+" "+path] = op.(map[string]any)
			}
		}
	}
	return out
}

// TestOpenAPIMatchesRouter holds the document against the router: every
// route under /api/v1 is documented and every documented operation is routed.
func TestOpenAPIMatchesRouter(t *testing.T) {
	srv := handlertest.New(t)
	_, doc := fetchOpenAPI(t, srv)

	routed := map[string]bool{}
	err := chi.Walk(srv.Config.Handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		route = strings.TrimSuffix(strings.ReplaceAll(route, "/*/", "/"), "/")
		if method != http.MethodHead && strings.HasPrefix(route, "/api/v1/") {
			routed[method+" "+route] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ops := documented(doc)
	var undocumented, unrouted []string
	for r := range routed {
		if ops[r] == nil {
			undocumented = append(undocumented, r)
		}
	}
	for op := range ops {
		if !routed[op] {
			unrouted = append(unrouted, op)
		}
	}
	sort.Strings(undocumented)
	sort.Strings(unrouted)
	if len(undocumented) > 0 {
		t.Errorf("%d routes are not in the OpenAPI document (add them to apiOperations in handlers/openapi.go):\n  %s", len(undocumented), strings.Join(undocumented, "\n  "))
	}
	if len(unrouted) > 0 {
		t.Errorf("%d documented operations have no route:\n  %s", len(unrouted), strings.Join(unrouted, "\n  "))
	}
	if len(routed) < 100 {
		t.Errorf("only %d API routes found: the walk is broken", len(routed))
	}
}

// TestOpenAPIOperationsComplete checks each operation: a summary, who may
// call it, a success answer with a schema, the error answers that apply,
// typed path parameters and the Idempotency-Key header on changes.
func TestOpenAPIOperationsComplete(t *testing.T) {
	srv := handlertest.New(t)
	_, doc := fetchOpenAPI(t, srv)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v", doc["openapi"])
	}
	info := doc["info"].(map[string]any)
	if info["title"] != "devport" || info["version"] != "v1" {
		t.Errorf("info = %v", info)
	}
	schemes := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	if b, _ := schemes["bearer"].(map[string]any); b["scheme"] != "bearer" {
		t.Errorf("bearer scheme = %v", schemes["bearer"])
	}
	if c, _ := schemes["session"].(map[string]any); c["in"] != "cookie" || c["name"] != "devport_session" {
		t.Errorf("session scheme = %v", schemes["session"])
	}
	public := map[string]bool{"GET /api/v1/openapi.json": true, "POST /api/v1/cli/token": true}
	for key, op := range documented(doc) {
		method, path, _ := strings.Cut(key, " ")
		if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s: no summary", key)
		}
		if d, _ := op["description"].(string); !strings.HasPrefix(d, "Who: ") {
			t.Errorf("%s: the description does not say who may call it: %q", key, d)
		}
		resps := op["responses"].(map[string]any)
		success := 0
		for code, r := range resps {
			if code[0] != '2' {
				continue
			}
			success++
			content, _ := r.(map[string]any)["content"].(map[string]any)
			if code == "204" {
				if len(content) != 0 {
					t.Errorf("%s: 204 with a body", key)
				}
				continue
			}
			if len(content) == 0 {
				t.Errorf("%s: %s has no content", key, code)
			}
			for ct, mt := range content {
				if mt.(map[string]any)["schema"] == nil {
					t.Errorf("%s: %s %s has no schema", key, code, ct)
				}
			}
		}
		if success == 0 {
			t.Errorf("%s: no success answer", key)
		}
		want := []string{}
		if !public[key] {
			want = append(want, "401")
			if op["security"] == nil {
				t.Errorf("%s: no security", key)
			}
		} else if op["security"] != nil {
			t.Errorf("%s: public, but asks for credentials", key)
		}
		if strings.Contains(path, "{") {
			want = append(want, "404")
		}
		if op["requestBody"] != nil {
			want = append(want, "400", "422")
		}
		if method != "GET" && !public[key] {
			want = append(want, "403")
		}
		for _, code := range want {
			r, ok := resps[code].(map[string]any)
			if !ok {
				t.Errorf("%s: no %s answer", key, code)
				continue
			}
			s := r["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
			if s["$ref"] != "#/components/schemas/ErrorBody" {
				t.Errorf("%s: %s is not the error object: %v", key, code, s)
			}
		}
		params := map[string]map[string]any{}
		for _, p := range asList(op["parameters"]) {
			pm := p.(map[string]any)
			params[pm["in"].(string)+":"+pm["name"].(string)] = pm
		}
		for _, seg := range strings.Split(path, "/") {
			if !strings.HasPrefix(seg, "{") {
				continue
			}
			name := strings.Trim(seg, "{}")
			p := params["path:"+name]
			if p == nil {
				t.Errorf("%s: path parameter %s is not documented", key, name)
				continue
			}
			typ := p["schema"].(map[string]any)["type"]
			if name == "id" && typ != "integer" || name != "id" && typ != "string" {
				t.Errorf("%s: path parameter %s has type %v", key, name, typ)
			}
		}
		idem := params["header:Idempotency-Key"] != nil
		if wantIdem := method != "GET" && !public[key]; idem != wantIdem {
			t.Errorf("%s: Idempotency-Key header documented: %v, want %v", key, idem, wantIdem)
		}
	}
	for _, list := range []string{"GET /api/v1/devservers", "GET /api/v1/containers", "GET /api/v1/sevs", "GET /api/v1/notifications"} {
		op := documented(doc)[list]
		var names []string
		for _, p := range asList(op["parameters"]) {
			names = append(names, p.(map[string]any)["name"].(string))
		}
		if !slices.Contains(names, "limit") || !slices.Contains(names, "cursor") {
			t.Errorf("%s: parameters %v lack limit and cursor", list, names)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestOpenAPIValid checks the document against the OpenAPI 3.1 schema and
// every $ref against the document.
func TestOpenAPIValid(t *testing.T) {
	srv := handlertest.New(t)
	raw, doc := fetchOpenAPI(t, srv)

	meta, err := jsonschema.UnmarshalJSON(strings.NewReader(datamodel.OpenAPI31SchemaData))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const metaURL = "https://spec.openapis.org/oas/3.1/schema/2022-10-07"
	if err := c.AddResource(metaURL, meta); err != nil {
		t.Fatal(err)
	}
	oas, err := c.Compile(metaURL)
	if err != nil {
		t.Fatalf("compile the OpenAPI 3.1 schema: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := oas.Validate(inst); err != nil {
		t.Errorf("not a valid OpenAPI 3.1 document: %v", err)
	}

	// Every $ref resolves, and every component schema compiles as JSON
	// Schema 2020-12 (the compiler checks it against the meta-schema).
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				refs = append(refs, r)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if len(refs) == 0 {
		t.Fatal("no $ref at all")
	}
	for _, r := range refs {
		if resolve(doc, r) == nil {
			t.Errorf("$ref %s does not resolve", r)
		}
	}
	sc := schemaCompiler(t, raw, false)
	for name := range doc["components"].(map[string]any)["schemas"].(map[string]any) {
		if _, err := sc.Compile(openAPIURL + "#/components/schemas/" + name); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
}

// resolve follows a local JSON pointer such as #/components/schemas/User.
func resolve(doc map[string]any, ref string) any {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	var cur any = doc
	for _, part := range strings.Split(p, "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// schemaCompiler compiles schemas out of the document. strict forbids
// properties a schema does not name, so an answer with a field the
// document lacks fails.
func schemaCompiler(t *testing.T, raw string, strict bool) *jsonschema.Compiler {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if strict {
		var tighten func(v any)
		tighten = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if _, ok := v["properties"]; ok {
					if _, ok := v["additionalProperties"]; !ok {
						v["additionalProperties"] = false
					}
				}
				for _, x := range v {
					tighten(x)
				}
			case []any:
				for _, x := range v {
					tighten(x)
				}
			}
		}
		tighten(doc)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(openAPIURL, doc); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOpenAPIDescribesAnswers sends real requests and validates the answers
// against the schemas the document gives for them.
func TestOpenAPIDescribesAnswers(t *testing.T) {
	srv := handlertest.New(t)
	raw, _ := fetchOpenAPI(t, srv)
	c := schemaCompiler(t, raw, true)
	token := srv.Token(t, "oa@example.com")
	admin := srv.Token(t, "oa-admin@example.com", store.RoleAdmin)

	check := func(method, path, pattern, body, tok string, want int) string {
		t.Helper()
		resp, got := srv.Do(t, nil, handlertest.Request{Method: method, Path: path, Body: body, Token: tok})
		if resp.StatusCode != want {
			t.Errorf("%s %s: %d %s, want %d", method, path, resp.StatusCode, got, want)
			return ""
		}
		ptr := fmt.Sprintf("#/paths/%s/%s/responses/%d/content/application~1json/schema",
			strings.ReplaceAll("/api/v1"+pattern, "/", "~1"), strings.ToLower(method), want)
		s, err := c.Compile(openAPIURL + ptr)
		if err != nil {
			t.Errorf("%s %s %d: no schema: %v", method, pattern, want, err)
			return got
		}
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(got))
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return got
		}
		if err := s.Validate(inst); err != nil {
			t.Errorf("%s %s %d does not match its schema: %v\n%s", method, pattern, want, err, got)
		}
		return got
	}
	id := func(body string) string {
		t.Helper()
		var v struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if v.Name != "" {
			return v.Name
		}
		return strconv.FormatInt(v.ID, 10)
	}

	// The caller, errors.
	check("GET", "/api/v1/me", "/me", "", token, 200)
	check("GET", "/api/v1/me", "/me", "", "", 401)
	check("POST", "/api/v1/devservers", "/devservers", `{"flavor":"no.such.flavor"}`, token, 422)
	check("POST", "/api/v1/devservers", "/devservers", `{"flavor":`, token, 400)
	check("GET", "/api/v1/devservers/nope-000", "/devservers/{name}", "", token, 404)
	check("GET", "/api/v1/capacity", "/capacity", "", token, 403)

	// A devserver and what hangs off it.
	name := id(check("POST", "/api/v1/devservers", "/devservers", `{"flavor":"vm.small","region":"prn"}`, token, 202))
	d := srv.WaitState(t, name, store.StateReady)
	ds := "/api/v1/devservers/" + name
	check("GET", ds, "/devservers/{name}", "", token, 200)
	check("GET", "/api/v1/devservers", "/devservers", "", token, 200)
	check("GET", "/api/v1/devservers?limit=1", "/devservers", "", token, 200)
	check("GET", ds+"/features", "/devservers/{name}/features", "", token, 200)
	srv.Token(t, "oa-sharee@example.com")
	check("POST", ds+"/shares", "/devservers/{name}/shares", `{"email":"oa-sharee@example.com"}`, token, 201)
	check("GET", ds+"/shares", "/devservers/{name}/shares", "", token, 200)
	check("POST", ds+"/backups", "/devservers/{name}/backups", "", token, 202)
	check("GET", ds+"/backups", "/devservers/{name}/backups", "", token, 200)
	check("GET", ds+"/restores", "/devservers/{name}/restores", "", token, 200)
	check("GET", ds+"/health", "/devservers/{name}/health", "", token, 200)
	check("POST", ds+"/restart", "/devservers/{name}/restart", "", token, 202)
	bundle := id(check("POST", ds+"/rage", "/devservers/{name}/rage", `{"note":"it is slow"}`, token, 202))
	check("POST", "/api/v1/support/bundles", "/support/bundles", `{"note":"doctor","parts":{"doctor":{"ok":true},"version":"1"}}`, token, 201)

	// Catalogues and the caller's own things.
	for _, p := range []string{"/regions", "/flavors", "/features", "/containers/types", "/containers", "/notifications", "/tasks",
		"/banners", "/me/keys", "/me/oneoffs", "/me/preferences", "/sevs", "/reviews", "/followups", "/me/tokens"} {
		check("GET", "/api/v1"+p, p, "", token, 200)
	}
	check("POST", "/api/v1/me/tokens", "/me/tokens", `{"name":"ci","scope":"read"}`, token, 201)
	check("POST", "/api/v1/notifications/read-all", "/notifications/read-all", "", token, 200)

	// The CLI's login hand-off: a code the browser approved, exchanged
	// without credentials.
	ctx := context.Background()
	u, err := srv.Store.UserByEmail(ctx, "oa@example.com")
	if err != nil {
		t.Fatal(err)
	}
	verifier := strings.Repeat("v", 43)
	var code string
	err = srv.Store.InTx(ctx, func(tx *store.Tx) (err error) {
		code, err = tx.CreateCLILoginCode(ctx, store.System, u, store.CLILoginRequest{Port: 49152, State: "oa-state", Challenge: store.S256(verifier), Name: "oa-host"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	check("POST", "/api/v1/cli/token", "/cli/token", `{"code":"`+code+`","verifier":"`+verifier+`"}`, "", 201)
	check("POST", "/api/v1/cli/token", "/cli/token", `{"code":"`+code+`","verifier":"`+verifier+`"}`, "", 400)

	// Admin views, with the answers built as maps (runs, plans, health, bundles).
	for _, p := range []string{"/capacity", "/pools", "/containers/pools", "/policies/quotas", "/policies/leases", "/policies/latencies",
		"/runbooks", "/hosts", "/health", "/support", "/deliveries"} {
		check("GET", "/api/v1"+p, p, "", admin, 200)
	}
	check("GET", "/api/v1/support/"+bundle, "/support/{id}", "", admin, 200)
	sev := id(check("POST", "/api/v1/sevs", "/sevs", `{"title":"oa SEV","severity":3,"kind":"exercise","regions":["prn"]}`, admin, 201))
	check("GET", "/api/v1/sevs/"+sev, "/sevs/{id}", "", token, 200)
	check("POST", "/api/v1/sevs/"+sev+"/timeline", "/sevs/{id}/timeline", `{"text":"a note"}`, token, 201)
	check("GET", "/api/v1/sevs/"+sev+"/timeline", "/sevs/{id}/timeline", "", token, 200)
	check("PUT", "/api/v1/sevs/"+sev+"/subscription", "/sevs/{id}/subscription", "", token, 200)
	host := "/api/v1/hosts/" + strconv.FormatInt(d.HostID, 10)
	check("POST", host+"/maintenance", "/hosts/{id}/maintenance", `{"reason":"oa","dry_run":true}`, admin, 200)
	run := id(check("POST", host+"/maintenance", "/hosts/{id}/maintenance", `{"reason":"oa"}`, admin, 202))
	check("GET", "/api/v1/runs/"+run, "/runs/{id}", "", admin, 200)
}
