// Package sshgateway is devport's SSH server: `ssh -p 2222 <devserver>@<portal>`
// opens a shell (or runs a command) in that devserver for its owner and the
// people it is shared with, and `ssh -p 2222 <container>@<portal>` in that On
// Demand container for its owner, authenticated by the public keys on their
// devport profile. The user name tells them apart: a container's ID ("od" and
// eight letters or digits) never has the dash every devserver's name has.
// Sessions are bridged to the fleet driver of the target's host
// (fleet.Interactive) and audited when they open and when they close.
// Local port forwarding (ssh -L, VS Code Remote-SSH) reaches ports on the
// environment's own loopback through the driver (fleet.Dialer; see
// forward.go). Only public-key authentication, session and direct-tcpip
// channels exist: passwords, keyboard-interactive, forwarding to other
// hosts, remote forwarding, agent and X11 forwarding and subsystems (sftp)
// are refused.
package sshgateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// Options configure a gateway.
type Options struct {
	Store *store.Store
	Fleet *fleet.Fleet
	Log   *slog.Logger
	// HostKey is the server's host key (see HostKey).
	HostKey ssh.Signer
	// HandshakeTimeout bounds how long a connection may take to
	// authenticate (default 30 s).
	HandshakeTimeout time.Duration
	// MaxConnections bounds the connections served at once (default 512);
	// further ones are closed at once.
	MaxConnections int
}

// Permissions extensions that carry who authenticated from the key check to
// the connection.
const (
	extUserID      = "devport-user-id"
	extFingerprint = "devport-key-fingerprint"
)

// maxTargetName bounds the SSH user name the gateway looks up.
const maxTargetName = 100

// maxSessions bounds the sessions open at once on one connection (OpenSSH's
// sshd allows 10 by default).
const maxSessions = 10

// Server is an SSH gateway.
type Server struct {
	o      Options
	config *ssh.ServerConfig

	// ctx ends sessions when the server shuts down.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	told      map[string]bool // connections (by remote address) told why a key was refused
	closed    bool
	wg        sync.WaitGroup
}

// New returns a gateway; Serve starts it.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Fleet == nil || o.HostKey == nil {
		return nil, errors.New("sshgateway: Store, Fleet and HostKey are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 512
	}
	s := &Server{o: o, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}, told: map[string]bool{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.config = &ssh.ServerConfig{
		// Public keys only: with no password or keyboard-interactive
		// callback, the server offers neither method.
		PublicKeyCallback: s.checkKey,
		MaxAuthTries:      6,
		ServerVersion:     "SSH-2.0-devport",
		AuthLogCallback: func(meta ssh.ConnMetadata, method string, err error) {
			if err != nil && method != "none" {
				o.Log.Debug("SSH authentication refused", "target", meta.User(), "method", method, "remote_addr", meta.RemoteAddr().String(), "reason", err)
			}
		},
	}
	s.config.AddHostKey(o.HostKey)
	return s, nil
}

