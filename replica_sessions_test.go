package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store/storetest"
	"github.com/devport/devport/views"
)

// TestReplicasShareSessionsAndProgress runs two replicas on one PostgreSQL
// database behind no load balancer at all: a person signs in on A, the
// cookie works on B; a reservation made on A shows its progress to ready on
// B's live panel (the HTMX poll); signing out on B ends the session on A.
func TestReplicasShareSessionsAndProgress(t *testing.T) {
	if os.Getenv(replicaChildDir) != "" || os.Getenv(crashChildDir) != "" {
		t.Skip("in the child")
	}
	ctx := context.Background()
	dbURL := storetest.PostgresURL(t)
	dirA, dirB, backups := t.TempDir(), t.TempDir(), t.TempDir()
	var out bytes.Buffer
	if err := run(ctx, []string{"devport", "token", "create", "--user", "ann@example.com", "--data-dir", dirA, "--database-url", dbURL}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(strings.TrimSpace(out.String()))
	token := fields[len(fields)-1]

	a := startReplica(t, dirA, dbURL, backups, "400ms")
	copySecrets(t, dirA, dirB)
	b := startReplica(t, dirB, dbURL, backups, "400ms")

	// Sign in on A.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.PostForm(a.URL+"/login/dev", url.Values{"email": {"ann@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in on A: %d", resp.StatusCode)
	}
	uA, _ := url.Parse(a.URL)
	cookies := jar.Cookies(uA)
	if len(cookies) == 0 {
		t.Fatal("no session cookie from A")
	}
	// B is another host as far as the cookie is concerned: hand it over by hand.
	get := func(base, path string, htmx bool) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		if htmx {
			req.Header.Set("HX-Request", "true")
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", base, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}
	if code, _, body := get(b.URL, "/devservers", false); code != http.StatusOK || !strings.Contains(body, "ann@example.com") {
		t.Fatalf("B with A's cookie: %d, signed in as ann: %v", code, strings.Contains(body, "ann@example.com"))
	}

	// Reserve on A, watch on B.
	var d struct{ Name string }
	_ = json.Unmarshal(a.api(t, token, "POST", "/api/v1/devservers", `{"flavor":"vm.small","region":"prn"}`, http.StatusAccepted), &d)
	if d.Name == "" {
		t.Fatal("no devserver reserved")
	}
	progress := regexp.MustCompile(`<progress value="(\d+)"`)
	seen := map[string]bool{}
	within(t, 60*time.Second, d.Name+" to be ready on B's panel", func() bool {
		code, h, body := get(b.URL, "/devservers/"+d.Name, true)
		if code != http.StatusOK {
			t.Fatalf("B's panel: %d %s", code, body)
		}
		if m := progress.FindStringSubmatch(body); m != nil {
			seen[m[1]] = true
		}
		return h.Get("HX-Trigger") == views.SettledEvent && strings.Contains(body, "ready")
	})
	if len(seen) < 2 {
		t.Errorf("B's panel showed progress %v, want it to move", seen)
	}

	// Sign out on B: the session ends on A too.
	req, _ := http.NewRequest("POST", b.URL+"/logout", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out on B: %d", resp.StatusCode)
	}
	if code, h, _ := get(a.URL, "/devservers", false); code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "login") {
		t.Errorf("A after signing out on B: %d to %q, want a redirect to sign in", code, h.Get("Location"))
	}
}
