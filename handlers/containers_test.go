package handlers_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
)

type containerJSON struct {
	ID            string `json:"id"`
	Owner         string `json:"owner"`
	Type          string `json:"type"`
	Profile       string `json:"profile"`
	Region        string `json:"region"`
	State         string `json:"state"`
	PooledAt      string `json:"pooled_at"`
	ExpiresAt     string `json:"expires_at"`
	PlacementNote string `json:"placement_note"`
	EndReason     string `json:"end_reason"`
	ReplacedBy    string `json:"replaced_by"`
	Features      []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"features"`
	Access *struct {
		Terminal   string `json:"terminal_url"`
		SandboxURL string `json:"sandbox_url"`
	} `json:"access"`
}

// fillContainerPools fills every container pool and waits until the pools
// hold want ready containers in all.
func fillContainerPools(t *testing.T, srv *handlertest.Server, want int) {
	t.Helper()
	ctx := context.Background()
	if _, err := jobs.RefillContainerPools(ctx, srv.Store, srv.Runner, 0, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	handlertest.Eventually(t, 20*time.Second, "the container pools to be ready", func() bool {
		ready, err := srv.Store.ContainerPoolReady(ctx)
		n := 0
		for _, r := range ready {
			n += r
		}
		return err == nil && n == want
	})
}

// containerRows counts the containers table, pooled ones included.
func containerRows(t *testing.T, srv *handlertest.Server) int {
	t.Helper()
	var n int
	if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM containers`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestContainersAPI(t *testing.T) {
	srv := handlertest.New(t)
	ann := srv.Token(t, "ann@example.com")
	bob := srv.Token(t, "bob@example.com")
	// The demo pools: web/medium (2) and jupyter/small (1) in each of 3 regions.
	fillContainerPools(t, srv, 9)

	t.Run("the catalogue lists the demo types and profiles", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers/types", Token: bob})
		cat := decode[struct {
			Types []struct {
				Name          string   `json:"name"`
				LifetimeHours int      `json:"lifetime_hours"`
				Profiles      []string `json:"profiles"`
			} `json:"types"`
			Profiles []struct {
				Name string `json:"name"`
				GPUs int    `json:"gpus"`
			} `json:"profiles"`
		}](t, body)
		var names []string
		for _, ty := range cat.Types {
			names = append(names, ty.Name)
		}
		if resp.StatusCode != 200 || strings.Join(names, " ") != "web android ios jupyter ml-gpu" || len(cat.Profiles) != 4 {
			t.Fatalf("%d %v %s", resp.StatusCode, names, body)
		}
		if cat.Types[4].Profiles[0] != "gpu" || cat.Types[0].LifetimeHours != 36 || cat.Types[3].LifetimeHours != 24 {
			t.Errorf("types = %+v", cat.Types)
		}
	})

	t.Run("a request the pool can serve is ready at once, in the nearest region", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: ann, Body: `{"type":"web","profile":"medium","features":["python"]}`})
		c := decode[containerJSON](t, body)
		if resp.StatusCode != http.StatusCreated || c.State != "ready" || c.PooledAt == "" || c.Region != "prn" || c.Owner != "ann@example.com" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if resp.Header.Get("Location") != "/api/v1/containers/"+c.ID {
			t.Errorf("Location %q", resp.Header.Get("Location"))
		}
		expires, err := time.Parse(time.RFC3339, c.ExpiresAt)
		if err != nil || expires.Sub(srv.Store.Now()) < 35*time.Hour || expires.Sub(srv.Store.Now()) > 36*time.Hour {
			t.Errorf("expires_at %q, want 36 h from now", c.ExpiresAt)
		}
		if c.Access == nil || c.Access.SandboxURL != "https://"+c.ID+".sandbox.devport.internal/" || c.Access.Terminal != "/containers/"+c.ID {
			t.Errorf("access = %+v", c.Access)
		}
		// The feature goes on after the assignment.
		handlertest.Eventually(t, 10*time.Second, "python to be installed", func() bool {
			_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers/" + c.ID, Token: ann})
			got := decode[containerJSON](t, body)
			return len(got.Features) == 1 && got.Features[0].Name == "python" && got.Features[0].State == "installed"
		})
		// And a refill replaces what the pool gave.
		fillContainerPools(t, srv, 9)
	})

	t.Run("a request no pool serves is built cold", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: ann, Body: `{"type":"android","profile":"large","region":"ftw"}`})
		c := decode[containerJSON](t, body)
		if resp.StatusCode != http.StatusCreated || c.State != "provisioning" || c.PooledAt != "" || c.Region != "ftw" || c.Access != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		srv.WaitContainer(t, c.ID, store.ContainerReady)
	})

	t.Run("the list holds the caller's containers only", func(t *testing.T) {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers", Token: ann})
		if got := decode[page[containerJSON]](t, body); len(got.Items) != 2 {
			t.Errorf("ann sees %d containers: %s", len(got.Items), body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers", Token: bob})
		if got := decode[page[containerJSON]](t, body); len(got.Items) != 0 {
			t.Errorf("bob sees %d containers", len(got.Items))
		}
	})

	t.Run("the quota refuses one container too many, and changes nothing", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: ann, Body: `{"type":"ios","profile":"medium"}`})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("third: %d %s", resp.StatusCode, body)
		}
		before := containerRows(t, srv)
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: ann, Body: `{"type":"ios","profile":"medium"}`})
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"quota_exceeded"`) || !strings.Contains(body, "3 of your 3 containers") {
			t.Errorf("fourth: %d %s", resp.StatusCode, body)
		}
		if containerRows(t, srv) != before {
			t.Error("a refused request wrote a container")
		}
	})

	t.Run("bad input is refused with the field named, and changes nothing", func(t *testing.T) {
		before := containerRows(t, srv)
		for _, c := range []struct {
			body, field string
			status      int
		}{
			{`{"type":`, "", 400},
			{`{"type":"web","profile":"medium","extra":1}`, "", 400},
			{`{"type":"nope","profile":"medium"}`, "type", 422},
			{`{"type":"web","profile":"huge"}`, "profile", 422},
			{`{"type":"ml-gpu","profile":"small"}`, "profile", 422},
			{`{"type":"ios","profile":"medium","features":["cuda"]}`, "features", 422},
			{`{"type":"web","profile":"medium","region":"mars"}`, "region", 422},
			{`{"type":"web","profile":"medium","features":["` + strings.Repeat(`python","`, 25) + `python"]}`, "features", 422},
			{`{"type":"` + strings.Repeat("x", 5000) + `","profile":"medium"}`, "type", 422},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: bob, Body: c.body})
			if resp.StatusCode != c.status || (c.field != "" && !strings.Contains(body, `"`+c.field+`":`)) {
				t.Errorf("%.60s: %d %.300s", c.body, resp.StatusCode, body)
			}
		}
		if containerRows(t, srv) != before {
			t.Error("bad input wrote a container")
		}
	})

	t.Run("someone else's container is not found, and stays as it was", func(t *testing.T) {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers?state=ready", Token: ann})
		id := decode[page[containerJSON]](t, body).Items[0].ID
		for _, r := range []handlertest.Request{
			{Path: "/api/v1/containers/" + id, Token: bob},
			{Method: "DELETE", Path: "/api/v1/containers/" + id, Token: bob},
			{Method: "POST", Path: "/api/v1/containers/" + id + "/fresh", Token: bob},
			{Path: "/api/v1/containers/od00000000", Token: bob},
			{Path: "/api/v1/containers/not-an-id", Token: bob},
		} {
			resp, body := srv.Do(t, nil, r)
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
				t.Errorf("%s %s: %d %s", r.Method, r.Path, resp.StatusCode, body)
			}
		}
		c, err := srv.Store.Container(context.Background(), id)
		if err != nil || c.State != store.ContainerReady || c.Owner != "ann@example.com" {
			t.Errorf("after the stranger: %+v %v", c, err)
		}
	})

	t.Run("a fresh one ends the old container and gives a new one like it", func(t *testing.T) {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers?state=ready", Token: ann})
		var old containerJSON
		for _, c := range decode[page[containerJSON]](t, body).Items {
			if c.Type == "web" {
				old = c
			}
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers/" + old.ID + "/fresh", Token: ann})
		fresh := decode[containerJSON](t, body)
		if resp.StatusCode != http.StatusCreated || fresh.ID == old.ID || fresh.Type != "web" || fresh.Profile != "medium" ||
			len(fresh.Features) != 1 || fresh.Features[0].Name != "python" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		ended := srv.WaitContainer(t, old.ID, store.ContainerEnded)
		if ended.EndReason != store.EndReplaced || ended.ReplacedBy != fresh.ID {
			t.Errorf("old = %+v", ended)
		}
	})

	t.Run("ending a container destroys it and gives its capacity back", func(t *testing.T) {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers?state=ready", Token: ann})
		id := decode[page[containerJSON]](t, body).Items[0].ID
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/containers/" + id, Token: ann})
		if resp.StatusCode != http.StatusAccepted || decode[containerJSON](t, body).State != "ending" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		srv.WaitContainer(t, id, store.ContainerEnded)
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/containers/" + id, Token: ann})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `"not_live"`) {
			t.Errorf("again: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("a draining region is skipped, and the answer says so", func(t *testing.T) {
		if _, err := srv.Store.WriteDB().Exec(`UPDATE regions SET status = 'draining' WHERE code = 'prn'`); err != nil {
			t.Fatal(err)
		}
		defer srv.Store.WriteDB().Exec(`UPDATE regions SET status = 'active' WHERE code = 'prn'`)
		carl := srv.Token(t, "carl@example.com")
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: carl, Body: `{"type":"web","profile":"medium"}`})
		c := decode[containerJSON](t, body)
		if resp.StatusCode != http.StatusCreated || c.Region != "ftw" || c.State != "ready" || c.PlacementNote != "Served from ftw because prn is draining." {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestContainerPages(t *testing.T) {
	srv := handlertest.New(t)
	ann := srv.SignIn(t, "ann@example.com")
	fillContainerPools(t, srv, 9)

	t.Run("the navigation and the list lead to the request form", func(t *testing.T) {
		resp, body := srv.Do(t, ann, handlertest.Request{Path: "/containers"})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 200 || doc.Find(`nav a[href="/containers"]`).Length() != 1 || doc.Find(`main a[href="/containers/new"]`).Length() == 0 {
			t.Fatalf("%d %.500s", resp.StatusCode, body)
		}
		if !strings.Contains(doc.Find(".ephemeral").Text(), "no backups") {
			t.Error("the list does not say containers are ephemeral")
		}
		if !strings.Contains(doc.Find("#container-rows").Text(), "You have no containers") {
			t.Error("no empty state")
		}
	})

	t.Run("the form offers the types, the profiles of the chosen type and the regions with their pools", func(t *testing.T) {
		_, body := srv.Do(t, ann, handlertest.Request{Path: "/containers/new?type=web"})
		doc := handlertest.Doc(t, body)
		if doc.Find(`input[name=type]`).Length() != 5 {
			t.Errorf("%d types", doc.Find(`input[name=type]`).Length())
		}
		var profiles []string
		doc.Find(`#container-profile option`).Each(func(_ int, s *goquery.Selection) { v, _ := s.Attr("value"); profiles = append(profiles, v) })
		if strings.Join(profiles, " ") != "small medium large" {
			t.Errorf("web profiles %v", profiles)
		}
		if !strings.Contains(doc.Find(`#container-region option[value=prn]`).Text(), "2 ready in its pool") {
			t.Errorf("prn option %q", doc.Find(`#container-region option[value=prn]`).Text())
		}
		if doc.Find(`label[for=container-profile]`).Length() != 1 || doc.Find(`label[for=container-region]`).Length() != 1 {
			t.Error("unlabelled inputs")
		}
		// HTMX asks for the choices of another type.
		resp, body := srv.Do(t, ann, handlertest.Request{Path: "/containers/new/options?type=ml-gpu", Headers: map[string]string{"HX-Request": "true"}})
		doc = handlertest.Doc(t, body)
		if resp.StatusCode != 200 || doc.Find("#container-options").Length() != 1 || doc.Find("header nav").Length() != 0 ||
			doc.Find(`#container-profile option`).Length() != 1 || doc.Find(`input[name=features][value=cuda]`).Length() != 1 {
			t.Errorf("%d %.500s", resp.StatusCode, body)
		}
	})

	var id string
	t.Run("a request from the form lands on the container's page, ready from the pool", func(t *testing.T) {
		resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/containers", Form: url.Values{"type": {"web"}, "profile": {"medium"}, "region": {""}}})
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/containers/od") {
			t.Fatalf("%d %q", resp.StatusCode, loc)
		}
		id = strings.TrimPrefix(loc, "/containers/")
		_, body := srv.Do(t, ann, handlertest.Request{Path: loc})
		doc := handlertest.Doc(t, body)
		if !strings.Contains(doc.Find(".flash-success").Text(), "is ready in prn: it came from the pool") {
			t.Errorf("flash %q", doc.Find(".flash-success").Text())
		}
		if st, _ := doc.Find("#container-status-" + id).Attr("data-state"); st != "ready" {
			t.Errorf("state %q", st)
		}
		if cd, ok := doc.Find(".countdown").Attr("data-countdown"); !ok || !strings.Contains(doc.Find(".countdown").Text(), "in 36 hours") {
			t.Errorf("countdown %q %q", cd, doc.Find(".countdown").Text())
		}
		if !strings.Contains(doc.Find(".ephemeral").Text(), "no backups") {
			t.Error("the page does not say the container is ephemeral")
		}
		if doc.Find(`#container-access button[data-terminal-socket="/containers/`+id+`/terminal/ws"]`).Length() != 1 {
			t.Error("no terminal button")
		}
		if href, _ := doc.Find("a.sandbox").Attr("href"); href != "https://"+id+".sandbox.devport.internal/" {
			t.Errorf("sandbox %q", href)
		}
		if doc.Find(`form[action="/containers/`+id+`/fresh"] button`).Text() != "Fresh one" || doc.Find(`form[action="/containers/`+id+`/end"] button`).Length() != 1 {
			t.Error("no Fresh one / End buttons")
		}
	})

	t.Run("a bad request shows the form again with the problem, and changes nothing", func(t *testing.T) {
		before := containerRows(t, srv)
		resp, body := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/containers", Form: url.Values{"type": {"ml-gpu"}, "profile": {"small"}}})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(doc.Find("#error-profile").Text(), "ml-gpu containers run on gpu, not small") {
			t.Errorf("%d %q", resp.StatusCode, doc.Find("#error-profile").Text())
		}
		if containerRows(t, srv) != before {
			t.Error("a refused request wrote a container")
		}
	})

	t.Run("a fresh one from the page replaces the container", func(t *testing.T) {
		resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/containers/" + id + "/fresh", Form: url.Values{}})
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || loc == "/containers/"+id || !strings.HasPrefix(loc, "/containers/od") {
			t.Fatalf("%d %q", resp.StatusCode, loc)
		}
		old := srv.WaitContainer(t, id, store.ContainerEnded)
		_, body := srv.Do(t, ann, handlertest.Request{Path: "/containers/" + id})
		doc := handlertest.Doc(t, body)
		if old.ReplacedBy != strings.TrimPrefix(loc, "/containers/") || doc.Find(`a[href="`+loc+`"]`).Length() == 0 {
			t.Errorf("replaced by %q; page %.300s", old.ReplacedBy, doc.Find(".container-status").Text())
		}
		if !strings.Contains(doc.Find("#container-access").Text(), "has ended") {
			t.Error("the ended container still offers access")
		}
		id = strings.TrimPrefix(loc, "/containers/")
	})

	t.Run("ending from the list destroys the container and lists it as ended", func(t *testing.T) {
		resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/containers/" + id + "/end", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d", resp.StatusCode)
		}
		srv.WaitContainer(t, id, store.ContainerEnded)
		_, body := srv.Do(t, ann, handlertest.Request{Path: "/containers"})
		doc := handlertest.Doc(t, body)
		if doc.Find(`#container-rows tr[data-container]`).Length() != 0 || !strings.Contains(doc.Find(`.containers-ended tr[data-container="`+id+`"]`).Text(), "Ended by ann@example.com") {
			t.Errorf("%.800s", doc.Find("main").Text())
		}
	})
}

