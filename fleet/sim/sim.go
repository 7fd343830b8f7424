// Package sim is a deterministic simulated fleet: hypervisors, physical hosts
// and container hosts whose instances live in the database. It has
// configurable latencies and failure injection, so drills and tests can run at
// a scale no laptop has. It never pretends to be real.
package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// Operations that latency and failure injection apply to.
const (
	OpCreate  = "create"
	OpStart   = "start"
	OpStop    = "stop"
	OpDestroy = "destroy"
	OpExec    = "exec"
	OpBackup  = "backup"
	OpRestore = "restore"
	OpMigrate = "migrate"
	OpHealth  = "health"
)

var ops = []string{OpCreate, OpStart, OpStop, OpDestroy, OpExec, OpBackup, OpRestore, OpMigrate, OpHealth}

// ErrInjected is the failure the simulator injects.
var ErrInjected = errors.New("simulated failure")

// Options configure the simulator.
type Options struct {
	// Latency is how long a create takes; start, stop, destroy and migrate
	// take half of it and the others a tenth. Zero makes the fleet instant.
	Latency time.Duration
	// Failures is the chance (0 to 1) that an operation fails, by operation.
	Failures map[string]float64
	// Seed makes injected failures repeatable.
	Seed uint64
}

// ParseFailures reads a failure-injection setting such as "create=0.1,start=0.05".
func ParseFailures(s string) (map[string]float64, error) {
	out := map[string]float64{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		op, rate, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%q is not op=rate", part)
		}
		op = strings.TrimSpace(op)
		known := false
		for _, o := range ops {
			known = known || o == op
		}
		if !known {
			return nil, fmt.Errorf("%q is not an operation (%s)", op, strings.Join(ops, ", "))
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(rate), 64)
		if err != nil || r < 0 || r > 1 || r != r {
			return nil, fmt.Errorf("the rate for %s must be a number from 0 to 1", op)
		}
		out[op] = r
	}
	return out, nil
}

// Driver is the simulated fleet.
type Driver struct {
	s    *store.Store
	opts Options

	mu       sync.Mutex
	rng      *rand.Rand
	failNext map[string]int
}

// New returns the simulator over the store.
func New(s *store.Store, opts Options) *Driver {
	return &Driver{s: s, opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)), failNext: map[string]int{}}
}

var _ fleet.Driver = (*Driver)(nil)

// Name is "sim".
func (d *Driver) Name() string { return "sim" }

// FailNext makes the next n calls of op fail, for tests and drills.
func (d *Driver) FailNext(op string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failNext[op] += n
}

