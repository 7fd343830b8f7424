package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/store"
	"github.com/devport/devport/web/sshgateway"
)

// checkSharedSecrets makes the replicas of a portal on PostgreSQL agree on
// their secrets: a cookie signed by one replica must verify on the others,
// and the SSH gateway must show one host key behind the load balancer. The
// first replica records the SHA-256 of its session key and its host key's
// fingerprint in the database (never the secrets); a replica whose files
// differ refuses to start and says which files to copy. On SQLite one
// process serves the database: nothing to compare.
func checkSharedSecrets(ctx context.Context, c config, s *store.Store, sessionKey []byte) error {
	if s.Engine() != store.Postgres {
		return nil
	}
	sum := sha256.Sum256(sessionKey)
	checks := []struct{ name, value, file string }{
		{"secret.session_key_sha256", hex.EncodeToString(sum[:]), filepath.Join(c.DataDir, "secrets", "session-key")},
	}
	if c.SSHAddr != "" {
		key, err := sshgateway.HostKey(c.SSHHostKeyPath())
		if err != nil {
			return err
		}
		checks = append(checks, struct{ name, value, file string }{"secret.ssh_host_key_fingerprint", ssh.FingerprintSHA256(key.PublicKey()), c.SSHHostKeyPath()})
	}
	for _, ch := range checks {
		recorded, err := s.AgreeOnSetting(ctx, ch.name, ch.value)
		if err != nil {
			return fmt.Errorf("compare secrets with the other replicas: %w", err)
		}
		if recorded != ch.value {
			return fmt.Errorf("%s differs from the one the other replicas of this portal use (recorded in the database %s): "+
				"every replica must share the same secrets: copy the files of a running replica's secrets directory (session-key, ssh_host_ed25519_key) into %s, then start again",
				ch.file, s.Where(), filepath.Join(c.DataDir, "secrets"))
		}
	}
	return nil
}
