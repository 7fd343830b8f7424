package main

import (
	"slices"
	"strings"
	"testing"
)

func TestCLICompletion(t *testing.T) {
	r := newCLIRig(t)

	t.Run("completion prints a script for each shell", func(t *testing.T) {
		for _, shell := range []string{"bash", "zsh", "fish"} {
			stdout, _, err := r.Run("completion", shell)
			if err != nil || len(stdout) < 200 || !strings.Contains(stdout, "devport") {
				t.Errorf("completion %s: %v, %d bytes: %.200q", shell, err, len(stdout), stdout)
			}
		}
	})

	t.Run("without a sign-in, completing names offers nothing and fails quietly", func(t *testing.T) {
		stdout, stderr, err := r.Run("__complete", "ssh", "")
		if err != nil || strings.TrimSpace(stdout) != ":4" {
			t.Errorf("__complete ssh '': %q %q %v", stdout, stderr, err)
		}
	})

	loginAs(r, "ada@example.com")
	stdout, _, err := r.Run("reserve", "--flavor", "vm.small")
	if err != nil {
		t.Fatal(err)
	}
	name := reservedName(t, stdout)
	stdout, _, err = r.Run("containers", "request", "--type", "web", "--profile", "small")
	if err != nil {
		t.Fatal(err)
	}
	id := requestedID(t, stdout)
	// Someone else's devserver is not offered.
	grace := r.Token("grace@example.com")
	stdout, _, err = r.Run("reserve", "--flavor", "vm.small", "--token", grace)
	if err != nil {
		t.Fatal(err)
	}
	graces := reservedName(t, stdout)

	completions := func(args ...string) []string {
		t.Helper()
		stdout, _, err := r.Run(append([]string{"__complete"}, args...)...)
		if err != nil {
			t.Fatalf("__complete %q: %v", args, err)
		}
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if !strings.HasPrefix(l, ":") {
				v, _, _ := strings.Cut(l, "\t")
				out = append(out, v)
			}
		}
		return out
	}
	t.Run("devserver commands complete the person's devserver names", func(t *testing.T) {
		for _, cmd := range []string{"ssh", "show", "extend", "release", "migrate", "share", "backup", "restore"} {
			got := completions(cmd, "")
			if !slices.Contains(got, name) || slices.Contains(got, graces) {
				t.Errorf("__complete %s '' = %q, want %s and not %s", cmd, got, name, graces)
			}
		}
		if got := completions("ssh", ""); !slices.Contains(got, id) {
			t.Errorf("__complete ssh '' = %q lacks the container %s", got, id)
		}
		if got := completions("show", name, ""); len(got) != 0 {
			t.Errorf("the second argument of show completes %q", got)
		}
	})
	t.Run("container commands complete the person's container IDs", func(t *testing.T) {
		for _, cmd := range []string{"end", "show", "fresh"} {
			if got := completions("containers", cmd, ""); len(got) != 1 || got[0] != id {
				t.Errorf("__complete containers %s '' = %q, want [%s]", cmd, got, id)
			}
		}
	})
}
