package docker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
)

// dockerdPIDFile is where dockerd records its PID by default.
const (
	dockerdPIDFile    = "/var/run/docker.pid"
	containerdPIDFile = "/var/run/docker/containerd/containerd.pid"
)

// TestDockerdKilledDuringProvision kills the engine (SIGKILL) while a
// devserver is being created, at several moments of the creation, starts it
// again and provisions again with the same key: in the end there is exactly
// one container for the key, running. It disrupts every other user of the
// engine, so it runs only with DEVPORT_DOCKER_DISRUPTIVE=1 or
// DEVPORT_REQUIRE_ALL=1 (CI), and always leaves dockerd running.
func TestDockerdKilledDuringProvision(t *testing.T) {
	if os.Getenv("DEVPORT_DOCKER_DISRUPTIVE") != "1" && os.Getenv("DEVPORT_REQUIRE_ALL") != "1" {
		t.Skip("SKIPPED, DISRUPTIVE: this test kills and restarts dockerd; run it with DEVPORT_DOCKER_DISRUPTIVE=1 (CI runs it with DEVPORT_REQUIRE_ALL=1)")
	}
	// Other packages' tests use the engine at the same time (go test runs
	// packages in parallel): wait until they are done, and make new ones wait.
	dockertest.Exclusive(t)
	d, endpoint, run := newDriver(t)
	if endpoint != "unix:///var/run/docker.sock" || os.Geteuid() != 0 {
		t.Fatalf("this test restarts the local dockerd: it needs root and the engine at unix:///var/run/docker.sock (got %s, uid %d)", endpoint, os.Geteuid())
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Fatal("dockerd is not on PATH: ", err)
	}
	shimsBefore := shims(t)
	t.Cleanup(func() { killOrphanShims(t, endpoint, shimsBefore) })
	// Registered after newDriver's cleanup, so it runs first: the engine is
	// up again before the containers are removed.
	t.Cleanup(func() {
		if err := ping(endpoint, 2*time.Second); err != nil {
			t.Log("dockerd is down at the end of the test; starting it")
			if err := startDockerd(endpoint); err != nil {
				t.Errorf("could not start dockerd again: %v", err)
			}
		}
	})

	for i, delay := range []time.Duration{0, 2 * time.Millisecond, 8 * time.Millisecond, 25 * time.Millisecond, 80 * time.Millisecond} {
		key := fmt.Sprintf("provision:devserver:%d", i)
		t.Run(fmt.Sprintf("killed %s into the provision", delay), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			first := make(chan error, 1)
			go func() { _, err := provision(ctx, d, key); first <- err }()
			time.Sleep(delay)
			killed := time.Now()
			if err := killDockerd(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-first:
				t.Logf("the interrupted provision returned %v", err)
				if err != nil && !errors.Is(err, fleet.ErrUnreachable) {
					t.Errorf("the interrupted provision failed with %v; want ErrUnreachable", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the provision hung after the engine died")
			}
			t.Logf("the interrupted provision answered %s after the kill", time.Since(killed).Round(time.Millisecond))

			// While the engine is down, calls fail fast as unreachable.
			start := time.Now()
			if _, err := provision(ctx, d, key); !errors.Is(err, fleet.ErrUnreachable) {
				t.Errorf("provision with the engine down: %v; want ErrUnreachable", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("provision with the engine down took %s", took)
			}

			if err := startDockerd(endpoint); err != nil {
				t.Fatal(err)
			}
			// The job's retries: provision again with the same key until it works.
			var in fleet.Instance
			var err error
			for attempt := 1; ; attempt++ {
				if in, err = provision(ctx, d, key); err == nil {
					break
				}
				if attempt == 20 || ctx.Err() != nil {
					t.Fatalf("provision after the restart: %v", err)
				}
				t.Logf("attempt %d after the restart: %v", attempt, err)
				time.Sleep(time.Duration(attempt) * 250 * time.Millisecond)
			}
			if n := dockertest.Count(t, endpoint, testLabel+"="+run, docker.LabelKey+"="+key); n != 1 {
				t.Errorf("%d containers with the key %s, want exactly 1", n, key)
			}
			if in.State != "running" {
				t.Errorf("state %q", in.State)
			}
			if out, err := d.Exec(ctx, in.ID, []string{"id", "-un"}); err != nil || out.Output != "dev\n" {
				t.Errorf("exec in the provisioned container: %+v, %v", out, err)
			}
		})
	}
}

// provision does what the provision job asks of the driver.
func provision(ctx context.Context, d *docker.Driver, key string) (fleet.Instance, error) {
	in, err := d.Create(ctx, fleet.Spec{Key: key, Name: strings.ReplaceAll(key, ":", "-"), Host: host, CPUs: 1, MemoryGB: 1})
	if err != nil {
		return in, err
	}
	return d.Start(ctx, in.ID)
}

func ping(endpoint string, within time.Duration) error {
	c, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_, err = c.Info(ctx)
	return err
}

// killDockerd sends SIGKILL to dockerd and waits for it to be gone.
func killDockerd() error {
	b, err := os.ReadFile(dockerdPIDFile)
	if err != nil {
		return fmt.Errorf("find dockerd: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("find dockerd: %s: %w", dockerdPIDFile, err)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "dockerd" {
		return fmt.Errorf("process %d of %s is %q, not dockerd", pid, dockerdPIDFile, strings.TrimSpace(string(comm)))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill dockerd (%d): %w", pid, err)
	}
	// dockerd refuses to start while the process of its PID file exists,
	// and expects containerd (its child, which dies with it) to answer if
	// the process of containerd's PID file exists; a dead process exists as
	// a zombie until it is reaped.
	if err := awaitGone(dockerdPIDFile, pid); err != nil {
		return err
	}
	if b, err := os.ReadFile(containerdPIDFile); err == nil {
		if cpid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return awaitGone(containerdPIDFile, cpid)
		}
	}
	return nil
}

// awaitGone waits until the process pid has ended and is reaped; it removes
// its PID file when it is dead but stays unreaped.
func awaitGone(pidFile string, pid int) error {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		if strings.Contains(string(stat), ") Z ") && time.Until(deadline) < 12*time.Second {
			if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		}
	}
	return fmt.Errorf("process %d of %s still runs after dockerd was killed", pid, pidFile)
}

// startDockerd starts dockerd in the background, as the machine starts it,
// and waits until it answers.
func startDockerd(endpoint string) error {
	logf, err := os.OpenFile("/tmp/dockerd.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("dockerd")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			return fmt.Errorf("dockerd exited at start (%v); see /tmp/dockerd.log", err)
		default:
		}
		if ping(endpoint, 2*time.Second) == nil {
			return nil
		}
	}
	return errors.New("dockerd does not answer 90 s after its start; see /tmp/dockerd.log")
}

