package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

type bannerJSON struct {
	ID       int64   `json:"id"`
	Message  string  `json:"message"`
	Severity string  `json:"severity"`
	Region   *string `json:"region"`
	StartsAt string  `json:"starts_at"`
	EndsAt   *string `json:"ends_at"`
	Audience string  `json:"audience"`
	SevID    *int64  `json:"sev_id"`
}

type bannerClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *bannerClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *bannerClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func bannerCount(t *testing.T, srv *handlertest.Server) int {
	t.Helper()
	bs, err := srv.Store.Banners(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(bs)
}

func TestBannersOnEveryPage(t *testing.T) {
	srv := handlertest.New(t)
	clock := &bannerClock{t: time.Now().UTC().Truncate(time.Minute)}
	srv.Store.Now = clock.Now
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	ann := srv.SignIn(t, "ann@example.com")
	// Ann has a devserver in prn, the home region: she is affected by prn banners.
	annToken := srv.Token(t, "ann@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: annToken, Body: `{"flavor":"vm.small","region":"prn"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	bob := srv.SignIn(t, "bob@example.com")

	create := func(body string) bannerJSON {
		t.Helper()
		resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/banners", Token: admin, Body: body})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d %s", body, resp.StatusCode, out)
		}
		return decode[bannerJSON](t, out)
	}
	in := func(d time.Duration) string { return clock.Now().Add(d).Format(time.RFC3339) }
	create(`{"message":"Portal upgrade tonight","severity":"info","audience":"all","ends_at":"` + in(2*time.Hour) + `"}`)
	create(`{"message":"prn is draining","severity":"critical","region":"prn","audience":"affected","sev_id":42}`)
	create(`{"message":"Network maintenance","severity":"warning","audience":"all","starts_at":"` + in(time.Hour) + `","ends_at":"` + in(3*time.Hour) + `"}`)

	shown := func(c *http.Client, path string) string {
		t.Helper()
		resp, body := srv.Do(t, c, handlertest.Request{Path: path})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		var out []string
		doc := handlertest.Doc(t, body)
		for i := range doc.Find("#" + views.BannersID + " .banner").Nodes {
			b := doc.Find("#" + views.BannersID + " .banner").Eq(i)
			out = append(out, b.AttrOr("data-severity", "")+":"+strings.Join(strings.Fields(b.Text()), " "))
		}
		return strings.Join(out, " | ")
	}
	for _, path := range []string{"/devservers", views.TasksURL, views.InboxURL, views.ProfileURL, "/containers"} {
		if got, want := shown(ann, path), "critical:critical prn prn is draining · SEV 42 | info:info Portal upgrade tonight"; got != want {
			t.Errorf("ann on %s sees %q, want %q", path, got, want)
		}
	}
	if got, want := shown(bob, "/devservers"), "info:info Portal upgrade tonight"; got != want {
		t.Errorf("bob sees %q, want %q", got, want)
	}
	clock.Add(90 * time.Minute)
	if got, want := shown(bob, "/devservers"), "warning:warning Network maintenance | info:info Portal upgrade tonight"; got != want {
		t.Errorf("after 90 min bob sees %q, want %q", got, want)
	}
	clock.Add(time.Hour)
	if got, want := shown(bob, "/devservers"), "warning:warning Network maintenance"; got != want {
		t.Errorf("after 150 min bob sees %q, want %q", got, want)
	}
	clock.Add(time.Hour)
	if got := shown(bob, "/devservers"); got != "" {
		t.Errorf("after 210 min bob sees %q", got)
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/banners", Token: annToken})
	p := decode[struct{ Items []bannerJSON }](t, body)
	if resp.StatusCode != 200 || len(p.Items) != 1 || p.Items[0].Message != "prn is draining" || p.Items[0].SevID == nil || *p.Items[0].SevID != 42 {
		t.Errorf("ann's banners: %s", body)
	}
	_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/banners?all=1", Token: admin})
	if p := decode[struct{ Items []bannerJSON }](t, body); len(p.Items) != 3 {
		t.Errorf("all banners: %s", body)
	}
}

func TestBannerAPI(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/banners", Token: admin,
		Body: `{"message":"Drill on Friday","severity":"warning","region":"ftw","audience":"all","starts_at":"2030-01-01T09:00:00Z","ends_at":"2030-01-01T17:00:00Z"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	b := decode[bannerJSON](t, body)
	path := "/api/v1/banners/" + strconv.FormatInt(b.ID, 10)

	t.Run("PATCH changes the named fields only", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: path, Token: admin, Body: `{"severity":"critical","sev_id":7}`})
		got := decode[bannerJSON](t, body)
		if resp.StatusCode != 200 || got.Severity != "critical" || got.Message != "Drill on Friday" || got.Region == nil || *got.Region != "ftw" || got.SevID == nil || *got.SevID != 7 || got.EndsAt == nil {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: path, Token: admin, Body: `{"ends_at":null,"sev_id":null,"region":""}`})
		got = decode[bannerJSON](t, body)
		if resp.StatusCode != 200 || got.EndsAt != nil || got.SevID != nil || got.Region != nil {
			t.Errorf("clearing: %d %s", resp.StatusCode, body)
		}
	})

	bad := []struct {
		name, method, body string
		status             int
		field              string
	}{
		{"an end before its start", "PATCH", `{"ends_at":"2029-12-31T00:00:00Z"}`, 422, "ends_at"},
		{"an unknown region", "PATCH", `{"region":"xyz"}`, 422, "region"},
		{"an oversized message", "PATCH", `{"message":"` + strings.Repeat("x", store.MaxBannerMessage+1) + `"}`, 422, "message"},
		{"an unknown severity", "PATCH", `{"severity":"fatal"}`, 422, "severity"},
		{"affected without a region", "PATCH", `{"audience":"affected"}`, 422, "audience"},
		{"an unknown field", "PATCH", `{"colour":"red"}`, 400, ""},
		{"a time that is not one", "PATCH", `{"ends_at":"tomorrow"}`, 400, ""},
		{"malformed JSON", "PATCH", `{"message":`, 400, ""},
		{"a new banner ending before its start", "POST", `{"message":"m","starts_at":"2030-01-02T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}`, 422, "ends_at"},
		{"a new banner in an unknown region", "POST", `{"message":"m","region":"xyz"}`, 422, "region"},
		{"a new banner with an oversized message", "POST", `{"message":"` + strings.Repeat("x", 501) + `"}`, 422, "message"},
		{"a new banner without a message", "POST", `{"severity":"info"}`, 422, "message"},
	}
	before, _ := srv.Store.Banner(context.Background(), b.ID)
	for _, c := range bad {
		t.Run(c.name+" is refused and changes nothing", func(t *testing.T) {
			p := path
			if c.method == "POST" {
				p = "/api/v1/banners"
			}
			resp, body := srv.Do(t, nil, handlertest.Request{Method: c.method, Path: p, Token: admin, Body: c.body})
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.field != "" && !strings.Contains(body, `"`+c.field+`"`) {
				t.Errorf("the error does not name %s: %s", c.field, body)
			}
			after, _ := srv.Store.Banner(context.Background(), b.ID)
			if after.Message != before.Message || after.Severity != before.Severity || after.RegionCode() != before.RegionCode() ||
				(after.EndsAt == nil) != (before.EndsAt == nil) || !after.UpdatedAt.Equal(before.UpdatedAt) {
				t.Errorf("the banner changed: %+v", after)
			}
			if n := bannerCount(t, srv); n != 1 {
				t.Errorf("%d banners", n)
			}
		})
	}
	t.Run("an unknown banner is not found and nothing changes", func(t *testing.T) {
		before, _ := srv.Store.Banner(context.Background(), b.ID)
		for _, c := range []struct{ method, path, body string }{
			{"PATCH", "/api/v1/banners/999999", `{"message":"elsewhere"}`},
			{"PATCH", "/api/v1/banners/abc", `{"message":"elsewhere"}`},
			{"DELETE", "/api/v1/banners/999999", ""},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: c.method, Path: c.path, Token: admin, Body: c.body})
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
				t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, body)
			}
		}
		after, _ := srv.Store.Banner(context.Background(), b.ID)
		if after.Message != before.Message || !after.UpdatedAt.Equal(before.UpdatedAt) || bannerCount(t, srv) != 1 {
			t.Errorf("changed: %+v", after)
		}
	})
	t.Run("DELETE removes it", func(t *testing.T) {
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: path, Token: admin})
		if resp.StatusCode != http.StatusNoContent || bannerCount(t, srv) != 0 {
			t.Errorf("status %d, %d banners", resp.StatusCode, bannerCount(t, srv))
		}
		resp, _ = srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: path, Token: admin})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("again: %d", resp.StatusCode)
		}
	})
}

