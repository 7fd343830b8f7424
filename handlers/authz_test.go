package handlers_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// TestAuthorizationMatrix holds every route against every kind of caller:
// anonymous, the owner of the object, someone it is shared with, a stranger,
// an admin and a reviewer.
// A cell is the status the caller gets; "" means the route is not tried for
// that caller (a second caller would change the state the next one sees).
func TestAuthorizationMatrix(t *testing.T) {
	srv := handlertest.New(t)
	tokens := map[string]string{
		"owner":    srv.Token(t, "owner@example.com"),
		"sharee":   srv.Token(t, "sharee@example.com"),
		"stranger": srv.Token(t, "stranger@example.com"),
		"admin":    srv.Token(t, "admin@example.com", store.RoleAdmin),
		"reviewer": srv.Token(t, "reviewer@example.com", store.RoleReviewer),
	}
	browsers := map[string]*http.Client{
		"owner":    srv.SignIn(t, "owner@example.com"),
		"sharee":   srv.SignIn(t, "sharee@example.com"),
		"stranger": srv.SignIn(t, "stranger@example.com"),
		"admin":    srv.SignIn(t, "admin@example.com", store.RoleAdmin),
		"reviewer": srv.SignIn(t, "reviewer@example.com", store.RoleReviewer),
	}
	reserve := func() string {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tokens["owner"], Body: `{"flavor":"vm.small"}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("reserve: %d %s", resp.StatusCode, body)
		}
		name := decode[devserverJSON](t, body).Name
		srv.WaitState(t, name, store.StateReady)
		return name
	}
	ds := reserve()
	// The sharee is someone the owner shared ds with: they see it and what
	// hangs off it, and are refused (403, not 404) every change to it.
	if resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + ds + "/shares", Token: tokens["owner"], Body: `{"email":"sharee@example.com"}`}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("share: %d %s", resp.StatusCode, body)
	}
	// ct is the owner's On Demand container (built cold: no pool is filled).
	requestContainer := func() string {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: tokens["owner"], Body: `{"type":"web","profile":"small"}`})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("request a container: %d %s", resp.StatusCode, body)
		}
		id := decode[containerJSON](t, body).ID
		srv.WaitContainer(t, id, store.ContainerReady)
		return id
	}
	ct := requestContainer()
	task := ownerTask(t, srv)
	sev := matrixSev(t, srv, tokens["admin"]) // an open SEV: engineers read it and add notes
	// fu is a follow-up of sev that "owner" owns: they may change its status.
	fu := matrixFollowup(t, srv, tokens["admin"], sev)
	callers := []string{"anonymous", "owner", "sharee", "stranger", "admin", "reviewer"}

	api := []struct {
		method, path, body string
		want               map[string]int
	}{
		{"GET", "/api/v1/me", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"PATCH", "/api/v1/me", `{"home_region":"nowhere"}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/policies/latencies", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"PUT", "/api/v1/policies/latencies", `{"from":"prn","to":"prn","ms":1}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/api/v1/policies/leases", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/api/v1/policies/leases/vm.small", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"PUT", "/api/v1/policies/leases/vm.small", `{"max_days":0,"permanent":"admins"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/api/v1/policies/quotas", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/api/v1/policies/quotas/engineer", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"PUT", "/api/v1/policies/quotas/engineer", `{"devservers":-1,"gpu_devservers":1}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/api/v1/regions", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/flavors", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/features", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/devservers", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/devservers?all=1", "", map[string]int{"anonymous": 401, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/api/v1/devservers", `{"flavor":"nope"}`, map[string]int{"anonymous": 401, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/devservers/" + ds, "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/release", "", map[string]int{"anonymous": 401, "sharee": 403, "stranger": 404, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/extend", `{}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 403, "stranger": 404, "admin": 403, "reviewer": 404}},
		{"GET", "/api/v1/pools", "", map[string]int{"anonymous": 401, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"PUT", "/api/v1/pools/prn/vm.small", `{"target":-1}`, map[string]int{"anonymous": 401, "owner": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"PUT", "/api/v1/containers/types/web", `{"stack":"Web","profiles":[]}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"PUT", "/api/v1/containers/profiles/small", `{"cpus":0,"memory_gb":1,"disk_gb":1}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/api/v1/containers/pools", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/api/v1/capacity", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"PUT", "/api/v1/containers/pools/prn/web/medium", `{"target":-1}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/api/v1/devservers/" + ds + "/features", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/features", `{"feature":"nope"}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 403, "stranger": 404, "admin": 422, "reviewer": 404}},
		{"DELETE", "/api/v1/devservers/" + ds + "/features/git", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 403, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/oneoffs", "", map[string]int{"anonymous": 401, "owner": 409, "sharee": 403, "stranger": 404, "admin": 409, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/migrate", `{}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 403, "stranger": 404, "admin": 422, "reviewer": 404}},
		{"GET", "/api/v1/devservers/" + ds + "/migration", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/me/oneoffs", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"PUT", "/api/v1/me/oneoffs", `{"env":{"1":"x"}}`, map[string]int{"anonymous": 401, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"PUT", "/api/v1/features/git", `{"version":""}`, map[string]int{"anonymous": 401, "owner": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/api/v1/devservers/" + ds + "/backups", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/backups", "", map[string]int{"anonymous": 401, "owner": 202, "sharee": 403, "stranger": 404, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/restore", `{"backup_id":999999}`, map[string]int{"anonymous": 401, "owner": 404, "sharee": 403, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/devservers/" + ds + "/restores", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"GET", "/api/v1/notifications", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/notifications/read-all", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/notifications/999999/read", "", map[string]int{"anonymous": 401, "owner": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/runbooks", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/api/v1/runbooks/backup-region", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/api/v1/runbooks/backup-region/versions", `{"yaml":"name: x"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/api/v1/runbooks/backup-region/runs", `{"params":{"region":5}}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/api/v1/runs/999999", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/runs/999999/cancel", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/runs/999999/steps/nope/complete", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/runs/999999/steps/nope/retry", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/regions/nowhere/storm", `{"reason":"x","confirm":"nowhere"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/regions/nowhere/dark-storm", `{"count":1,"confirm":"nowhere"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/regions/nowhere/recover", `{}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/regions/nowhere/drain", `{"reason":"x"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/regions/nowhere/undrain", `{}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/api/v1/hosts", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/api/v1/hosts/999999/maintenance", `{}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/hosts/999999/decommission", `{}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/api/v1/health", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/api/v1/support", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/api/v1/support/999999", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/api/v1/devservers/" + ds + "/rage", `{"note":"slow"}`, map[string]int{"anonymous": 401, "owner": 202, "sharee": 403, "stranger": 404, "admin": 202, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/move-off-host", "", map[string]int{"anonymous": 401, "owner": 409, "sharee": 403, "stranger": 404, "admin": 409, "reviewer": 404}},
		{"GET", "/api/v1/devservers/" + ds + "/health", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		// owner and admin: 202 (TestOwnerRestart), left out so ds is not restarted under the other rows.
		{"POST", "/api/v1/devservers/" + ds + "/restart", "", map[string]int{"anonymous": 401, "sharee": 403, "stranger": 404, "reviewer": 404}},
		{"POST", "/api/v1/support/bundles", `{"parts":{}}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"POST", "/api/v1/cli/token", `{"code":"dpc_nope","verifier":"nope"}`, map[string]int{"anonymous": 400, "owner": 400, "stranger": 400, "admin": 400}},
		{"GET", "/api/v1/openapi.json", "", map[string]int{"anonymous": 200, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/devservers/" + ds + "/storm/replace", `{}`, map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/storm/choice", `{"choice":"keep"}`, map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/tasks", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/tasks/" + task + "/done", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/me/preferences", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"PUT", "/api/v1/me/preferences", `{"inbox":false}`, map[string]int{"anonymous": 401, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/banners", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/banners?all=1", "", map[string]int{"anonymous": 401, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/api/v1/banners", `{"message":""}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"PATCH", "/api/v1/banners/999999", `{"message":"x"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"DELETE", "/api/v1/banners/999999", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/api/v1/deliveries", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/api/v1/deliveries/999999/retry", "", map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/api/v1/sevs", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/sevs", `{"title":""}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/sevs/" + sev, "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"PATCH", "/api/v1/sevs/" + sev, `{"severity":9}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/sevs/" + sev + "/timeline", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/sevs/" + sev + "/timeline", `{"text":""}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"POST", "/api/v1/sevs/" + sev + "/broadcast", `{"text":""}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"PUT", "/api/v1/sevs/999999/subscription", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"DELETE", "/api/v1/sevs/999999/subscription", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/sevs/" + sev + "/report", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"PUT", "/api/v1/sevs/" + sev + "/report", `{"summary":"x"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 409, "reviewer": 409}},
		{"GET", "/api/v1/sevs/" + sev + "/review", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/api/v1/sevs/" + sev + "/review", `{"checklist":{"nope":true}}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/reviews", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/sevs/" + sev + "/followups", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/sevs/" + sev + "/followups", `{"kind":"nope"}`, map[string]int{"anonymous": 401, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/followups", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"PATCH", "/api/v1/followups/" + fu, `{"status":"nope"}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"PATCH", "/api/v1/followups/" + fu, `{"title":""}`, map[string]int{"owner": 403, "admin": 422, "reviewer": 422}},
		{"PATCH", "/api/v1/followups/999999", `{"status":"done"}`, map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/sevs/" + sev + "/export", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/devservers/" + ds + "/shares", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/shares", `{"email":"nobody@example.com"}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 403, "stranger": 404, "admin": 422, "reviewer": 404}},
		{"DELETE", "/api/v1/devservers/" + ds + "/shares/nobody@example.com", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 403, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/me/keys", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/me/keys", `{"public_key":"not a key"}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"DELETE", "/api/v1/me/keys/999999", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/me/tokens", "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/api/v1/me/tokens", `{"name":"","scope":"read"}`, map[string]int{"anonymous": 401, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"DELETE", "/api/v1/me/tokens/999999", "", map[string]int{"anonymous": 401, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/api/v1/containers/types", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/containers", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/containers?all=1", "", map[string]int{"anonymous": 401, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/api/v1/containers", `{"type":"nope","profile":"small"}`, map[string]int{"anonymous": 401, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/containers/" + ct, "", map[string]int{"anonymous": 401, "owner": 200, "sharee": 404, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"DELETE", "/api/v1/containers/" + ct, "", map[string]int{"anonymous": 401, "sharee": 404, "stranger": 404, "reviewer": 404}},
		{"POST", "/api/v1/containers/" + ct + "/fresh", "", map[string]int{"anonymous": 401, "sharee": 404, "stranger": 404, "admin": 403, "reviewer": 404}},
	}
	for _, r := range api {
		for _, who := range callers {
			want, ok := r.want[who]
			if !ok {
				continue
			}
			t.Run(who+" "+r.method+" "+r.path, func(t *testing.T) {
				resp, body := srv.Do(t, nil, handlertest.Request{Method: r.method, Path: r.path, Token: tokens[who], Body: r.body})
				if resp.StatusCode != want {
					t.Errorf("status %d, want %d: %.300s", resp.StatusCode, want, body)
				}
			})
		}
	}

	html := []struct {
		method, path string
		form         url.Values
		want         map[string]int
	}{
		{"GET", "/", nil, map[string]int{"anonymous": 303, "owner": 303, "stranger": 303, "admin": 303, "reviewer": 303}},
		{"GET", "/login", nil, map[string]int{"anonymous": 200, "owner": 303, "stranger": 303, "admin": 303, "reviewer": 303}},
		{"GET", "/devservers", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/devservers/new", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/devservers/new/regions?flavor=vm.small", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/devservers", url.Values{"flavor": {"nope"}}, map[string]int{"anonymous": 303, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/devservers/" + ds, nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/release", url.Values{}, map[string]int{"anonymous": 303, "sharee": 403, "stranger": 404, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/extend", url.Values{}, map[string]int{"anonymous": 303, "owner": 422, "sharee": 403, "stranger": 404, "admin": 403, "reviewer": 404}},
		{"GET", "/admin", nil, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/admin/pools", nil, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/pools", url.Values{"target-prn/vm.small": {"-1"}}, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/admin/policies", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/policies/latencies", url.Values{"latency-prn/ftw": {"-1"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/policies/leases", url.Values{"max_days-vm.small": {"0"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/policies/quotas", url.Values{"devservers-engineer": {"x"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/admin/containers", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/containers/types", url.Values{"name": {"Bad Name"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/containers/types/web", url.Values{"lifetime_hours": {"0"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/containers/profiles", url.Values{"name": {""}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/containers/profiles/small", url.Values{"cpus": {"0"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/admin/capacity", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/capacity/pools", url.Values{"region": {"prn"}, "type": {"web"}, "profile": {"medium"}, "target": {"-1"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/capacity/pools/prn/web/medium", url.Values{"target": {"-1"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/devservers/" + ds + "/features", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/features", url.Values{"feature": {"nope"}}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 404, "admin": 303, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/features/git/remove", url.Values{}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 403, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/oneoffs", url.Values{}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 404, "admin": 303, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/migrate", url.Values{}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 404, "admin": 303, "reviewer": 404}},
		{"GET", "/devservers/" + ds + "/migrate", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 404, "admin": 200, "reviewer": 404, "sharee": 200}},
		{"GET", "/devservers/" + ds + "/activity", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 404, "admin": 200, "reviewer": 404, "sharee": 200}},
		{"GET", "/devservers/" + ds + "/terminal", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 404, "admin": 403, "reviewer": 404}},
		// Without an upgrade the websocket says 426 to those it would accept.
		{"GET", "/devservers/" + ds + "/terminal/ws", nil, map[string]int{"anonymous": 303, "owner": 426, "sharee": 426, "stranger": 404, "admin": 403, "reviewer": 404}},
		{"GET", "/profile/oneoffs", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/profile/oneoffs", url.Values{"env": {"bad line"}}, map[string]int{"anonymous": 303, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/admin/features", nil, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/features/git/version", url.Values{"version": {""}}, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/devservers/" + ds + "/backups", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/backups", url.Values{}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 404, "admin": 303, "reviewer": 404}},
		{"POST", "/backups/999999/restore", url.Values{"target": {ds}}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 403, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/inbox", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/inbox/read-all", url.Values{}, map[string]int{"anonymous": 303, "owner": 303, "stranger": 303, "admin": 303, "reviewer": 303}},
		{"POST", "/inbox/999999/read", url.Values{}, map[string]int{"anonymous": 303, "owner": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/admin/runbooks", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/runbooks", url.Values{"yaml": {"name: x"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/admin/runbooks/backup-region", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/admin/runbooks/backup-region/plan?param.region=nowhere", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/runbooks/backup-region/runs", url.Values{"param.region": {"nowhere"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"POST", "/admin/runbooks/backup-region/versions", url.Values{"yaml": {"steps: ["}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/admin/runs/999999", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/runs/999999/cancel", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/runs/999999/steps/nope/retry", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/runs/999999/steps/nope/complete", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/admin/storms", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/admin/regions/nowhere/storm", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/regions/nowhere/storm", url.Values{"reason": {"x"}, "confirm": {"nowhere"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/regions/nowhere/dark-storm", url.Values{"count": {"1"}, "confirm": {"nowhere"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/regions/nowhere/recover", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/admin/drains", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/admin/regions/nowhere/drain", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/regions/nowhere/drain", url.Values{"reason": {"x"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/regions/nowhere/undrain", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/admin/hosts", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/hosts/999999/maintenance", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/hosts/999999/decommission", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/admin/health", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/admin/support", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"GET", "/admin/support/999999", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/devservers/" + ds + "/rage", url.Values{"note": {"slow"}}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 404, "admin": 303, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/restart", url.Values{}, map[string]int{"anonymous": 303, "sharee": 403, "stranger": 404, "reviewer": 404}},
		{"GET", "/devservers/" + ds + "/move-off-host", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 403, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/move-off-host", url.Values{}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 404, "admin": 303, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/move-me", url.Values{}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 404, "admin": 403, "reviewer": 404}},
		{"GET", "/devservers/" + ds + "/storm", nil, map[string]int{"anonymous": 303, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/storm/replace", url.Values{}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/storm/choice", url.Values{"choice": {"keep"}}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/tasks", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/tasks/999999/done", url.Values{}, map[string]int{"anonymous": 303, "owner": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/profile/preferences", url.Values{"email": {"on"}}, map[string]int{"anonymous": 303, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/admin/banners", nil, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/banners", url.Values{"message": {""}}, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 422, "reviewer": 403}},
		{"GET", "/admin/banners/999999", nil, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/banners/999999", url.Values{"message": {"x"}}, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"POST", "/admin/banners/999999/delete", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/admin/deliveries", nil, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/admin/deliveries/999999/retry", url.Values{}, map[string]int{"anonymous": 303, "owner": 403, "stranger": 403, "admin": 404, "reviewer": 403}},
		{"GET", "/sevs", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/sevs/new", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 200}},
		{"POST", "/sevs", url.Values{"title": {""}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"GET", "/sevs/" + sev, nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/sevs/" + sev + "/edit", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 200}},
		{"POST", "/sevs/" + sev, url.Values{"title": {""}, "severity": {"2"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"POST", "/sevs/" + sev + "/state", url.Values{"state": {"reviewed"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 409, "reviewer": 409}},
		{"POST", "/sevs/" + sev + "/timeline", url.Values{"text": {""}}, map[string]int{"anonymous": 303, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"POST", "/sevs/" + sev + "/broadcast", url.Values{"text": {""}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"POST", "/sevs/999999/subscription", url.Values{"subscribe": {"1"}}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/sevs/" + sev + "/report/edit", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 404, "reviewer": 404}},
		{"POST", "/sevs/" + sev + "/report", url.Values{"summary": {"x"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 409, "reviewer": 409}},
		{"GET", "/sevs/" + sev + "/review", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 200}},
		{"POST", "/sevs/" + sev + "/review", url.Values{"checklist": {"nope"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"GET", "/reviews", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/followups", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/followups?kind=nope", nil, map[string]int{"anonymous": 303, "owner": 422, "admin": 422}},
		{"POST", "/followups/" + fu, url.Values{"status": {"nope"}}, map[string]int{"anonymous": 303, "owner": 303, "sharee": 403, "stranger": 403, "admin": 303, "reviewer": 303}},
		{"GET", "/sevs/" + sev + "/followups/new", nil, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 200, "reviewer": 200}},
		{"POST", "/sevs/" + sev + "/followups", url.Values{"kind": {"nope"}}, map[string]int{"anonymous": 303, "owner": 403, "sharee": 403, "stranger": 403, "admin": 422, "reviewer": 422}},
		{"GET", "/sevs/metrics", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/sevs/" + sev + "/export.md", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/devservers/" + ds + "/shares", url.Values{"email": {"nobody@example.com"}}, map[string]int{"anonymous": 303, "owner": 422, "sharee": 403, "stranger": 404, "admin": 422, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/shares/nobody@example.com/remove", url.Values{}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 403, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"GET", "/profile", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/profile/keys", url.Values{"public_key": {"not a key"}}, map[string]int{"anonymous": 303, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"POST", "/profile/keys/999999/delete", url.Values{}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/profile/tokens", url.Values{"name": {""}, "scope": {"read"}, "expires_in_days": {"90"}}, map[string]int{"anonymous": 303, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"POST", "/profile/tokens/999999/revoke", url.Values{}, map[string]int{"anonymous": 303, "owner": 404, "sharee": 404, "stranger": 404, "admin": 404, "reviewer": 404}},
		{"POST", "/profile/home-region", url.Values{"home_region": {"nowhere"}}, map[string]int{"anonymous": 303, "owner": 422, "sharee": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/containers", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/containers/new", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/containers/new/options?type=android", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/containers", url.Values{"type": {"nope"}}, map[string]int{"anonymous": 303, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/containers/" + ct, nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 404, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"GET", "/containers/" + ct + "/access", nil, map[string]int{"anonymous": 303, "owner": 200, "sharee": 404, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"GET", "/containers/" + ct + "/terminal/ws", nil, map[string]int{"anonymous": 303, "owner": 426, "sharee": 404, "stranger": 404, "admin": 403, "reviewer": 404}},
		{"POST", "/containers/" + ct + "/end", url.Values{}, map[string]int{"anonymous": 303, "sharee": 404, "stranger": 404, "reviewer": 404}},
		{"POST", "/containers/" + ct + "/fresh", url.Values{}, map[string]int{"anonymous": 303, "sharee": 404, "stranger": 404, "admin": 403, "reviewer": 404}},
		{"GET", "/healthz", nil, map[string]int{"anonymous": 200, "owner": 200}},
		{"GET", "/readyz", nil, map[string]int{"anonymous": 200, "owner": 200}},
		{"GET", "/metrics", nil, map[string]int{"anonymous": 200, "owner": 200}},
		{"GET", "/cli/login?port=1&state=s&challenge=c&name=h", nil, map[string]int{"anonymous": 303, "owner": 400, "stranger": 400, "admin": 400, "reviewer": 400}},
		{"POST", "/cli/login", url.Values{"port": {"1"}}, map[string]int{"anonymous": 303, "owner": 400, "stranger": 400, "admin": 400, "reviewer": 400}},
		{"POST", "/cli/login/deny", url.Values{"name": {"laptop"}}, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		// With a session there is no current token to revoke; with a token
		// it is revoked (below, on tokens of their own: the matrix's tokens
		// must live on).
		{"DELETE", "/api/v1/me/tokens/current", nil, map[string]int{"anonymous": 401, "owner": 409, "sharee": 409, "stranger": 409, "admin": 409, "reviewer": 409}},
	}
	for _, r := range html {
		for _, who := range callers {
			want, ok := r.want[who]
			if !ok {
				continue
			}
			t.Run(who+" page "+r.method+" "+r.path, func(t *testing.T) {
				resp, body := srv.Do(t, browsers[who], handlertest.Request{Method: r.method, Path: r.path, Form: r.form})
				if resp.StatusCode != want {
					t.Errorf("status %d, want %d: %.300s", resp.StatusCode, want, body)
				}
				if who == "anonymous" && want == 303 && r.path != "/" && !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
					t.Errorf("anonymous sent to %q, want the sign-in page", resp.Header.Get("Location"))
				}
			})
		}
	}

	t.Run("every route is in the matrix", func(t *testing.T) {
		covered := map[string]bool{"GET /static/*": true, "POST /login/dev": true, "POST /logout": true}
		pattern := func(method, path string) string {
			path, _, _ = strings.Cut(path, "?")
			path = strings.Replace(path, "/pools/prn/vm.small", "/pools/{region}/{flavor}", 1)
			path = strings.Replace(path, "/pools/prn/web/medium", "/pools/{region}/{type}/{profile}", 1)
			path = strings.Replace(path, "/containers/types/web", "/containers/types/{name}", 1)
			path = strings.Replace(path, "/containers/profiles/small", "/containers/profiles/{name}", 1)
			path = strings.Replace(path, "/features/git", "/features/{feature}", 1)
			path = strings.Replace(path, "/shares/nobody@example.com", "/shares/{email}", 1)
			path = strings.Replace(path, "/keys/999999", "/keys/{id}", 1)
			path = strings.Replace(path, "/tokens/999999", "/tokens/{id}", 1)
			path = strings.Replace(path, "/policies/leases/vm.small", "/policies/leases/{flavor}", 1)
			path = strings.Replace(path, "/policies/quotas/engineer", "/policies/quotas/{role}", 1)
			path = strings.Replace(path, "/runbooks/backup-region", "/runbooks/{name}", 1)
			path = strings.Replace(path, "/runs/999999", "/runs/{id}", 1)
			path = strings.Replace(path, "/regions/nowhere/", "/regions/{code}/", 1)
			path = strings.Replace(path, "/steps/nope", "/steps/{step}", 1)
			path = strings.Replace(path, "/hosts/999999/", "/hosts/{id}/", 1)
			path = strings.Replace(path, "/support/999999", "/support/{id}", 1)
			for _, prefix := range []string{"/notifications/", "/inbox/", "/backups/", "/tasks/", "/deliveries/"} {
				path = strings.Replace(path, prefix+"999999/", prefix+"{id}/", 1)
			}
			path = strings.Replace(path, "/tasks/"+task+"/", "/tasks/{id}/", 1)
			if strings.HasSuffix(path, "/banners/999999") || strings.Contains(path, "/banners/999999/") {
				path = strings.Replace(path, "/banners/999999", "/banners/{id}", 1)
			}
			path = strings.Replace(path, "/sevs/999999", "/sevs/{id}", 1)
			path = strings.Replace(path, "/followups/999999", "/followups/{id}", 1)
			path = strings.Replace(path, "/followups/"+fu, "/followups/{id}", 1)
			if strings.HasSuffix(path, "/sevs/"+sev) || strings.Contains(path, "/sevs/"+sev+"/") {
				path = strings.Replace(path, "/sevs/"+sev, "/sevs/{id}", 1)
			}
			path = strings.ReplaceAll(path, ct, "{id}")
			return method + " " + strings.ReplaceAll(path, ds, "{name}")
		}
		for _, r := range api {
			covered[pattern(r.method, r.path)] = true
		}
		for _, r := range html {
			covered[pattern(r.method, r.path)] = true
		}
		err := chi.Walk(srv.Config.Handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
			route = strings.TrimSuffix(strings.ReplaceAll(route, "/*/", "/"), "/")
			if method != "HEAD" && !covered[method+" "+route] && !covered[method+" "+route+"/"] && route != "" {
				t.Errorf("route %s %s is not in the authorization matrix", method, route)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	// The state-changing cells: each on its own devserver.
	for _, who := range []string{"owner", "admin"} {
		t.Run(who+" may release the owner's devserver", func(t *testing.T) {
			name := reserve()
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/release", Token: tokens[who]})
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
		})
		t.Run(who+" may release the owner's devserver from the page", func(t *testing.T) {
			name := reserve()
			resp, _ := srv.Do(t, browsers[who], handlertest.Request{Method: "POST", Path: "/devservers/" + name + "/release", Form: url.Values{}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
		t.Run(who+" may share the owner's devserver and stop sharing it", func(t *testing.T) {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + ds + "/shares", Token: tokens[who], Body: `{"email":"reviewer@example.com"}`})
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("share: status %d: %s", resp.StatusCode, body)
			}
			resp, body = srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/devservers/" + ds + "/shares/reviewer@example.com", Token: tokens[who]})
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("unshare: status %d: %s", resp.StatusCode, body)
			}
			resp, _ = srv.Do(t, browsers[who], handlertest.Request{Method: "POST", Path: "/devservers/" + ds + "/shares", Form: url.Values{"email": {"reviewer@example.com"}}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("share from the page: status %d", resp.StatusCode)
			}
			resp, _ = srv.Do(t, browsers[who], handlertest.Request{Method: "POST", Path: "/devservers/" + ds + "/shares/reviewer@example.com/remove", Form: url.Values{}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("unshare from the page: status %d", resp.StatusCode)
			}
		})
	}
	for _, who := range []string{"owner", "admin"} {
		t.Run(who+" may end the owner's container", func(t *testing.T) {
			id := requestContainer()
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/containers/" + id, Token: tokens[who]})
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
		})
		t.Run(who+" may end the owner's container from the page", func(t *testing.T) {
			id := requestContainer()
			resp, _ := srv.Do(t, browsers[who], handlertest.Request{Method: "POST", Path: "/containers/" + id + "/end", Form: url.Values{}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	t.Run("the owner may take a fresh container", func(t *testing.T) {
		id := requestContainer()
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers/" + id + "/fresh", Token: tokens["owner"]})
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
		resp, _ = srv.Do(t, browsers["owner"], handlertest.Request{Method: "POST", Path: "/containers/" + decode[containerJSON](t, body).ID + "/fresh", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("from the page: status %d", resp.StatusCode)
		}
	})
	t.Run("everyone may revoke the token they call with, and only that one", func(t *testing.T) {
		for _, who := range callers[1:] {
			email := who + "@example.com"
			mine := srv.Token(t, email)
			if resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/tokens/current", Token: mine}); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("%s revokes the current token: %d %s", who, resp.StatusCode, body)
			}
			if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: mine}); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s's revoked token still answers %d", who, resp.StatusCode)
			}
			if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: tokens[who]}); resp.StatusCode != http.StatusOK {
				t.Errorf("%s's other token answers %d after the revocation, want 200", who, resp.StatusCode)
			}
		}
	})
	t.Run("everyone may add and delete their own keys", func(t *testing.T) {
		for _, who := range callers[1:] {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: tokens[who], Body: `{"public_key":"` + newKey(t, "") + `"}`})
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("%s adds a key: %d %s", who, resp.StatusCode, body)
			}
			id := strconv.FormatInt(decode[keyJSON](t, body).ID, 10)
			if resp, _ := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/keys/" + id, Token: tokens[who]}); resp.StatusCode != http.StatusNoContent {
				t.Errorf("%s deletes their key: %d", who, resp.StatusCode)
			}
		}
	})
}

func TestPolicies(t *testing.T) {
	owner := store.User{ID: 1, Roles: []string{"engineer"}}
	stranger := store.User{ID: 2, Roles: []string{"engineer"}}
	admin := store.User{ID: 3, Roles: []string{"engineer", "admin"}}
	reviewer := store.User{ID: 4, Roles: []string{"engineer", "reviewer"}}
	sharee := store.User{ID: 5, Roles: []string{"engineer"}}
	d := store.Devserver{OwnerID: 1, ShareeIDs: []int64{5}}
	for _, c := range []struct {
		who                       string
		u                         store.User
		see, release, listAllWant bool
	}{
		{"owner", owner, true, true, false},
		{"sharee", sharee, true, false, false},
		{"stranger", stranger, false, false, false},
		{"admin", admin, true, true, true},
		{"reviewer", reviewer, false, false, false},
	} {
		if store.CanSeeDevserver(c.u, d) != c.see || store.CanManageDevserver(c.u, d) != c.release || store.CanListAllDevservers(c.u) != c.listAllWant {
			t.Errorf("%s: see %v release %v list all %v", c.who, store.CanSeeDevserver(c.u, d), store.CanManageDevserver(c.u, d), store.CanListAllDevservers(c.u))
		}
	}
}

// ownerTask gives owner@example.com a task through a notification and returns its ID.
func ownerTask(t *testing.T, srv *handlertest.Server) string {
	t.Helper()
	ctx := t.Context()
	var id int64
	err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.NotifyAudience(ctx, store.System, store.Audience{Kind: store.AudienceUsers, Emails: []string{"owner@example.com"}},
			store.Message{Kind: "test", Title: "Move out of prn", Key: "authz-task", Task: &store.TaskSpec{Title: "Move out of prn", Due: tx.Now().Add(24 * time.Hour)}}); err != nil {
			return err
		}
		return tx.GetContext(ctx, &id, `SELECT id FROM tasks ORDER BY id DESC LIMIT 1`)
	})
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(id, 10)
}
