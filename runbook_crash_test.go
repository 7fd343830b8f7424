package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// crashChildDir names the data directory of the portal process
// TestRunbookSurvivesKill starts (this test binary, running only
// TestRunbookCrashChild).
const crashChildDir = "DEVPORT_TEST_CRASH_CHILD_DIR"

// crashChildLatency is the simulated fleet's latency in that process ("0s" when unset).
const crashChildLatency = "DEVPORT_TEST_CRASH_CHILD_LATENCY"

// TestRunbookCrashChild is the portal process that TestRunbookSurvivesKill
// kills; on its own it does nothing.
func TestRunbookCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildDir)
	if dir == "" {
		t.Skip("the process TestRunbookSurvivesKill starts and kills; not a test on its own")
	}
	latency := os.Getenv(crashChildLatency)
	if latency == "" {
		latency = "0s"
	}
	args := []string{"devport", "serve", "--addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0", "--data-dir", dir, "--sim-latency", latency, "--pool-interval", "0s"}
	if err := run(context.Background(), args, func(string) string { return "" }, os.Stdout); err != nil {
		fmt.Println("run:", err)
		os.Exit(1)
	}
}

// crashPortal is a portal in its own process, which the test can kill.
type crashPortal struct {
	cmd *exec.Cmd
	URL string
	id  string // the replica ID it logged, once startReplica waited for it
	ids chan string

	mu   sync.Mutex // the reader goroutine appends to logs while the test reads them
	logs bytes.Buffer
}

func (p *crashPortal) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func startCrashPortal(t *testing.T, dir string, env ...string) *crashPortal {
	t.Helper()
	return startChildPortal(t, "TestRunbookCrashChild", append([]string{crashChildDir + "=" + dir}, env...))
}

// replicaIDLine finds the replica ID in the portal's "Serving" log line.
var replicaIDLine = regexp.MustCompile(`replica=(\S+)`)

// startChildPortal runs this test binary again, running only the test named
// child with env added, and waits until that portal listens.
func startChildPortal(t *testing.T, child string, env []string) *crashPortal {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &crashPortal{cmd: cmd, ids: make(chan string, 1)}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "devport listening on "); ok {
				listening <- u
			}
			if strings.Contains(line, "msg=Serving") {
				if m := replicaIDLine.FindStringSubmatch(line); m != nil {
					select {
					case p.ids <- m[1]:
					default:
					}
				}
			}
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() { p.kill() })
	select {
	case p.URL = <-listening:
	case <-time.After(60 * time.Second):
		p.kill()
		t.Fatalf("the portal process did not listen within 60 s:\n%s", p.log())
	}
	return p
}

// tokenMaker creates people with roles and a token each, as "devport token
// create" does on the server host; flags name the data directory (and the
// database).
func tokenMaker(t *testing.T, flags ...string) func(email string, roles ...string) string {
	return func(email string, roles ...string) string {
		t.Helper()
		args := append([]string{"devport", "token", "create", "--user", email}, flags...)
		for _, r := range roles {
			args = append(args, "--role", r)
		}
		var out bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &out); err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(strings.TrimSpace(out.String()))
		return lines[len(lines)-1]
	}
}

// kill ends the process with SIGKILL: no shutdown, nothing flushed.
func (p *crashPortal) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (p *crashPortal) api(t *testing.T, token, method, path, body string, want int) []byte {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, p.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b
}

