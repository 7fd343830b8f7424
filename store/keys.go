package store

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// SSH access: a person's public keys, the authorized_keys file devport writes
// on a devserver, and the details a person needs to connect to one.

// SSHKey is a person's SSH public key. The keys of a devserver's owner and of
// everyone it is shared with are put on it.
type SSHKey struct {
	ID          int64     `db:"id" json:"id"`
	UserID      int64     `db:"user_id" json:"-"`
	Name        string    `db:"name" json:"name"`
	PublicKey   string    `db:"public_key" json:"public_key"`
	Fingerprint string    `db:"fingerprint" json:"fingerprint"`
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	// Type is the key's algorithm, such as ssh-ed25519.
	Type string `db:"-" json:"type"`
}

// Limits on SSH keys.
const (
	// MaxPublicKeyBytes bounds the pasted text: an RSA key of 16384 bits is
	// under 3 KB, so anything larger is not one public key.
	MaxPublicKeyBytes = 8192
	// MaxSSHKeys is how many keys one person may keep.
	MaxSSHKeys = 50
	// MinRSABits is the smallest RSA key accepted.
	MinRSABits = 2048
	maxKeyName = 100
)

// acceptedKeyTypes are the algorithms OpenSSH accepts by default that are
// not known to be weak.
var acceptedKeyTypes = map[string]bool{
	ssh.KeyAlgoED25519:    true,
	ssh.KeyAlgoSKED25519:  true,
	ssh.KeyAlgoECDSA256:   true,
	ssh.KeyAlgoECDSA384:   true,
	ssh.KeyAlgoECDSA521:   true,
	ssh.KeyAlgoSKECDSA256: true,
	ssh.KeyAlgoRSA:        true,
}

// ParsedKey is a validated OpenSSH public key.
type ParsedKey struct {
	Type        string
	PublicKey   string // "type base64", without options or comment
	Fingerprint string // SHA256:...
	Comment     string
}

// ParsePublicKey validates text pasted as an OpenSSH public key (one line of
// an authorized_keys file, as in id_ed25519.pub). The problem is a sentence
// for the user; it is empty when the key is acceptable.
func ParsePublicKey(text string) (ParsedKey, string) {
	if len(text) > MaxPublicKeyBytes {
		return ParsedKey{}, fmt.Sprintf("is longer than %d bytes; paste a single public key", MaxPublicKeyBytes)
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return ParsedKey{}, "is required"
	}
	if strings.Contains(text, "PRIVATE KEY") {
		return ParsedKey{}, "is a private key: paste the public key (the .pub file) and keep the private key secret"
	}
	if !utf8.ValidString(text) || strings.ContainsFunc(text, func(r rune) bool { return r != '\n' && r != '\r' && r != '\t' && unicode.IsControl(r) }) {
		return ParsedKey{}, "is not an OpenSSH public key"
	}
	var line string
	for l := range strings.Lines(text) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if line != "" {
			return ParsedKey{}, "must be a single key on one line; add each key separately"
		}
		line = l
	}
	if line == "" {
		return ParsedKey{}, "is required"
	}
	if first, _, _ := strings.Cut(line, " "); first == ssh.InsecureKeyAlgoDSA {
		return ParsedKey{}, "is a DSA key (ssh-dss), which is insecure and not accepted; use ssh-ed25519"
	}
	pk, comment, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return ParsedKey{}, "is not an OpenSSH public key such as \"ssh-ed25519 AAAA… you@laptop\""
	}
	if len(options) > 0 {
		return ParsedKey{}, "has authorized_keys options (such as command=); paste the key alone"
	}
	if _, ok := pk.(*ssh.Certificate); ok {
		return ParsedKey{}, "is an SSH certificate; paste the plain public key"
	}
	if !acceptedKeyTypes[pk.Type()] {
		return ParsedKey{}, fmt.Sprintf("has type %s, which is not supported; use ssh-ed25519, ecdsa or RSA of at least %d bits", pk.Type(), MinRSABits)
	}
	if pk.Type() == ssh.KeyAlgoRSA {
		cpk, ok := pk.(ssh.CryptoPublicKey)
		if !ok {
			return ParsedKey{}, "is not an OpenSSH public key"
		}
		rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey)
		if !ok || rk.N.BitLen() < MinRSABits {
			bits := 0
			if ok {
				bits = rk.N.BitLen()
			}
			return ParsedKey{}, fmt.Sprintf("is an RSA key of %d bits; RSA keys must have at least %d bits (or use ssh-ed25519)", bits, MinRSABits)
		}
	}
	return ParsedKey{
		Type:        pk.Type(),
		PublicKey:   string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(pk))),
		Fingerprint: ssh.FingerprintSHA256(pk),
		Comment:     strings.TrimSpace(comment),
	}, ""
}

