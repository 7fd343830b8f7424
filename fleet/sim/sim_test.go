package sim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestDriver(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(4)
	s := storetest.Seeded(t, &inv)
	d := sim.New(s, sim.Options{})
	spec := fleet.Spec{Key: "devserver:1", Name: "alice-1", Host: "tst-hv01", CPUs: 2, MemoryGB: 8}

	a, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("create is idempotent by key", func(t *testing.T) {
		b, err := d.Create(ctx, spec)
		if err != nil || b.ID != a.ID || b.Address != a.Address {
			t.Fatalf("second create = %+v, %v; first %+v", b, err, a)
		}
		c, _ := d.Capacity(ctx, "tst-hv01")
		if c.Instances != 1 {
			t.Errorf("%d instances, want 1", c.Instances)
		}
	})
	t.Run("a create without a key is refused", func(t *testing.T) {
		if _, err := d.Create(ctx, fleet.Spec{Host: "tst-hv01"}); err == nil {
			t.Error("created without an idempotency key")
		}
	})
	if _, err := d.Start(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	t.Run("commands writing the home at once lose none of each other's files", func(t *testing.T) {
		const n = 64
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if r, err := d.Exec(ctx, a.ID, []string{"write", fmt.Sprintf("f%02d", i), "x"}); err != nil || r.ExitCode != 0 {
					t.Errorf("write f%02d: %+v %v", i, r, err)
				}
			})
		}
		wg.Wait()
		r, err := d.Exec(ctx, a.ID, []string{"ls"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if !strings.Contains(r.Output, fmt.Sprintf("f%02d\n", i)) {
				t.Errorf("f%02d is missing: another write undid it\n%s", i, r.Output)
			}
		}
		if _, err := d.Exec(ctx, a.ID, append([]string{"rm", "-f"}, strings.Fields(strings.ReplaceAll(r.Output, "\n", " "))...)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("data survives a backup and a restore", func(t *testing.T) {
		if r, err := d.Exec(ctx, a.ID, []string{"write", ".bashrc", "export EDITOR=vim"}); err != nil || r.ExitCode != 0 {
			t.Fatalf("write: %+v %v", r, err)
		}
		var buf bytes.Buffer
		info, err := d.Backup(ctx, a.ID, &buf)
		if err != nil || info.SizeBytes != int64(buf.Len()) || len(info.SHA256) != 64 {
			t.Fatalf("backup = %+v, %v", info, err)
		}
		_, _ = d.Exec(ctx, a.ID, []string{"write", ".bashrc", "lost"})
		if err := d.Restore(ctx, a.ID, &buf); err != nil {
			t.Fatal(err)
		}
		r, _ := d.Exec(ctx, a.ID, []string{"cat", ".bashrc"})
		if r.Output != "export EDITOR=vim" {
			t.Errorf("after restore .bashrc = %q", r.Output)
		}
		if err := d.Restore(ctx, a.ID, bytes.NewBufferString("not a backup")); err == nil {
			t.Error("restored garbage")
		}
	})
	t.Run("a command's exit status comes back", func(t *testing.T) {
		r, err := d.Exec(ctx, a.ID, []string{"cat", "missing"})
		if err != nil || r.ExitCode != 1 {
			t.Errorf("cat missing = %+v, %v", r, err)
		}
	})
	t.Run("live migration moves the instance", func(t *testing.T) {
		in, err := d.Migrate(ctx, a.ID, "alt-hv01")
		if err != nil || in.Host != "alt-hv01" {
			t.Fatalf("migrate = %+v, %v", in, err)
		}
		h, _ := d.Health(ctx, a.ID)
		if !h.OK {
			t.Errorf("health after migration = %+v", h)
		}
	})
	t.Run("an unreachable host refuses work", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE hosts SET state = 'unreachable' WHERE name = 'alt-hv01'`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec(ctx, a.ID, []string{"true"}); !errors.Is(err, fleet.ErrUnreachable) {
			t.Errorf("exec on an unreachable host: %v", err)
		}
		if h, _ := d.Health(ctx, a.ID); h.OK {
			t.Error("an instance on an unreachable host is healthy")
		}
	})
	t.Run("destroy is idempotent and a destroyed instance is gone", func(t *testing.T) {
		b, _ := d.Create(ctx, fleet.Spec{Key: "devserver:2", Host: "tst-hv01"})
		if err := d.Destroy(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if err := d.Destroy(ctx, b.ID); err != nil {
			t.Errorf("second destroy: %v", err)
		}
		if err := d.Destroy(ctx, "sim-unknown"); err != nil {
			t.Errorf("destroying an unknown instance: %v", err)
		}
		if _, err := d.Start(ctx, b.ID); !errors.Is(err, fleet.ErrNotFound) {
			t.Errorf("start after destroy: %v", err)
		}
	})
	t.Run("injected failures fail exactly as many calls as asked", func(t *testing.T) {
		d.FailNext(sim.OpCreate, 2)
		spec := fleet.Spec{Key: "devserver:3", Host: "tst-hv01"}
		for i := 0; i < 2; i++ {
			if _, err := d.Create(ctx, spec); !errors.Is(err, sim.ErrInjected) {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if _, err := d.Create(ctx, spec); err != nil {
			t.Errorf("third call: %v", err)
		}
	})
}

func TestFailureRatesAreRepeatable(t *testing.T) {
	run := func() []bool {
		inv := storetest.SmallRegion(4)
		s := storetest.Seeded(t, &inv)
		d := sim.New(s, sim.Options{Failures: map[string]float64{sim.OpCreate: 0.5}, Seed: 42})
		var out []bool
		for i := 0; i < 20; i++ {
			_, err := d.Create(context.Background(), fleet.Spec{Key: "k" + string(rune('a'+i)), Host: "tst-hv01"})
			out = append(out, err == nil)
		}
		return out
	}
	a, b := run(), run()
	fails := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("run 1 %v differs from run 2 %v", a, b)
		}
		if !a[i] {
			fails++
		}
	}
	if fails == 0 || fails == 20 {
		t.Errorf("%d of 20 creates failed at rate 0.5", fails)
	}
}

func TestParseFailures(t *testing.T) {
	good := map[string]map[string]float64{
		"":                       {},
		"create=0.1":             {"create": 0.1},
		" create = 1 , start=0 ": {"create": 1, "start": 0},
	}
	for in, want := range good {
		got, err := sim.ParseFailures(in)
		if err != nil || len(got) != len(want) {
			t.Errorf("ParseFailures(%q) = %v, %v", in, got, err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("ParseFailures(%q)[%s] = %v, want %v", in, k, got[k], v)
			}
		}
	}
	for _, in := range []string{"create", "create=2", "create=-1", "fly=0.1", "create=NaN", "create=abc", ","} {
		if _, err := sim.ParseFailures(in); err == nil {
			t.Errorf("ParseFailures(%q) accepted", in)
		}
	}
}

func FuzzParseFailures(f *testing.F) {
	for _, s := range []string{"create=0.1,start=0.5", "create=1", "x", "create=1e-3", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := sim.ParseFailures(s)
		if err != nil {
			return
		}
		for op, r := range m {
			if r < 0 || r > 1 || r != r {
				t.Errorf("%q gave %s=%v", s, op, r)
			}
		}
	})
}