// HostKeyFingerprint is the SHA-256 fingerprint of the host key, as
// OpenSSH shows it when a client first connects.
func (s *Server) HostKeyFingerprint() string { return ssh.FingerprintSHA256(s.o.HostKey.PublicKey()) }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("sshgateway: server closed")

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.o.Log.Warn("SSH accept failed; retrying", "error", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("sshgateway: accept: %w", err)
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			continue
		}
		s.wg.Go(func() {
			defer s.untrack(c)
			s.serveConn(c)
		})
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if len(s.conns) >= s.o.MaxConnections {
		s.o.Log.Warn("SSH connection refused: too many connections", "remote_addr", c.RemoteAddr().String(), "max", s.o.MaxConnections)
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting connections, ends every session (each is told
// why on its error stream, gets exit status 255 and is audited), and waits
// for the connections to finish until ctx ends, when it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// refusal is a failed key check. The client is told why with a banner, once
// per connection: ssh tries every key it has, and a person whose second key
// gets in should not read one refusal per key before the shell.
func (s *Server) refusal(meta ssh.ConnMetadata, reason, banner string) error {
	s.mu.Lock()
	told := s.told[meta.RemoteAddr().String()]
	s.told[meta.RemoteAddr().String()] = true
	s.mu.Unlock()
	if told {
		return errors.New(reason)
	}
	return &ssh.BannerError{Err: errors.New(reason), Message: "devport: " + banner + "\r\n"}
}

// target is what an SSH user name opens sessions in: a devserver or an On
// Demand container. Both kinds fill it, so that checking a key and
// authorizing a session are one code path.
type target struct {
	kind       string // "devserver" or "container": the audit object type and the word in messages
	name       string
	instanceID string
	hostID     int64
	host       string
	driver     string // the host's fleet driver; "" to be looked up from the host
	state      string
	ready      bool   // the state in which sessions open
	over       bool   // the target will never be ready again
	note       string // what the status says, for a target that is not ready
	canShell   func(store.User) bool
}

// kindOf is the kind of target an SSH user name names.
func kindOf(name string) string {
	if store.IsContainerName(name) {
		return "container"
	}
	return "devserver"
}

// lookup reads the target an SSH user name names; store.ErrNotFound when
// there is none.
func (s *Server) lookup(ctx context.Context, name string) (target, error) {
	if kindOf(name) == "container" {
		c, err := s.o.Store.Container(ctx, name)
		if err != nil {
			return target{}, err
		}
		note := c.StatusNote
		if e := strings.TrimSuffix(c.EndText(), "."); e != "" && !c.Live() {
			// "Its lifetime ran out." becomes "its lifetime ran out".
			note = strings.ToLower(e[:1]) + e[1:]
		}
		return target{
			kind: "container", name: c.Name, instanceID: c.InstanceID, hostID: c.HostID, host: c.Host, driver: c.Driver,
			state: c.State, ready: c.State == store.ContainerReady, over: !c.Live(), note: note,
			canShell: func(u store.User) bool { return store.CanShellContainer(u, c) },
		}, nil
	}
	d, err := s.o.Store.Devserver(ctx, name)
	if err != nil {
		return target{}, err
	}
	return target{
		kind: "devserver", name: d.Name, instanceID: d.InstanceID, hostID: d.HostID, host: d.Host,
		state: d.State, ready: d.State == store.StateReady, note: d.StatusNote,
		canShell: func(u store.User) bool { return store.CanShellDevserver(u, d) },
	}, nil
}

// whoMay says who may open a target of the kind, for refusals.
func whoMay(kind string) string {
	if kind == "container" {
		return "the container's owner"
	}
	return "the devserver's owner or of someone it is shared with"
}

// checkKey authenticates a key: it must be on the profile of someone who may
// open the named target (a devserver's owner or sharees, a container's
// owner). Strangers are told the same thing whether or not the target
// exists. It runs before the client proves it holds the private key, so it
// says nothing about the target; readiness is checked once the connection
// is authenticated.
func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	text := string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(key)))
	parsed, problem := store.ParsePublicKey(text)
	if problem != "" {
		return nil, s.refusal(meta, "unsupported key: "+problem,
			fmt.Sprintf("the %s key %s %s.", key.Type(), ssh.FingerprintSHA256(key), problem))
	}
	name := meta.User()
	kind := kindOf(name)
	port := "2222"
	if a, ok := meta.LocalAddr().(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
	}
	denied := func() error {
		return s.refusal(meta, "not the key of someone who may open the "+kind,
			fmt.Sprintf("the key %s may not open %s %s: it is not on the devport profile of %s, or there is no such %s. Connect as ssh -p %s <%s>@<portal> with a key from your profile (ssh may try your other keys next).",
				parsed.Fingerprint, kind, strconv.Quote(clip(name)), whoMay(kind), kind, port, kind))
	}
	if name == "" || len(name) > maxTargetName {
		return nil, denied()
	}
	users, err := s.o.Store.SSHKeyUsers(ctx, text)
	if err != nil {
		s.o.Log.Error("SSH key check failed", "error", err)
		return nil, s.refusal(meta, err.Error(), "devport could not check your key just now; try again shortly.")
	}
	if len(users) == 0 {
		return nil, denied()
	}
	t, err := s.lookup(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, denied()
	}
	if err != nil {
		s.o.Log.Error("SSH key check failed", kind, name, "error", err)
		return nil, s.refusal(meta, err.Error(), "devport could not check your key just now; try again shortly.")
	}
	for _, u := range users {
		if t.canShell(u) {
			return &ssh.Permissions{Extensions: map[string]string{
				extUserID:      strconv.FormatInt(u.ID, 10),
				extFingerprint: parsed.Fingerprint,
			}}, nil
		}
	}
	return nil, denied()
}

// clip shortens a name for a message.
func clip(s string) string {
	if len(s) > maxTargetName {
		return s[:maxTargetName] + "…"
	}
	return s
}

// conn is one authenticated connection: a person and a target.
type conn struct {
	s           *Server
	sc          *ssh.ServerConn
	userID      int64
	fingerprint string
	name        string // the target's name: the SSH user name
	kind        string
	remoteAddr  string
	log         *slog.Logger
}