// shims returns the container runtime's shim processes: PID → container ID.
func shims(t *testing.T) map[int]string {
	t.Helper()
	out := map[int]string{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range dirs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) == 0 || !strings.HasSuffix(args[0], "containerd-shim-runc-v2") {
			continue
		}
		for i, a := range args {
			if a == "-id" && i+1 < len(args) {
				out[pid] = args[i+1]
			}
		}
	}
	return out
}

// killOrphanShims stops the shims this test left behind: a shim survives the
// engine's SIGKILL and stays, idle, for a container the engine no longer
// has (the one Start recreated). Only shims started during the test, of
// containers the engine does not know, with no process under them, are
// stopped.
func killOrphanShims(t *testing.T, endpoint string, before map[int]string) {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for pid, id := range shims(t) {
		if _, ok := before[pid]; ok {
			continue
		}
		if _, err := c.ContainerInspect(ctx, id); !client.IsErrNotFound(err) {
			continue
		}
		if hasChildren(pid) {
			continue
		}
		t.Logf("stopping the orphaned shim %d of the container %s the engine lost", pid, id)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// hasChildren tells whether a process has child processes.
func hasChildren(pid int) bool {
	dirs, _ := os.ReadDir("/proc")
	for _, e := range dirs {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so parse after ")".
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}