func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunbookSurvivesKill kills the portal process with SIGKILL in the middle
// of a run, starts it again on the same data directory, and checks that the
// run finishes with every step's effect in the database exactly once.
func TestRunbookSurvivesKill(t *testing.T) {
	if os.Getenv(crashChildDir) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	newToken := tokenMaker(t, "--data-dir", dir)
	token := newToken("admin@example.com", "admin")
	bob := newToken("bob@example.com")

	p := startCrashPortal(t, dir)
	// Two devservers of two owners in one region, for the backups and the notifications.
	var regions struct {
		Items []struct{ Code, Status string }
	}
	_ = json.Unmarshal(p.api(t, token, "GET", "/api/v1/regions", "", http.StatusOK), &regions)
	region := ""
	for _, r := range regions.Items {
		if r.Status == "active" && region == "" {
			region = r.Code
		}
	}
	var names []string
	for _, owner := range []string{token, bob} {
		var d struct{ Name string }
		_ = json.Unmarshal(p.api(t, owner, "POST", "/api/v1/devservers", `{"flavor":"vm.small","region":"`+region+`"}`, http.StatusAccepted), &d)
		names = append(names, d.Name)
	}
	for _, n := range names {
		within(t, 30*time.Second, n+" to be ready", func() bool {
			var d struct{ State string }
			_ = json.Unmarshal(p.api(t, token, "GET", "/api/v1/devservers/"+n, "", http.StatusOK), &d)
			return d.State == "ready"
		})
	}
	steps := []string{
		"  - {name: back up, op: backup_devservers, params: {region: \"${region}\"}}",
	}
	for i := 1; i <= 6; i++ {
		steps = append(steps, fmt.Sprintf("  - {name: note %d, op: log, params: {message: \"note %d\"}}", i, i),
			fmt.Sprintf("  - {name: pause %d, op: wait, params: {duration: 400ms}}", i))
	}
	steps = append(steps, "  - {name: tell, op: notify, params: {audience: region_devservers, region: \"${region}\", title: Drill over}}")
	src := "name: crash-drill\nversion: 1\nparams:\n  region: {type: region, required: true}\nsteps:\n" + strings.Join(steps, "\n") + "\n"
	body, _ := json.Marshal(map[string]string{"yaml": src})
	p.api(t, token, "POST", "/api/v1/runbooks/crash-drill/versions", string(body), http.StatusCreated)
	var run struct{ ID int64 }
	_ = json.Unmarshal(p.api(t, token, "POST", "/api/v1/runbooks/crash-drill/runs", `{"params":{"region":"`+region+`"}}`, http.StatusAccepted), &run)

	// Kill it in the middle: some notes written, not all.
	runPath := fmt.Sprintf("/api/v1/runs/%d", run.ID)
	within(t, 30*time.Second, "the run to be half way", func() bool {
		var r struct {
			Logs []struct{ Message string }
		}
		_ = json.Unmarshal(p.api(t, token, "GET", runPath, "", http.StatusOK), &r)
		notes := 0
		for _, l := range r.Logs {
			if strings.HasPrefix(l.Message, "note ") {
				notes++
			}
		}
		return notes >= 3
	})
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
	if n := count(`SELECT COUNT(*) FROM runbook_run_steps WHERE run_id = ? AND state = 'succeeded'`, run.ID); n == 0 || n >= 14 {
		t.Fatalf("%d steps succeeded before the kill; the kill did not land in the middle of the run", n)
	}

	p = startCrashPortal(t, dir)
	within(t, 60*time.Second, "the run to finish after the restart", func() bool {
		var r struct{ State string }
		_ = json.Unmarshal(p.api(t, token, "GET", runPath, "", http.StatusOK), &r)
		if r.State == "failed" || r.State == "cancelled" {
			t.Fatalf("the run %s after the restart", r.State)
		}
		return r.State == "succeeded"
	})
	p.kill()

	t.Run("every note is written once", func(t *testing.T) {
		for i := 1; i <= 6; i++ {
			if n := count(`SELECT COUNT(*) FROM runbook_run_events WHERE run_id = ? AND kind = 'log' AND message = ?`, run.ID, fmt.Sprintf("note %d", i)); n != 1 {
				t.Errorf("note %d written %d times", i, n)
			}
		}
	})
	t.Run("every step finished once", func(t *testing.T) {
		if n := count(`SELECT COUNT(*) FROM runbook_run_events WHERE run_id = ? AND kind = 'finished'`, run.ID); n != 14 {
			t.Errorf("%d finished events, want 14", n)
		}
		if n := count(`SELECT COUNT(*) FROM runbook_run_steps WHERE run_id = ? AND state = 'succeeded'`, run.ID); n != 14 {
			t.Errorf("%d steps succeeded, want 14", n)
		}
	})
	t.Run("each devserver is backed up once", func(t *testing.T) {
		for _, n := range names {
			if c := count(`SELECT COUNT(*) FROM backups b JOIN devservers d ON d.id = b.devserver_id WHERE d.name = ?`, n); c != 1 {
				t.Errorf("%s has %d backups, want 1", n, c)
			}
		}
	})
	t.Run("each wait waited once", func(t *testing.T) {
		if n := count(`SELECT COUNT(*) FROM runbook_step_effects WHERE run_id = ? AND key = 'until'`, run.ID); n != 6 {
			t.Errorf("%d waits recorded, want 6", n)
		}
	})
	t.Run("each owner is notified once", func(t *testing.T) {
		if n := count(`SELECT COUNT(*) FROM notifications WHERE idempotency_key LIKE ?`, fmt.Sprintf("runbook:%d:tell:%%", run.ID)); n != 2 {
			t.Errorf("%d notifications, want 2", n)
		}
	})
}