// keyName checks a key's name, or makes one from the key's comment.
func keyName(name string, k ParsedKey) (string, string) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = k.Comment
		if name == "" || len(name) > maxKeyName || strings.ContainsFunc(name, unicode.IsControl) {
			name = k.Type + " key"
		}
		return name, ""
	}
	switch {
	case utf8.RuneCountInString(name) > maxKeyName:
		return "", fmt.Sprintf("is longer than %d characters", maxKeyName)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		return "", "has characters a name cannot have"
	}
	return name, ""
}

func keyType(publicKey string) string {
	t, _, _ := strings.Cut(publicKey, " ")
	return t
}

const sshKeyColumns = `id, user_id, name, public_key, fingerprint, created_at`

// SSHKeyUsers returns the people whose profile holds the public key
// (authorized_keys form, "type base64"), with roles; several people may
// register the same key.
func (s *Store) SSHKeyUsers(ctx context.Context, publicKey string) ([]User, error) {
	k, problem := ParsePublicKey(publicKey)
	if problem != "" {
		return nil, nil
	}
	var ids []int64
	err := selectNamed(ctx, s.read, &ids, `SELECT user_id FROM ssh_keys WHERE fingerprint = :fp AND public_key = :pk ORDER BY user_id`,
		arg{"fp": k.Fingerprint, "pk": k.PublicKey})
	if err != nil {
		return nil, fmt.Errorf("users of ssh key %s: %w", k.Fingerprint, err)
	}
	us := make([]User, 0, len(ids))
	for _, id := range ids {
		u, err := s.User(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("users of ssh key %s: %w", k.Fingerprint, err)
		}
		us = append(us, u)
	}
	return us, nil
}

// SSHKeys lists a person's keys, oldest first.
func (s *Store) SSHKeys(ctx context.Context, userID int64) ([]SSHKey, error) {
	var ks []SSHKey
	err := selectNamed(ctx, s.read, &ks, `SELECT `+sshKeyColumns+` FROM ssh_keys WHERE user_id = :user_id ORDER BY created_at, id`, arg{"user_id": userID})
	if err != nil {
		return nil, fmt.Errorf("ssh keys: %w", err)
	}
	for i := range ks {
		ks[i].Type = keyType(ks[i].PublicKey)
	}
	return ks, nil
}

