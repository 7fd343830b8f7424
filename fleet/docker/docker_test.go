package docker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
)

const host = "box1"

// testLabel marks everything a test makes, so that it can be removed.
const testLabel = "devport.test"

// newDriver returns a driver on the test engine whose containers carry a
// label of the test's own, removed when the test ends.
func newDriver(t *testing.T) (*docker.Driver, string, string) {
	t.Helper()
	endpoint := dockertest.Require(t)
	run := t.Name() + "-" + randHex(4)
	run = strings.NewReplacer("/", "-", " ", "-").Replace(run)
	dockertest.Cleanup(t, endpoint, testLabel, run)
	d, err := docker.New(docker.Options{
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Engines: map[string]string{host: endpoint},
		Labels:  map[string]string{testLabel: run},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, endpoint, run
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// running creates and starts an instance for key.
func running(t *testing.T, d *docker.Driver, key string) fleet.Instance {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	in, err := d.Create(ctx, fleet.Spec{Key: key, Name: "dev-" + key, Host: host, CPUs: 1, MemoryGB: 1})
	if err != nil {
		t.Fatal(err)
	}
	if in, err = d.Start(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if in.State != "running" {
		t.Fatalf("state after start: %q", in.State)
	}
	return in
}

func mustExec(t *testing.T, d *docker.Driver, id string, cmd ...string) string {
	t.Helper()
	res, err := d.Exec(ctxT(t, time.Minute), id, cmd)
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %q exited with %d: %s", cmd, res.ExitCode, res.Output)
	}
	return res.Output
}

func TestLife(t *testing.T) {
	d, endpoint, run := newDriver(t)
	ctx := ctxT(t, 5*time.Minute)

	in := running(t, d, "life:1")
	t.Run("runs commands as dev in /home/dev", func(t *testing.T) {
		if got := mustExec(t, d, in.ID, "sh", "-c", "id -un; pwd"); got != "dev\n/home/dev\n" {
			t.Errorf("got %q", got)
		}
		res, err := d.Exec(ctx, in.ID, []string{"sh", "-c", "echo to-stderr >&2; exit 42"})
		if err != nil || res.ExitCode != 42 || res.Output != "to-stderr\n" {
			t.Errorf("got %+v, %v; want exit 42 and the error output", res, err)
		}
	})
	t.Run("has the flavour's limits", func(t *testing.T) {
		// cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us); memory likewise.
		out := mustExec(t, d, in.ID, "sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
		if !strings.Contains(out, "100000") || !strings.Contains(out, "1073741824") {
			t.Errorf("cgroup limits: %q; want 1 CPU and 1 GiB", out)
		}
	})

	binary := make([]byte, 0, 255)
	for b := 1; b < 256; b++ {
		binary = append(binary, byte(b))
	}
	files := map[string]string{
		"notes.txt":                 "hello\nworld\n",
		"src/deep/dir/main.go":      "package main\n\nfunc main() {}\n",
		"bin.dat":                   string(binary),
		"spaces and 'quotes'.txt":   "it's \"quoted\" $HOME `x`",
		".config/devport/empty.txt": "",
	}
	for p, content := range files {
		mustExec(t, d, in.ID, fleet.WriteFileCmd(p, content)...)
	}
	mustExec(t, d, in.ID, "sh", "-c", "head -c 3000000 /dev/urandom > big.bin && chmod 600 big.bin && ln -s notes.txt link.txt")
	bigSum := mustExec(t, d, in.ID, "sha256sum", "big.bin")

	var backup bytes.Buffer
	info, err := d.Backup(ctx, in.ID, &backup)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(backup.Bytes())
	t.Run("backup reports the size and SHA-256 of what it wrote", func(t *testing.T) {
		if info.SizeBytes != int64(backup.Len()) || info.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("info %+v; wrote %d bytes with SHA-256 %x", info, backup.Len(), sum)
		}
		if info.SizeBytes < 3000000 {
			t.Errorf("backup of %d bytes holds less than the random file", info.SizeBytes)
		}
	})

	if err := d.Destroy(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	t.Run("destroy removes the container and its volume, and again succeeds", func(t *testing.T) {
		if n := dockertest.Count(t, endpoint, testLabel+"="+run, docker.LabelKey+"=life:1"); n != 0 {
			t.Errorf("%d containers left", n)
		}
		if err := d.Destroy(ctx, in.ID); err != nil {
			t.Errorf("second destroy: %v", err)
		}
		if _, err := d.Start(ctx, in.ID); !errors.Is(err, fleet.ErrNotFound) {
			t.Errorf("start of a destroyed instance: %v; want ErrNotFound", err)
		}
		if _, err := d.Exec(ctx, in.ID, []string{"true"}); !errors.Is(err, fleet.ErrNotFound) {
			t.Errorf("exec in a destroyed instance: %v; want ErrNotFound", err)
		}
		if volumes := volumeNames(t, endpoint, run); len(volumes) != 0 {
			t.Errorf("volumes left: %v", volumes)
		}
	})

	other := running(t, d, "life:2")
	mustExec(t, d, other.ID, fleet.WriteFileCmd("stale.txt", "from before the restore")...)
	if err := d.Restore(ctx, other.ID, bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	t.Run("restore into a new container gives the files back byte for byte", func(t *testing.T) {
		for p, want := range files {
			if got := mustExec(t, d, other.ID, "cat", p); got != want {
				t.Errorf("%s: got %q, want %q", p, got, want)
			}
		}
		if got := mustExec(t, d, other.ID, "sha256sum", "big.bin"); got != bigSum {
			t.Errorf("big.bin: %s, want %s", got, bigSum)
		}
		if got := mustExec(t, d, other.ID, "stat", "-c", "%U %a", "big.bin", "notes.txt"); got != "dev 600\ndev 644\n" {
			t.Errorf("owners and modes: %q", got)
		}
		if got := mustExec(t, d, other.ID, "readlink", "link.txt"); got != "notes.txt\n" {
			t.Errorf("symlink: %q", got)
		}
		if res, _ := d.Exec(ctx, other.ID, []string{"test", "-e", "stale.txt"}); res.ExitCode == 0 {
			t.Error("a file from before the restore is still there")
		}
	})
	t.Run("refuses a backup that is not one, changing nothing", func(t *testing.T) {
		err := d.Restore(ctx, other.ID, strings.NewReader("not a backup"))
		if err == nil || !strings.Contains(err.Error(), "gzip") {
			t.Errorf("got %v", err)
		}
		if got := mustExec(t, d, other.ID, "cat", "notes.txt"); got != files["notes.txt"] {
			t.Errorf("notes.txt after a refused restore: %q", got)
		}
	})
}

func volumeNames(t *testing.T, endpoint, run string) []string {
	t.Helper()
	return dockertest.Volumes(t, endpoint, testLabel+"="+run)
}

func TestIdempotentCreate(t *testing.T) {
	d, endpoint, run := newDriver(t)
	ctx := ctxT(t, 3*time.Minute)
	spec := fleet.Spec{Key: "provision:devserver:7", Name: "alpha", Host: host, CPUs: 1, MemoryGB: 1}
	first, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	second, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Errorf("two creates with one key: %s and %s", first.ID, second.ID)
	}
	var wg sync.WaitGroup
	ids := make([]string, 4)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := d.Create(ctx, spec)
			if err != nil {
				t.Error(err)
			}
			ids[i] = in.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != first.ID {
			t.Errorf("a concurrent create gave %s, want %s", id, first.ID)
		}
	}
	if n := dockertest.Count(t, endpoint, testLabel+"="+run, docker.LabelKey+"="+spec.Key); n != 1 {
		t.Errorf("%d containers with the key, want 1", n)
	}
	t.Run("start and stop twice each", func(t *testing.T) {
		for range 2 {
			if in, err := d.Start(ctx, first.ID); err != nil || in.State != "running" || in.Address == "" {
				t.Fatalf("start: %+v, %v", in, err)
			}
		}
		h, err := d.Health(ctx, first.ID)
		if err != nil || !h.OK {
			t.Errorf("health of a running container: %+v, %v", h, err)
		}
		c, err := d.Capacity(ctx, host)
		if err != nil || c.CPUs < 1 || c.MemoryGB < 1 || c.Instances != 1 {
			t.Errorf("capacity: %+v, %v; want the engine's CPUs and memory and 1 instance", c, err)
		}
		for range 2 {
			if err := d.Stop(ctx, first.ID); err != nil {
				t.Fatalf("stop: %v", err)
			}
		}
		if h, err := d.Health(ctx, first.ID); err != nil || h.OK || !strings.Contains(h.Detail, "exited") {
			t.Errorf("health of a stopped container: %+v, %v", h, err)
		}
		if c, err := d.Capacity(ctx, host); err != nil || c.Instances != 0 {
			t.Errorf("capacity with the container stopped: %+v, %v", c, err)
		}
	})
	t.Run("migration is not supported", func(t *testing.T) {
		if _, err := d.Migrate(ctx, first.ID, "box2"); !errors.Is(err, fleet.ErrNotSupported) {
			t.Errorf("got %v", err)
		}
	})
}

func TestMissingImage(t *testing.T) {
	d, endpoint, run := newDriver(t)
	ctx := ctxT(t, time.Minute)
	_, err := d.Create(ctx, fleet.Spec{Key: "k", Name: "n", Host: host, Image: "devport-nonexistent:42"})
	if err == nil || !strings.Contains(err.Error(), "devport-nonexistent:42") || !strings.Contains(err.Error(), "make docker-image") {
		t.Fatalf("got %v; want an error naming the image and how to build it", err)
	}
	if n := dockertest.Count(t, endpoint, testLabel+"="+run); n != 0 {
		t.Errorf("%d containers made", n)
	}
	if vols := volumeNames(t, endpoint, run); len(vols) != 0 {
		t.Errorf("volumes made: %v", vols)
	}
}

func TestUnreachableAndUnknown(t *testing.T) {
	d, err := docker.New(docker.Options{Engines: map[string]string{"gone": "unix:///tmp/devport-no-such-docker.sock", "dead": "tcp://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"gone", "dead"} {
		start := time.Now()
		_, err := d.Create(context.Background(), fleet.Spec{Key: "k", Host: h})
		if !errors.Is(err, fleet.ErrUnreachable) {
			t.Errorf("create on %s: %v; want ErrUnreachable", h, err)
		}
		if _, err := d.Capacity(context.Background(), h); !errors.Is(err, fleet.ErrUnreachable) {
			t.Errorf("capacity of %s: %v; want ErrUnreachable", h, err)
		}
		if _, err := d.Start(context.Background(), h+"/devport-x"); !errors.Is(err, fleet.ErrUnreachable) {
			t.Errorf("start on %s: %v; want ErrUnreachable", h, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("an engine that is down took %s to report", took)
		}
	}
	if _, err := d.Create(context.Background(), fleet.Spec{Key: "k", Host: "nowhere"}); err == nil || !strings.Contains(err.Error(), `no Docker engine configured for host "nowhere"`) {
		t.Errorf("create on an unknown host: %v", err)
	}
	if _, err := d.Start(context.Background(), "not-an-id"); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("start of a malformed ID: %v", err)
	}
	for _, bad := range []docker.Options{
		{Engines: map[string]string{"a": ""}},
		{Engines: map[string]string{"a/b": "unix:///x"}},
		{Engines: map[string]string{"a": "ftp://x"}},
		{Labels: map[string]string{docker.LabelKey: "x"}},
	} {
		if _, err := docker.New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

func TestNotFound(t *testing.T) {
	d, _, _ := newDriver(t)
	ctx := ctxT(t, time.Minute)
	id := host + "/devport-does-not-exist"
	if _, err := d.Start(ctx, id); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("start: %v", err)
	}
	if err := d.Stop(ctx, id); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("stop: %v", err)
	}
	if _, err := d.Health(ctx, id); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("health: %v", err)
	}
	if _, err := d.Backup(ctx, id, io.Discard); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("backup: %v", err)
	}
	if err := d.Destroy(ctx, id); err != nil {
		t.Errorf("destroy: %v", err)
	}
}

// readUntil reads r until the output holds want or the time is up.
func readUntil(t *testing.T, r io.Reader, want string, within time.Duration) string {
	t.Helper()
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			found := strings.Contains(out.String(), want)
			mu.Unlock()
			if err != nil || found {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(within):
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output %q does not hold %q", out.String(), want)
	}
	return out.String()
}

func TestSession(t *testing.T) {
	d, _, _ := newDriver(t)
	in := running(t, d, "session:1")
	ctx := ctxT(t, 2*time.Minute)

	t.Run("echo hello with a terminal", func(t *testing.T) {
		s, err := d.OpenSession(ctx, in.ID, fleet.SessionSpec{Cmd: []string{"sh", "-c", "echo hello"}, TTY: true, Rows: 24, Cols: 80})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, _ := io.ReadAll(s.Stdout())
		if string(out) != "hello\r\n" {
			t.Errorf("output %q", out)
		}
		if code, err := s.Wait(ctx); err != nil || code != 0 {
			t.Errorf("exit %d, %v", code, err)
		}
		if s.Stderr() != nil {
			t.Error("a terminal session has a separate stderr")
		}
	})
	t.Run("a login shell answers, takes a new size and exits with its status", func(t *testing.T) {
		s, err := d.OpenSession(ctx, in.ID, fleet.SessionSpec{TTY: true, Rows: 30, Cols: 90})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fmt.Fprint(s.Stdin(), "echo hel''lo $USER $PWD; stty size\n")
		readUntil(t, s.Stdout(), "30 90", 20*time.Second)
		if err := s.Resize(ctx, 40, 120); err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(s.Stdin(), "stty size; exit 3\n")
		out := readUntil(t, s.Stdout(), "40 120", 20*time.Second)
		_ = out
		if code, err := s.Wait(ctx); err != nil || code != 3 {
			t.Errorf("exit %d, %v; want 3", code, err)
		}
	})
	t.Run("a command without a terminal keeps stdout, stderr and its exit code apart", func(t *testing.T) {
		s, err := d.OpenSession(ctx, in.ID, fleet.SessionSpec{Cmd: []string{"sh", "-c", "cat; echo err >&2; exit 7"}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var stderr bytes.Buffer
		errDone := make(chan struct{})
		go func() { io.Copy(&stderr, s.Stderr()); close(errDone) }()
		io.WriteString(s.Stdin(), "typed input\n")
		s.Stdin().Close()
		out, _ := io.ReadAll(s.Stdout())
		<-errDone
		if string(out) != "typed input\n" || stderr.String() != "err\n" {
			t.Errorf("stdout %q, stderr %q", out, stderr.String())
		}
		if code, err := s.Wait(ctx); err != nil || code != 7 {
			t.Errorf("exit %d, %v; want 7", code, err)
		}
	})
	t.Run("close stops a command that still runs", func(t *testing.T) {
		s, err := d.OpenSession(ctx, in.ID, fleet.SessionSpec{Cmd: []string{"sleep", "1234"}, TTY: true})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(mustExec(t, d, in.ID, "ps", "-eo", "args"), "sleep 1234") {
			if time.Now().After(deadline) {
				t.Fatal("the command never ran")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if ps := mustExec(t, d, in.ID, "ps", "-eo", "args"); strings.Contains(ps, "sleep 1234") {
			t.Errorf("still running after Close:\n%s", ps)
		}
	})
}
