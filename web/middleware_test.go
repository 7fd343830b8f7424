package web_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/devport/devport/web"
)

func TestRecoverShowsAnErrorPageWithoutTheStack(t *testing.T) {
	h := web.RequestIDs(web.Recover(slog.New(slog.DiscardHandler))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("database password is hunter2")
	})))
	for _, accept := range []string{"text/html", "application/json"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/devservers", nil)
		req.Header.Set("Accept", accept)
		h.ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != 500 {
			t.Errorf("%s: status %d", accept, rec.Code)
		}
		if strings.Contains(body, "hunter2") || strings.Contains(body, "goroutine") {
			t.Errorf("%s: the panic leaked into the answer: %s", accept, body)
		}
		if accept == "text/html" && (!strings.Contains(body, "Server error") || !strings.Contains(body, rec.Header().Get("X-Request-Id"))) {
			t.Errorf("the 500 page lacks its title or the request ID: %s", body)
		}
		if accept == "application/json" && !strings.Contains(body, `"internal_error"`) {
			t.Errorf("JSON 500 = %s", body)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := web.SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	for k, want := range map[string]string{
		"Content-Security-Policy": "script-src 'self'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
	} {
		if !strings.Contains(rec.Header().Get(k), want) {
			t.Errorf("%s = %q, want %q in it", k, rec.Header().Get(k), want)
		}
	}
	if rec.Header().Get("Strict-Transport-Security") != "" {
		t.Error("HSTS sent over plain HTTP")
	}
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "https://devport.example.com/", nil)
	h.ServeHTTP(rec, req)
	if rec.Header().Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over TLS")
	}
}

func TestRequestIDs(t *testing.T) {
	var seen string
	h := web.RequestIDs(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = web.RequestID(r) }))
	for _, in := range []struct{ header, want string }{
		{"", ""}, {"abc-123", "abc-123"}, {"bad id with spaces", ""}, {strings.Repeat("x", 100), ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		if in.header != "" {
			req.Header.Set("X-Request-Id", in.header)
		}
		h.ServeHTTP(rec, req)
		if seen == "" || rec.Header().Get("X-Request-Id") != seen || (in.want != "" && seen != in.want) || (in.want == "" && seen == in.header) {
			t.Errorf("X-Request-Id %q: got %q", in.header, seen)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name  string   `json:"name"`
		Count int      `json:"count"`
		Tags  []string `json:"tags"`
	}
	cases := []struct {
		in, contentType string
		status          int
		message         string
	}{
		{`{"name":"a","count":1}`, "application/json", 0, ""},
		{`{"name":"a"}`, "application/json; charset=utf-8", 0, ""},
		{``, "application/json", 400, "empty"},
		{`{"name":`, "application/json", 400, "not valid JSON"},
		{`{"count":"one"}`, "application/json", 400, `"count" must be a number`},
		{`{"tags":"x"}`, "application/json", 400, `"tags" must be a list`},
		{`{"name":"a","extra":1}`, "application/json", 400, "unknown field"},
		{`{} {}`, "application/json", 400, "after the JSON object"},
		{`{"name":"a"}`, "text/plain", 415, "application/json"},
		{`{"name":"` + strings.Repeat("a", 1<<20) + `"}`, "application/json", 413, "1 MiB"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/v1/x", strings.NewReader(c.in))
		req.Header.Set("Content-Type", c.contentType)
		var v body
		err := web.DecodeJSON(rec, req, &v)
		if c.status == 0 {
			if err != nil {
				t.Errorf("%.40s: %v", c.in, err)
			}
			continue
		}
		var re *web.RequestError
		if err == nil || !errorAs(err, &re) || re.Status != c.status || !strings.Contains(re.Message, c.message) {
			t.Errorf("%.40s: err %v, want %d mentioning %q", c.in, err, c.status, c.message)
		}
		// What the client sees is the API's error envelope.
		rec = httptest.NewRecorder()
		web.Error(rec, req, slog.New(slog.DiscardHandler), err)
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(rec.Body.Bytes(), &e) != nil || rec.Code != c.status || e.Error.Code == "" {
			t.Errorf("%.40s: answered %d %s", c.in, rec.Code, rec.Body.String())
		}
	}
}

func TestRedirect(t *testing.T) {
	for _, c := range []struct {
		htmx, current, target string
		status                int
		header, value         string
	}{
		{"", "", "/devservers/a", 303, "Location", "/devservers/a"},
		{"true", "http://portal/devservers/new", "/devservers/a", 204, "HX-Redirect", "/devservers/a"},
		{"true", "http://portal/devservers/a", "/devservers/a#devserver-backups", 204, "HX-Refresh", "true"},
		{"true", "http://portal/devservers/a?tab=1", "/devservers/a", 204, "HX-Redirect", "/devservers/a"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/x", nil)
		if c.htmx != "" {
			req.Header.Set("HX-Request", c.htmx)
			req.Header.Set("HX-Current-URL", c.current)
		}
		web.Redirect(rec, req, c.target)
		if rec.Code != c.status || rec.Header().Get(c.header) != c.value {
			t.Errorf("%s → %s: %d %v", c.current, c.target, rec.Code, rec.Header())
		}
	}
}
