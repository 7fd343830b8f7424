package sim_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store/storetest"
)

func newInstance(t *testing.T) (*sim.Driver, string) {
	t.Helper()
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	d := sim.New(s, sim.Options{})
	in, err := d.Create(context.Background(), fleet.Spec{Key: "k", Name: "ada-1", Host: "tst-hv01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(context.Background(), in.ID); err != nil {
		t.Fatal(err)
	}
	return d, in.ID
}

// readUntil reads output until it contains want.
func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	var got strings.Builder
	buf := make([]byte, 256)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", want, got.String())
		}
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			if !strings.Contains(got.String(), want) {
				t.Fatalf("output ended without %q: %q (%v)", want, got.String(), err)
			}
		}
	}
	return got.String()
}

func TestShellSession(t *testing.T) {
	d, id := newInstance(t)
	ctx := context.Background()
	if _, err := d.Exec(ctx, id, []string{"write", "notes.txt", "remember"}); err != nil {
		t.Fatal(err)
	}
	s, err := d.OpenSession(ctx, id, fleet.SessionSpec{TTY: true, Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readUntil(t, s.Stdout(), "dev@ada-1:~$ ")

	t.Run("echoes what is typed and answers a command", func(t *testing.T) {
		io.WriteString(s.Stdin(), "echo helo\x7flo\r")
		out := readUntil(t, s.Stdout(), "dev@ada-1:~$ ")
		if !strings.Contains(out, "echo helo\b \blo\r\n") || !strings.Contains(out, "hello\r\n") {
			t.Errorf("output %q", out)
		}
	})
	t.Run("runs what the simulated home holds", func(t *testing.T) {
		io.WriteString(s.Stdin(), "cat notes.txt\r")
		if out := readUntil(t, s.Stdout(), "dev@ada-1:~$ "); !strings.Contains(out, "remember") {
			t.Errorf("output %q", out)
		}
	})
	t.Run("exit ends the session with its status", func(t *testing.T) {
		io.WriteString(s.Stdin(), "exit 3\r")
		code, err := s.Wait(ctx)
		if err != nil || code != 3 {
			t.Errorf("exit %d, %v", code, err)
		}
	})
}

func TestCommandSession(t *testing.T) {
	d, id := newInstance(t)
	ctx := context.Background()
	s, err := d.OpenSession(ctx, id, fleet.SessionSpec{Cmd: []string{"sh", "-c", "echo 'hi there'; cat missing; exit 7"}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(s.Stdout())
	errOut, _ := io.ReadAll(s.Stderr())
	code, err := s.Wait(ctx)
	if string(out) != "hi there\n" || !strings.Contains(string(errOut), "No such file") || code != 7 || err != nil {
		t.Errorf("stdout %q stderr %q exit %d %v", out, errOut, code, err)
	}

	t.Run("a destroyed instance has no sessions", func(t *testing.T) {
		if err := d.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := d.OpenSession(ctx, id, fleet.SessionSpec{}); err == nil {
			t.Error("opened a session on a destroyed instance")
		}
	})
}