// page is a list answer of the API.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func TestContainerTerminal(t *testing.T) {
	srv := handlertest.New(t)
	ann := srv.SignIn(t, "ann@example.com")
	bob := srv.SignIn(t, "bob@example.com")
	admin := srv.SignIn(t, "root@example.com", store.RoleAdmin)
	resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/containers", Form: url.Values{"type": {"jupyter"}, "profile": {"small"}}})
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/containers/")
	srv.WaitContainer(t, id, store.ContainerReady)

	t.Run("the owner's terminal runs commands in the container", func(t *testing.T) {
		term := openTerminal(t, srv, ann, id)
		term.mustSee("dev@" + id + ":~$ ")
		term.send("cat .devport/stack.json\r")
		term.mustSee(`"type": "jupyter"`)
		events := terminalEvents(t, srv, id)
		if len(events) == 0 {
			t.Error("the session was not audited on the container")
		}
	})
	t.Run("a stranger and an admin who is not the owner get no shell", func(t *testing.T) {
		for who, c := range map[string]*http.Client{"stranger": bob, "admin": admin} {
			if _, resp, err := dialTerminal(t, srv, c, id, srv.URL, ""); err == nil || resp == nil || (resp.StatusCode != 404 && resp.StatusCode != 403) {
				t.Errorf("%s: %v %v", who, err, resp)
			}
		}
	})
}