// AddSSHKey validates publicKey and adds it to u's keys. A key u already has
// is a conflict (key_exists).
func (tx *Tx) AddSSHKey(ctx context.Context, who Actor, u User, name, publicKey string) (SSHKey, error) {
	p := Problems{}
	k, problem := ParsePublicKey(publicKey)
	if problem != "" {
		p.Add("public_key", problem)
	}
	name, problem = keyName(name, k)
	if problem != "" {
		p.Add("name", problem)
	}
	if err := p.Err(); err != nil {
		return SSHKey{}, err
	}
	var existing SSHKey
	err := getNamed(ctx, tx, &existing, `SELECT `+sshKeyColumns+` FROM ssh_keys WHERE user_id = :user_id AND fingerprint = :fp`,
		arg{"user_id": u.ID, "fp": k.Fingerprint})
	switch {
	case err == nil:
		return SSHKey{}, Conflict("key_exists", fmt.Sprintf("This key (%s) is already on your profile as %q.", k.Fingerprint, existing.Name))
	case !errors.Is(err, ErrNotFound):
		return SSHKey{}, fmt.Errorf("add ssh key: %w", err)
	}
	var n int
	if err := getNamed(ctx, tx, &n, `SELECT COUNT(*) FROM ssh_keys WHERE user_id = :user_id`, arg{"user_id": u.ID}); err != nil {
		return SSHKey{}, fmt.Errorf("add ssh key: %w", err)
	}
	if n >= MaxSSHKeys {
		return SSHKey{}, &ValidationError{Fields: map[string]string{"public_key": fmt.Sprintf("cannot be added: you have %d keys, the most allowed; delete one first", n)}}
	}
	var added SSHKey
	err = getNamed(ctx, tx, &added, `
INSERT INTO ssh_keys (user_id, name, public_key, fingerprint, created_at)
VALUES (:user_id, :name, :public_key, :fingerprint, :now)
RETURNING `+sshKeyColumns, arg{"user_id": u.ID, "name": name, "public_key": k.PublicKey, "fingerprint": k.Fingerprint, "now": tx.Now()})
	if isUniqueViolation(err) {
		return SSHKey{}, Conflict("key_exists", fmt.Sprintf("This key (%s) is already on your profile.", k.Fingerprint))
	}
	if err != nil {
		return SSHKey{}, fmt.Errorf("add ssh key: %w", err)
	}
	added.Type = k.Type
	err = tx.Audit(ctx, who, "ssh_key.add", "user", u.Email, map[string]any{"name": added.Name, "fingerprint": added.Fingerprint, "type": added.Type})
	return added, err
}

// DeleteSSHKey removes one of u's keys. Another person's key is not found.
func (tx *Tx) DeleteSSHKey(ctx context.Context, who Actor, u User, id int64) (SSHKey, error) {
	var k SSHKey
	err := getNamed(ctx, tx, &k, `SELECT `+sshKeyColumns+` FROM ssh_keys WHERE id = :id AND user_id = :user_id`, arg{"id": id, "user_id": u.ID})
	if err != nil {
		return SSHKey{}, fmt.Errorf("delete ssh key %d: %w", id, err)
	}
	if _, err := execNamed(ctx, tx, `DELETE FROM ssh_keys WHERE id = :id AND user_id = :user_id`, arg{"id": id, "user_id": u.ID}); err != nil {
		return SSHKey{}, fmt.Errorf("delete ssh key %d: %w", id, err)
	}
	k.Type = keyType(k.PublicKey)
	err = tx.Audit(ctx, who, "ssh_key.delete", "user", u.Email, map[string]any{"name": k.Name, "fingerprint": k.Fingerprint})
	return k, err
}

// AuthorizedKeysHeader starts every authorized_keys file devport writes.
const AuthorizedKeysHeader = "# Managed by devport: the SSH keys of this devserver's owner and of everyone it is shared with.\n# Changes here are overwritten; add keys on your devport profile.\n"

// AuthorizedKeys is the authorized_keys file for a devserver: the keys of its
// owner and sharees, one per line with the person's email as comment, sorted
// by email and fingerprint so the same people and keys give the same bytes.
func (s *Store) AuthorizedKeys(ctx context.Context, devserverID int64) (string, error) {
	var rows []struct {
		Email       string `db:"email"`
		PublicKey   string `db:"public_key"`
		Fingerprint string `db:"fingerprint"`
	}
	err := selectNamed(ctx, s.read, &rows, `
SELECT u.email, k.public_key, k.fingerprint
FROM ssh_keys k
JOIN users u ON u.id = k.user_id
WHERE k.user_id IN (
    SELECT owner_id FROM devservers WHERE id = :id AND owner_id IS NOT NULL
    UNION
    SELECT user_id FROM devserver_shares WHERE devserver_id = :id)
ORDER BY u.email, k.fingerprint`, arg{"id": devserverID})
	if err != nil {
		return "", fmt.Errorf("authorized keys of devserver %d: %w", devserverID, err)
	}
	var b strings.Builder
	b.WriteString(AuthorizedKeysHeader)
	for _, r := range rows {
		b.WriteString(r.PublicKey + " " + r.Email + "\n")
	}
	return b.String(), nil
}