// enter applies the operation's latency and injected failures, and refuses
// work on hosts that are not reachable.
func (d *Driver) enter(ctx context.Context, op, host string) error {
	lat := d.opts.Latency / 10
	switch op {
	case OpCreate:
		lat = d.opts.Latency
	case OpStart, OpStop, OpDestroy, OpMigrate:
		lat = d.opts.Latency / 2
	}
	if lat > 0 {
		t := time.NewTimer(lat)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	if host != "" {
		h, err := d.s.HostByName(ctx, host)
		if err != nil {
			return fmt.Errorf("sim %s on %s: %w", op, host, err)
		}
		if h.State == "unreachable" || d.regionDown(ctx, h) {
			return fmt.Errorf("sim %s on %s: %w", op, host, fleet.ErrUnreachable)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failNext[op] > 0 {
		d.failNext[op]--
		return fmt.Errorf("sim %s: %w", op, ErrInjected)
	}
	if rate := d.opts.Failures[op]; rate > 0 && d.rng.Float64() < rate {
		return fmt.Errorf("sim %s: %w", op, ErrInjected)
	}
	return nil
}

func (d *Driver) instance(ctx context.Context, id string) (store.SimInstance, error) {
	in, err := d.s.SimInstance(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.SimInstance{}, fmt.Errorf("sim instance %s: %w", id, fleet.ErrNotFound)
	}
	return in, err
}

func toInstance(in store.SimInstance) fleet.Instance {
	return fleet.Instance{ID: in.ID, Host: in.Host, State: in.State, Address: in.Address}
}

// address gives each instance a stable documentation-range address (RFC 3849),
// so nothing ever mistakes a simulated address for a real one.
func address(key string) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	v := h.Sum64()
	return fmt.Sprintf("2001:db8:%x:%x::%x:%x", uint16(v>>48), uint16(v>>32), uint16(v>>16), uint16(v))
}

// Create makes an instance, or returns the one already made for spec.Key.
func (d *Driver) Create(ctx context.Context, spec fleet.Spec) (fleet.Instance, error) {
	if spec.Key == "" {
		return fleet.Instance{}, errors.New("sim create: an idempotency key is required")
	}
	if in, err := d.s.SimInstanceByKey(ctx, spec.Key); err == nil && in.State != "destroyed" {
		return toInstance(in), nil
	}
	if err := d.enter(ctx, OpCreate, spec.Host); err != nil {
		return fleet.Instance{}, err
	}
	sum := sha256.Sum256([]byte(spec.Key))
	in, err := d.s.CreateSimInstance(ctx, store.SimInstance{
		ID: "sim-" + hex.EncodeToString(sum[:6]), IdempotencyKey: spec.Key, Host: spec.Host, Name: spec.Name,
		State: "created", Address: address(spec.Key), CPUs: spec.CPUs, MemoryGB: spec.MemoryGB, Home: "{}",
	})
	if err != nil {
		return fleet.Instance{}, err
	}
	return toInstance(in), nil
}

func (d *Driver) setState(ctx context.Context, op, id, state string) (fleet.Instance, error) {
	in, err := d.instance(ctx, id)
	if err != nil {
		return fleet.Instance{}, err
	}
	if in.State == "destroyed" {
		return fleet.Instance{}, fmt.Errorf("sim %s %s: %w", op, id, fleet.ErrNotFound)
	}
	if in.State == state {
		return toInstance(in), nil
	}
	if err := d.enter(ctx, op, in.Host); err != nil {
		return fleet.Instance{}, err
	}
	if err := d.s.UpdateSimInstance(ctx, id, state, in.Home); err != nil {
		return fleet.Instance{}, err
	}
	in.State = state
	return toInstance(in), nil
}

// Start runs an instance.
func (d *Driver) Start(ctx context.Context, id string) (fleet.Instance, error) {
	return d.setState(ctx, OpStart, id, "running")
}

// Stop stops an instance, keeping its data.
func (d *Driver) Stop(ctx context.Context, id string) error {
	_, err := d.setState(ctx, OpStop, id, "stopped")
	return err
}

// Destroy removes an instance and its data; what is gone already stays gone.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	in, err := d.instance(ctx, id)
	if errors.Is(err, fleet.ErrNotFound) {
		return nil
	}
	if err != nil || in.State == "destroyed" {
		return err
	}
	if err := d.enter(ctx, OpDestroy, in.Host); err != nil {
		return err
	}
	return d.s.UpdateSimInstance(ctx, id, "destroyed", "{}")
}

// Exec understands a few commands on the simulated home directory:
// fleet.WriteFileCmd, "write PATH CONTENT", "cat PATH", "ls", "true" and
// "false"; anything else succeeds with a note that it ran in the simulator.
func (d *Driver) Exec(ctx context.Context, id string, cmd []string) (fleet.ExecResult, error) {
	in, err := d.running(ctx, id, OpExec)
	if err != nil {
		return fleet.ExecResult{}, err
	}
	home := map[string]string{}
	_ = json.Unmarshal([]byte(in.Home), &home)
	if len(cmd) == 0 {
		return fleet.ExecResult{ExitCode: 127, Output: "no command\n"}, nil
	}
	if path, content, ok := fleet.ParseWriteFileCmd(cmd); ok {
		cmd = []string{"write", path, content}
	}
	switch cmd[0] {
	case "write":
		if len(cmd) != 3 {
			return fleet.ExecResult{ExitCode: 2, Output: "usage: write PATH CONTENT\n"}, nil
		}
		if err := d.s.EditSimHome(ctx, id, func(home map[string]string) { home[cmd[1]] = cmd[2] }); err != nil {
			return fleet.ExecResult{}, err
		}
		return fleet.ExecResult{}, nil
	case "cat":
		if len(cmd) != 2 {
			return fleet.ExecResult{ExitCode: 2, Output: "usage: cat PATH\n"}, nil
		}
		c, ok := home[cmd[1]]
		if !ok {
			return fleet.ExecResult{ExitCode: 1, Output: "cat: " + cmd[1] + ": No such file or directory\n"}, nil
		}
		return fleet.ExecResult{Output: c}, nil
	case "ls":
		var b strings.Builder
		for _, p := range slices.Sorted(maps.Keys(home)) {
			b.WriteString(p + "\n")
		}
		return fleet.ExecResult{Output: b.String()}, nil
	case "rm":
		paths := cmd[1:]
		if len(paths) > 0 && paths[0] == "-f" {
			paths = paths[1:]
		}
		err := d.s.EditSimHome(ctx, id, func(home map[string]string) {
			for _, p := range paths {
				delete(home, p)
			}
		})
		if err != nil {
			return fleet.ExecResult{}, err
		}
		return fleet.ExecResult{}, nil
	case "false":
		return fleet.ExecResult{ExitCode: 1}, nil
	case "true":
		return fleet.ExecResult{}, nil
	}
	return fleet.ExecResult{Output: "(simulated) " + strings.Join(cmd, " ") + "\n"}, nil
}

func (d *Driver) running(ctx context.Context, id, op string) (store.SimInstance, error) {
	in, err := d.instance(ctx, id)
	if err != nil {
		return store.SimInstance{}, err
	}
	if in.State == "destroyed" {
		return store.SimInstance{}, fmt.Errorf("sim %s %s: %w", op, id, fleet.ErrNotFound)
	}
	if err := d.enter(ctx, op, in.Host); err != nil {
		return store.SimInstance{}, err
	}
	return in, nil
}

// Backup writes the instance's home directory as JSON.
func (d *Driver) Backup(ctx context.Context, id string, w io.Writer) (fleet.BackupInfo, error) {
	in, err := d.running(ctx, id, OpBackup)
	if err != nil {
		return fleet.BackupInfo{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), strings.NewReader(in.Home))
	if err != nil {
		return fleet.BackupInfo{}, fmt.Errorf("sim backup %s: %w", id, err)
	}
	return fleet.BackupInfo{SizeBytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Restore replaces the instance's home directory with a backup.
func (d *Driver) Restore(ctx context.Context, id string, r io.Reader) error {
	in, err := d.running(ctx, id, OpRestore)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, 64<<20)); err != nil {
		return fmt.Errorf("sim restore %s: %w", id, err)
	}
	home := map[string]string{}
	if err := json.Unmarshal(buf.Bytes(), &home); err != nil {
		return fmt.Errorf("sim restore %s: not a simulated backup: %w", id, err)
	}
	return d.s.UpdateSimInstance(ctx, id, in.State, buf.String())
}

// Migrate moves an instance to another host; the simulator can always live-migrate.
func (d *Driver) Migrate(ctx context.Context, id, toHost string) (fleet.Instance, error) {
	in, err := d.running(ctx, id, OpMigrate)
	if err != nil {
		return fleet.Instance{}, err
	}
	if in.Host == toHost {
		return toInstance(in), nil
	}
	if err := d.enter(ctx, OpMigrate, toHost); err != nil {
		return fleet.Instance{}, err
	}
	if err := d.s.MoveSimInstance(ctx, id, toHost); err != nil {
		return fleet.Instance{}, err
	}
	in.Host = toHost
	return toInstance(in), nil
}

// Health reports a running instance on a reachable host as healthy.
func (d *Driver) Health(ctx context.Context, id string) (fleet.Health, error) {
	in, err := d.instance(ctx, id)
	if err != nil {
		return fleet.Health{}, err
	}
	if err := d.enter(ctx, OpHealth, in.Host); err != nil {
		return fleet.Health{OK: false, Detail: err.Error(), At: d.s.Now()}, nil
	}
	return fleet.Health{OK: in.State == "running", Detail: "instance is " + in.State, At: d.s.Now()}, nil
}

// Capacity reports the host's size from the inventory and its live instances.
func (d *Driver) Capacity(ctx context.Context, host string) (fleet.Capacity, error) {
	h, err := d.s.HostByName(ctx, host)
	if err != nil {
		return fleet.Capacity{}, err
	}
	ins, err := d.s.SimInstancesOn(ctx, host)
	if err != nil {
		return fleet.Capacity{}, err
	}
	return fleet.Capacity{CPUs: h.CPUs, MemoryGB: h.MemoryGB, DiskGB: h.DiskGB, GPUs: h.GPUs, Instances: len(ins)}, nil
}