func TestContainerAfterItsTypeChanged(t *testing.T) {
	srv := handlertest.New(t)
	ann := srv.SignIn(t, "ann@example.com")
	admin := srv.Token(t, "root@example.com", store.RoleAdmin)
	resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/containers", Form: url.Values{"type": {"web"}, "profile": {"medium"}}})
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/containers/")
	srv.WaitContainer(t, id, store.ContainerReady)
	// The admins shorten web's lifetime and stop offering medium.
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/containers/types/web", Token: admin,
		Body: `{"stack":"Web","lifetime_hours":2,"images":{"sim":"sim/web"},"profiles":["small","large"]}`})
	if resp.StatusCode != 200 {
		t.Fatalf("change web: %d %s", resp.StatusCode, body)
	}

	t.Run("the page keeps the lifetime the container was given", func(t *testing.T) {
		_, body := srv.Do(t, ann, handlertest.Request{Path: "/containers/" + id})
		status := handlertest.Doc(t, body).Find("#container-status-" + id).Text()
		if !strings.Contains(status, "after its 36 hours lifetime") {
			t.Errorf("status says %q", status)
		}
		if handlertest.Doc(t, body).Find(`form[action="/containers/`+id+`/fresh"]`).Length() != 0 {
			t.Error("a fresh one is offered though the type no longer allows the profile")
		}
	})
	t.Run("a fresh one is refused with a message, and nothing changes", func(t *testing.T) {
		before := containerRows(t, srv)
		resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/containers/" + id + "/fresh", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/containers/"+id {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body := srv.Do(t, ann, handlertest.Request{Path: "/containers/" + id})
		if flash := handlertest.Doc(t, body).Find(".flash-error").Text(); !strings.Contains(flash, "web containers run on small, large, not medium") {
			t.Errorf("flash %q", flash)
		}
		if c, _ := srv.Store.Container(context.Background(), id); c.State != store.ContainerReady || containerRows(t, srv) != before {
			t.Errorf("the refused fresh one changed something: %s", c.State)
		}
	})
	t.Run("an admin ending it tells its owner", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/containers/" + id, Token: admin})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		_, body = srv.Do(t, ann, handlertest.Request{Path: "/inbox"})
		if !strings.Contains(body, "was ended by root@example.com") {
			t.Error("the owner's inbox does not say an admin ended the container")
		}
	})
}