// Connection is how a person reaches a ready devserver over SSH.
type Connection struct {
	Hostname string `json:"hostname"`
	Address  string `json:"address"`
	User     string `json:"user"`
	// SSHConfig is a ~/.ssh/config entry. Its HostName is the address, so it
	// works when DNS does not; the hostname is the alias.
	SSHConfig  string `json:"ssh_config"`
	SSHCommand string `json:"ssh_command"`
	// SSHHost and SSHPort are where the SSH client connects (the gateway
	// or the devserver itself) as User, for clients that build their own
	// command (devport ssh).
	SSHHost string `json:"ssh_host"`
	SSHPort int    `json:"ssh_port"`
	// VSCodeURL opens the devserver's home in VS Code through Remote-SSH.
	VSCodeURL string `json:"vscode_url"`
}

var loginUnsafe = regexp.MustCompile(`[^a-z0-9._-]+`)

// LoginName is the account a person uses on a devserver: the local part of
// their email, reduced to what a Unix user name may hold.
func LoginName(email string) string {
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	local = strings.Trim(loginUnsafe.ReplaceAllString(local, "-"), "-.")
	if len(local) > 32 {
		local = strings.Trim(local[:32], "-.")
	}
	if local == "" {
		return "dev"
	}
	return local
}

// Gateway is where the SSH gateway answers, as a person reaches the portal:
// its address (an IP address where one is known, so DNS is not needed) and port.
type Gateway struct {
	Host string
	Port int
}

// ConnectionFor is how viewer connects to d, or nil while d has no address
// or is not ready. With the SSH gateway the way in is the gateway, as
// <devserver>@<portal> on its port; without it, the devserver's own address.
func ConnectionFor(d Devserver, viewer User, gw *Gateway) *Connection {
	if d.State != StateReady || d.Address == "" || d.Hostname == "" {
		return nil
	}
	if gw != nil && gw.Host != "" && gw.Port > 0 {
		return gatewayConnection(d.Name, d.Hostname, d.Address, gw)
	}
	user := LoginName(viewer.Email)
	return &Connection{
		Hostname:   d.Hostname,
		Address:    d.Address,
		User:       user,
		SSHConfig:  "Host " + d.Hostname + "\n    HostName " + d.Address + "\n    User " + user + "\n",
		SSHCommand: "ssh " + user + "@" + d.Address,
		SSHHost:    d.Address,
		SSHPort:    22,
		VSCodeURL:  "vscode://vscode-remote/ssh-remote+" + url.PathEscape(d.Hostname) + "/home/" + url.PathEscape(user),
	}
}

// gatewayConnection is the way into an environment through the SSH
// gateway, as <name>@<portal> on its port.
func gatewayConnection(name, hostname, address string, gw *Gateway) *Connection {
	port := strconv.Itoa(gw.Port)
	return &Connection{
		Hostname: hostname, Address: address, User: name,
		SSHConfig:  "Host " + hostname + "\n    HostName " + gw.Host + "\n    Port " + port + "\n    User " + name + "\n",
		SSHCommand: "ssh -p " + port + " " + name + "@" + gw.Host,
		SSHHost:    gw.Host,
		SSHPort:    gw.Port,
		VSCodeURL:  "vscode://vscode-remote/ssh-remote+" + url.PathEscape(hostname) + "/home/dev",
	}
}

// ContainerConnectionFor is how the owner reaches a ready container over
// SSH: only through the gateway (nil without one, or until it is ready).
func ContainerConnectionFor(c Container, gw *Gateway) *Connection {
	if c.State != ContainerReady || c.Hostname == "" || gw == nil || gw.Host == "" || gw.Port <= 0 {
		return nil
	}
	return gatewayConnection(c.Name, c.Hostname, c.Address, gw)
}
