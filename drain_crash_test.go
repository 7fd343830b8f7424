package main

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDrainSurvivesKill kills the portal process with SIGKILL in the middle
// of a region drain, starts it again on the same data directory, and checks
// that the drain completes with no devserver lost or duplicated: each one
// exists once, ready, out of the region, on the host its instance runs on.
func TestDrainSurvivesKill(t *testing.T) {
	if os.Getenv(crashChildDir) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	newToken := tokenMaker(t, "--data-dir", dir)
	admin := newToken("admin@example.com", "admin")
	owners := []string{newToken("ann@example.com"), newToken("bob@example.com"), newToken("cai@example.com")}
	// Every fleet call takes 150 ms: a drain of 15 devservers, 2 at a time,
	// lasts long enough to be killed in the middle.
	slow := crashChildLatency + "=150ms"
	p := startCrashPortal(t, dir, slow)

	names := reserveReady(t, p, admin, owners, 15)
	p.api(t, admin, "POST", "/api/v1/regions/prn/drain", `{"reason":"kill drill","max_parallel":2}`, http.StatusAccepted)

	within(t, 60*time.Second, "the drain to be under way", func() bool { n := p.movedOutOfPRN(t, admin, names); return n >= 2 && n < 15 })
	p.kill()

	p = startCrashPortal(t, dir, slow)
	defer func() {
		if !t.Failed() {
			return
		}
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "devport.db")+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			return
		}
		defer db.Close()
		for _, q := range []string{
			`SELECT state || ' ' || COUNT(*) FROM drain_items GROUP BY state`,
			`SELECT name || ' ' || state || ' ' || attempts FROM runbook_run_steps`,
			`SELECT kind || ' ' || state || ' ' || attempt || ' ' || COALESCE(json(errors), '') FROM river_job WHERE state NOT IN ('completed') ORDER BY id DESC LIMIT 20`,
		} {
			rows, err := db.Query(q)
			if err != nil {
				t.Logf("%s: %v", q, err)
				continue
			}
			for rows.Next() {
				var line string
				_ = rows.Scan(&line)
				t.Log(line)
			}
			rows.Close()
		}
		t.Logf("the restarted portal's log:\n%s", p.log())
	}()
	within(t, 60*time.Second, "the drain to finish after the restart", func() bool { return p.prnDrained(t, admin) })
	p.kill()

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "devport.db")+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, name := range names {
		var region, state, host, instance, instHost, instState string
		err := db.QueryRow(`SELECT d.region, d.state, h.name, d.instance_id, COALESCE(i.host, ''), COALESCE(i.state, '')
FROM devservers d JOIN hosts h ON h.id = d.host_id LEFT JOIN sim_instances i ON i.id = d.instance_id WHERE d.name = ?`, name).
			Scan(&region, &state, &host, &instance, &instHost, &instState)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if region == "prn" || state != "ready" || instHost != host || instState != "running" {
			t.Errorf("%s after the drain: region %s, %s, on %s; its instance %s is %s on %q", name, region, state, host, instance, instState, instHost)
		}
	}
	if n := count(`SELECT COUNT(*) FROM devservers WHERE owner_id IS NOT NULL AND state NOT IN ('released', 'failed')`); n != len(names) {
		t.Errorf("%d live owned devservers, want %d: a devserver was lost or duplicated", n, len(names))
	}
	if n := count(`SELECT COUNT(*) FROM sim_instances WHERE state = 'running' AND id NOT IN (SELECT instance_id FROM devservers WHERE state = 'ready')`); n != 0 {
		t.Errorf("%d running sim instances belong to no ready devserver", n)
	}
	// Each owner heard of the drain once.
	if n := count(`SELECT COUNT(*) FROM notifications WHERE idempotency_key LIKE 'drain:%'`); n != 3 {
		t.Errorf("%d drain notifications for 3 owners", n)
	}
	// The hosts' capacity follows the devservers: prn holds nothing.
	if n := count(`SELECT COALESCE(SUM(used_cpus), 0) FROM hosts WHERE region = 'prn'`); n != 0 {
		t.Errorf("prn's hosts still have %d CPUs in use", n)
	}
}

// movedOutOfPRN is how many of the devservers names are ready in another region.
func (p *crashPortal) movedOutOfPRN(t *testing.T, admin string, names []string) int {
	t.Helper()
	n := 0
	for _, name := range names {
		var d struct{ Region, State string }
		_ = json.Unmarshal(p.api(t, admin, "GET", "/api/v1/devservers/"+name, "", http.StatusOK), &d)
		if d.Region != "prn" && d.State == "ready" {
			n++
		}
	}
	return n
}

// prnDrained tells whether the portal says region prn is drained.
func (p *crashPortal) prnDrained(t *testing.T, admin string) bool {
	t.Helper()
	var regions struct {
		Items []struct{ Code, Status string }
	}
	_ = json.Unmarshal(p.api(t, admin, "GET", "/api/v1/regions", "", http.StatusOK), &regions)
	for _, r := range regions.Items {
		if r.Code == "prn" {
			return r.Status == "drained"
		}
	}
	return false
}

// reserveReady reserves n vm.small devservers in prn through the API, the
// owners taking turns, and waits until every one is ready.
func reserveReady(t *testing.T, p *crashPortal, admin string, owners []string, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		var d struct{ Name string }
		_ = json.Unmarshal(p.api(t, owners[i%len(owners)], "POST", "/api/v1/devservers", `{"flavor":"vm.small","region":"prn"}`, http.StatusAccepted), &d)
		names = append(names, d.Name)
	}
	for _, name := range names {
		within(t, 60*time.Second, name+" to be ready", func() bool {
			var d struct{ State string }
			_ = json.Unmarshal(p.api(t, admin, "GET", "/api/v1/devservers/"+name, "", http.StatusOK), &d)
			return d.State == "ready"
		})
	}
	return names
}