func (s *Server) serveConn(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(s.o.HandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	s.mu.Lock()
	delete(s.told, c.RemoteAddr().String())
	s.mu.Unlock()
	if err != nil {
		s.o.Log.Debug("SSH handshake failed", "remote_addr", c.RemoteAddr().String(), "error", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sc.Close()
	userID, _ := strconv.ParseInt(sc.Permissions.Extensions[extUserID], 10, 64)
	cn := &conn{
		s: s, sc: sc, userID: userID, fingerprint: sc.Permissions.Extensions[extFingerprint],
		name: sc.User(), kind: kindOf(sc.User()), remoteAddr: c.RemoteAddr().String(),
	}
	cn.log = s.o.Log.With(cn.kind, cn.name, "user_id", userID, "remote_addr", cn.remoteAddr)
	cn.log.Info("SSH connection", "key", cn.fingerprint)
	// Global requests (tcpip-forward for remote port forwarding, keepalives)
	// are all answered no.
	go ssh.DiscardRequests(reqs)
	// The connection ends when the client goes, or when the server shuts
	// down once its sessions have said goodbye (5 s at most).
	var sessions sync.WaitGroup
	var active atomic.Int64
	var forwards atomic.Int64
	stop := context.AfterFunc(s.ctx, func() {
		for wait := time.Now().Add(5 * time.Second); active.Load() > 0 && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
		}
		sc.Close()
	})
	defer stop()
	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" {
			cn.forward(nc, &forwards, &sessions)
			continue
		}
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.Prohibited, "devport opens shells, commands and forwards to the environment's own ports only; "+nc.ChannelType()+" channels are not allowed")
			continue
		}
		if active.Load() >= maxSessions {
			_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d sessions may be open at once on one connection", maxSessions))
			continue
		}
		a, msg := cn.authorize()
		if msg != "" {
			cn.log.Info("SSH session refused", "reason", msg)
			_ = nc.Reject(ssh.Prohibited, msg)
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		active.Add(1)
		sessions.Go(func() {
			defer active.Add(-1)
			cn.session(a, ch, creqs)
		})
	}
	sessions.Wait()
}

// access is what a session channel opens in: checked when it opens.
type access struct {
	user  store.User
	t     target
	inter fleet.Interactive
	drv   fleet.Driver // for forwards (fleet.Dialer)
}

// authorize re-reads the person and the target for every session, so a
// share removed, a release or an end started since the connection began
// counts. The message is for the client when the session is refused.
func (cn *conn) authorize() (access, string) {
	ctx, cancel := context.WithTimeout(cn.s.ctx, 10*time.Second)
	defer cancel()
	retry := "devport could not check this " + cn.kind + " just now; try again shortly"
	u, err := cn.s.o.Store.User(ctx, cn.userID)
	if err != nil {
		cn.log.Error("SSH session: user", "error", err)
		return access{}, retry
	}
	t, err := cn.s.lookup(ctx, cn.name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !t.canShell(u)) {
		if cn.kind == "container" {
			return access{}, fmt.Sprintf("you may no longer open container %s: you are not its owner", cn.name)
		}
		return access{}, fmt.Sprintf("you may no longer open devserver %s: you are not its owner and it is not shared with you", cn.name)
	}
	if err != nil {
		cn.log.Error("SSH session: "+cn.kind, "error", err)
		return access{}, retry
	}
	if !t.ready || t.instanceID == "" {
		note := ""
		if t.note != "" {
			note = " (" + t.note + ")"
		}
		if t.over {
			return access{}, fmt.Sprintf("%s %s is %s%s and opens no more shells; request a new %s in devport", t.kind, t.name, t.state, note, t.kind)
		}
		return access{}, fmt.Sprintf("%s %s is %s, not ready: a shell opens once devport shows it ready%s", t.kind, t.name, t.state, note)
	}
	if t.driver == "" {
		h, err := cn.s.o.Store.Host(ctx, t.hostID)
		if err != nil {
			cn.log.Error("SSH session: host", "error", err)
			return access{}, retry
		}
		t.driver = h.Driver
	}
	drv, err := cn.s.o.Fleet.Driver(t.driver)
	if err != nil {
		return access{}, fmt.Sprintf("%s %s runs on host %s, whose driver %s this portal does not run", t.kind, t.name, t.host, t.driver)
	}
	inter, ok := drv.(fleet.Interactive)
	if !ok {
		return access{}, fmt.Sprintf("%s %s runs on host %s, whose driver %s cannot open shells", t.kind, t.name, t.host, t.driver)
	}
	return access{user: u, t: t, inter: inter, drv: drv}, ""
}