func TestAdminBannersPage(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
	form := url.Values{"message": {"Storm drill in lla"}, "severity": {"warning"}, "region": {"lla"}, "audience": {"affected"},
		"starts_at": {"2030-03-01T09:00"}, "ends_at": {"2030-03-01T12:00"}, "sev_id": {"12"}}
	resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: views.AdminBannersURL, Form: form})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	_, body := srv.Do(t, admin, handlertest.Request{Path: views.AdminBannersURL})
	doc := handlertest.Doc(t, body)
	row := doc.Find("#banner-list tbody tr").First()
	if row.AttrOr("data-status", "") != "scheduled" || !strings.Contains(row.Text(), "Storm drill in lla") || !strings.Contains(row.Text(), "SEV 12") ||
		!strings.Contains(row.Text(), "2030-03-01 09:00 UTC to 2030-03-01 12:00 UTC") {
		t.Errorf("row: %q", strings.Join(strings.Fields(row.Text()), " "))
	}
	for _, id := range []string{"banner-new-message", "banner-new-severity", "banner-new-region", "banner-new-audience", "banner-new-starts_at", "banner-new-ends_at", "banner-new-sev_id"} {
		if doc.Find(`label[for="`+id+`"]`).Length() != 1 {
			t.Errorf("no label for %s", id)
		}
	}
	bs, _ := srv.Store.Banners(context.Background())
	id := bs[0].ID

	t.Run("the edit page saves changes", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: views.AdminBannerURL(id)})
		if resp.StatusCode != 200 || handlertest.Doc(t, body).Find(`textarea[name="message"]`).Text() != "Storm drill in lla" {
			t.Fatalf("%d", resp.StatusCode)
		}
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set("message", "Storm drill in lla, moved")
		resp, _ = srv.Do(t, admin, handlertest.Request{Method: "POST", Path: views.AdminBannerURL(id), Form: f})
		if got, _ := srv.Store.Banner(context.Background(), id); resp.StatusCode != 303 || got.Message != "Storm drill in lla, moved" {
			t.Errorf("%d %q", resp.StatusCode, got.Message)
		}
	})
	bad := []struct {
		name, field, value, errField string
	}{
		{"an end before its start", "ends_at", "2030-03-01T08:00", "ends_at"},
		{"an unknown region", "region", "xyz", "region"},
		{"an oversized message", "message", strings.Repeat("x", 501), "message"},
		{"a start that is not a time", "starts_at", "soon", "starts_at"},
		{"a SEV that is not a number", "sev_id", "SEV-1", "sev_id"},
	}
	for _, c := range bad {
		for _, target := range []string{views.AdminBannersURL, views.AdminBannerURL(id)} {
			t.Run(c.name+" on "+target+" shows the form again and changes nothing", func(t *testing.T) {
				before, _ := srv.Store.Banner(context.Background(), id)
				f := url.Values{}
				for k, v := range form {
					f[k] = v
				}
				f.Set(c.field, c.value)
				resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: target, Form: f})
				if resp.StatusCode != http.StatusUnprocessableEntity {
					t.Fatalf("status %d", resp.StatusCode)
				}
				doc := handlertest.Doc(t, body)
				if doc.Find(`[data-error-for="`+c.errField+`"]`).Length() != 1 {
					t.Errorf("no error shown for %s", c.errField)
				}
				if doc.Find(`[name="`+c.field+`"][aria-invalid="true"]`).Length() != 1 {
					t.Errorf("%s is not marked invalid", c.field)
				}
				after, _ := srv.Store.Banner(context.Background(), id)
				if after.Message != before.Message || !after.UpdatedAt.Equal(before.UpdatedAt) || bannerCount(t, srv) != 1 {
					t.Errorf("changed: %+v", after)
				}
			})
		}
	}
	t.Run("delete", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: views.AdminBannerDeleteURL(id), Form: url.Values{}})
		if resp.StatusCode != 303 || bannerCount(t, srv) != 0 {
			t.Errorf("%d, %d banners", resp.StatusCode, bannerCount(t, srv))
		}
	})
}
