package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// The replicas of a portal on PostgreSQL must share their secrets: the
// first records their fingerprints, a replica with other files refuses to
// start and says what to copy; once the files are copied it starts.
func TestReplicaWithOtherSecretsRefusesToStart(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{URL: storetest.PostgresURL(t), MaxConns: 4, ReadConns: 2, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(dir string) error {
		t.Helper()
		key, err := secretKey(dir, "session-key")
		if err != nil {
			t.Fatal(err)
		}
		return checkSharedSecrets(ctx, config{DataDir: dir, SSHAddr: "127.0.0.1:0"}, s, key)
	}
	recorded := func() string {
		t.Helper()
		var v []string
		if err := s.DB().SelectContext(ctx, &v, `SELECT name || '=' || value FROM portal_settings ORDER BY name`); err != nil {
			t.Fatal(err)
		}
		return strings.Join(v, " ")
	}
	first, other := t.TempDir(), t.TempDir()
	if err := check(first); err != nil {
		t.Fatalf("the first replica: %v", err)
	}
	before := recorded()
	if !strings.Contains(before, "secret.session_key_sha256=") || !strings.Contains(before, "secret.ssh_host_key_fingerprint=SHA256:") {
		t.Fatalf("recorded %q", before)
	}
	if err := check(first); err != nil {
		t.Fatalf("the first replica again: %v", err)
	}

	err = check(other)
	if err == nil {
		t.Fatal("a replica with other secrets started")
	}
	for _, want := range []string{filepath.Join(other, "secrets", "session-key"), "differs from the one the other replicas", "copy", filepath.Join(other, "secrets")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if after := recorded(); after != before {
		t.Errorf("the refused replica changed the record: %q, was %q", after, before)
	}

	copySecrets(t, first, other)
	if err := check(other); err != nil {
		t.Errorf("with the first replica's secrets: %v", err)
	}
}
