// Command devport is a self-hosted portal for developer environments.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/handlers"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/static"
	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
	"github.com/devport/devport/web/sshgateway"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "devport:", err)
		}
		os.Exit(1)
	}
}

const usage = `devport — a portal for developer environments

Usage:
  devport [serve] [flags]     run the portal (default)
  devport migrate [flags]     apply database migrations and exit
  devport migrate-data [--from PATH] --database-url postgres://USER:PASSWORD@HOST:PORT/DATABASE
                              copy a SQLite installation (default: devport.db in the data
                              directory) into an empty PostgreSQL database, and check it
  devport token create --user EMAIL [--role admin] [--role reviewer] [--name NAME] [flags]
                              create a user (if new) and a personal access token; prints the token once
  devport version             print the version

The CLI (run "devport --help" after "devport login" for all of it):
  devport login [--portal URL] [--token TOKEN]
  devport ls | show | reserve | extend | release | migrate NAME | share | backup | restore
  devport containers | ssh NAME | tasks | inbox | ssh-config | doctor [--rage] | completion SHELL

Run "devport serve -h" for the settings; each flag also reads a DEVPORT_* variable.
`

// run is devport: main and the tests both start it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		args = args[1:]
	}
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		args = []string{"help"}
	}
	// "devport migrate NAME ..." moves a devserver (the CLI); "devport
	// migrate [flags]" migrates the database (the server).
	if cliInvocation(args) {
		return runCLI(ctx, defaultCLIEnv(getenv, stdout), args)
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stdout)
	case "migrate":
		return migrate(ctx, args, getenv, stdout)
	case "migrate-data":
		return migrateData(ctx, args, getenv, stdout)
	case "token":
		if len(args) == 0 || args[0] != "create" {
			return errors.New("usage: devport token create --user EMAIL [--role admin] [--role reviewer] [--name NAME]")
		}
		return tokenCreate(ctx, args[1:], getenv, stdout)
	case "version":
		fmt.Fprintln(stdout, "devport", version)
		return nil
	case "help":
		return runCLI(ctx, defaultCLIEnv(getenv, stdout), append([]string{"help"}, args...))
	}
	return fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
}

func newLogger(c config, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// lockDataDir makes this process the one portal serving from the data
// directory: a second `serve` on it would run the same jobs and take over
// job rows the first one is running. The lock goes with the process, even
// when it is killed.
func lockDataDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "serve.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another devport is serving from the data directory %s (it holds %s); stop it first, or give this one its own --data-dir", dir, path)
		}
		return nil, fmt.Errorf("lock the data directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

func openStore(ctx context.Context, c config, log *slog.Logger) (*store.Store, error) {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", c.DataDir, err)
	}
	if c.DatabaseEngine() == store.Postgres {
		return store.Open(ctx, store.Options{URL: c.DatabaseURL, Log: log})
	}
	return store.Open(ctx, store.Options{Path: c.DatabasePath(), Log: log})
}

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c, err := parseConfig("migrate", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	s, err := openStore(ctx, c, newLogger(c, stdout))
	if err != nil {
		return err
	}
	defer s.Close()
	cur, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database %s is at schema version %d of %d\n", c.DatabaseName(), cur, latest)
	return nil
}

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func tokenCreate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var email, name, expires string
	var roles repeated
	c, err := parseConfig("token create", args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&email, "user", "", "the user's email address (required)")
		fs.Var(&roles, "role", "a role to grant: admin or reviewer (repeatable)")
		fs.StringVar(&name, "name", "cli", "a name for the token")
		fs.StringVar(&expires, "expires", "", "how long the token lives, such as 720h (default: no expiry)")
	})
	if err != nil {
		return err
	}
	if email == "" {
		return errors.New("token create: --user EMAIL is required")
	}
	for _, r := range roles {
		if !store.ValidRole(r) {
			return fmt.Errorf("token create: --role %q is not a role (admin, reviewer)", r)
		}
	}
	s, err := openStore(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer s.Close()
	var expiresAt *time.Time
	if expires != "" {
		d, err := time.ParseDuration(expires)
		if err != nil || d <= 0 {
			return fmt.Errorf("token create: --expires %q is not a positive duration such as 720h", expires)
		}
		t := s.Now().Add(d)
		expiresAt = &t
	}
	var secret string
	err = s.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.UpsertUser(ctx, email, "", false)
		if err != nil {
			return err
		}
		if len(roles) > 0 {
			if err := tx.SetRoles(ctx, u.ID, append(u.Roles, roles...)); err != nil {
				return err
			}
		} else if len(u.Roles) == 0 {
			if err := tx.SetRoles(ctx, u.ID, nil); err != nil {
				return err
			}
		}
		t, sec, err := tx.CreateToken(ctx, u.ID, name, "full", expiresAt)
		if err != nil {
			return err
		}
		secret = sec
		return tx.Audit(ctx, store.Actor{Name: "cli:token-create"}, "token.create", "token", fmt.Sprint(t.ID),
			map[string]any{"user": u.Email, "name": t.Name, "roles": []string(roles)})
	})
	if err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("token create: %s", ve.Error())
		}
		return err
	}
	fmt.Fprintln(stdout, secret)
	return nil
}

// secretKey returns the data directory's key of that name, generating it (mode 0600) on first use.
func secretKey(dataDir, name string) ([]byte, error) {
	dir := filepath.Join(dataDir, "secrets")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < 32 {
			return nil, fmt.Errorf("secret %s is shorter than 32 bytes; delete it to generate a new one", path)
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secret %s: %w", path, err)
	}
	b = make([]byte, 64)
	_, _ = rand.Read(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("secret %s: %w", path, err)
	}
	return b, f.Close()
}

func serve(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c, err := parseConfig("serve", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	log := newLogger(c, stdout)
	if c.DevLogin {
		log.Warn("The dev login is enabled: anyone who reaches this portal can sign in as anyone", "addr", c.Addr)
	}
	if !c.DevLogin && c.OIDCIssuer == "" {
		return errors.New("no way to sign in: set DEVPORT_OIDC_ISSUER (with its client settings) or DEVPORT_DEV_LOGIN=1")
	}
	// On SQLite one process owns the database: the data directory's lock
	// says which. Replicas on PostgreSQL share the database (and may share
	// the data directory's secrets).
	if c.DatabaseEngine() == store.SQLite {
		unlock, err := lockDataDir(c.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	s, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer s.Close()
	fleetSrc, err := setupFleet(ctx, c, s, log)
	if err != nil {
		return err
	}
	key, err := secretKey(c.DataDir, "session-key")
	if err != nil {
		return err
	}
	if err := checkSharedSecrets(ctx, c, s, key); err != nil {
		return err
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	drivers := fleetSrc.Fleet
	senders, err := notificationSenders(c)
	if err != nil {
		return err
	}
	runner, err := jobs.New(ctx, jobs.Options{Store: s, Fleet: drivers, Log: log, Metrics: registry, SessionIdle: c.SessionIdle,
		PoolInterval: c.PoolInterval, BackupDir: c.BackupPath(), BackupInterval: c.BackupInterval,
		BackupRetention: jobs.Retention{KeepLast: c.BackupKeepLast, KeepDays: c.BackupKeepDays}, LeaseReminders: c.LeaseReminders,
		ContainerFreshness: c.ContainerFreshness, ContainerWarning: c.ContainerWarning, Senders: senders})
	if err != nil {
		return err
	}
	// Jobs run on their own context: a shutdown lets them finish (Stop), not die mid-call.
	if err := runner.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}

	var oidc *web.OIDC
	if c.OIDCIssuer != "" {
		oidc = web.NewOIDC(web.OIDCConfig{
			Issuer: c.OIDCIssuer, ClientID: c.OIDCClientID, ClientSecret: c.OIDCClientSecret, RedirectURL: c.OIDCRedirectURL,
			AdminGroups: c.AdminGroups, ReviewerGroups: c.ReviewerGroups,
		})
	}
	secure := strings.HasPrefix(c.OIDCRedirectURL, "https://")
	terminals := handlers.NewTerminals()
	errc := make(chan error, 2)
	gateway, sshPort, err := startSSHGateway(c, s, drivers, log, stdout, errc)
	if err != nil {
		_ = runner.Stop(context.Background())
		return err
	}
	router := handlers.New(handlers.Options{
		SSHPort: sshPort,
		Log:     log, Store: s, Jobs: runner, OIDC: oidc, DevLogin: c.DevLogin, Fleet: fleetSrc.Badge, Drivers: drivers, Terminals: terminals, Registry: registry,
		Sessions: web.NewSessionStore(s, key, c.SessionIdle, c.SessionMaxAge, secure, log),
		Ready: func(ctx context.Context) error {
			if err := s.Ping(ctx); err != nil {
				return errors.New("database unavailable")
			}
			if !runner.Running() {
				return errors.New("job runner not running")
			}
			return nil
		},
		Static:             static.FS,
		ContainerFreshness: c.ContainerFreshness,
		Channels:           senders.Offered(),
	})

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		if gateway != nil {
			_ = gateway.Shutdown(context.Background())
		}
		_ = runner.Stop(context.Background())
		return fmt.Errorf("listen on %s (DEVPORT_ADDR): %w", c.Addr, err)
	}
	srv := &http.Server{
		Handler: router, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "devport listening on http://%s\n", ln.Addr())
	log.Info("Serving", "addr", ln.Addr().String(), "data_dir", c.DataDir, "dev_login", c.DevLogin, "oidc", c.OIDCIssuer != "", "version", version, "replica", runner.ReplicaID())

	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		_ = runner.Stop(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("Shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var gerr error
	if gateway != nil {
		gerr = gateway.Shutdown(shutdown)
	}
	herr := errors.Join(srv.Shutdown(shutdown), terminals.Shutdown(shutdown))
	jerr := runner.Stop(shutdown)
	log.Info("Stopped")
	return errors.Join(gerr, herr, jerr)
}

// startSSHGateway starts the SSH gateway on c.SSHAddr and returns it with
// the port it listens on (0 when it is off); it uses the data
// directory's host key (generated on first start); nil when it is off. A
// failure of its Serve is sent to errc.
func startSSHGateway(c config, s *store.Store, drivers *fleet.Fleet, log *slog.Logger, stdout io.Writer, errc chan<- error) (*sshgateway.Server, int, error) {
	if c.SSHAddr == "" {
		log.Info("The SSH gateway is off (DEVPORT_SSH_ADDR=off)")
		return nil, 0, nil
	}
	hostKey, err := sshgateway.HostKey(c.SSHHostKeyPath())
	if err != nil {
		return nil, 0, err
	}
	gateway, err := sshgateway.New(sshgateway.Options{Store: s, Fleet: drivers, Log: log, HostKey: hostKey})
	if err != nil {
		return nil, 0, err
	}
	ln, err := net.Listen("tcp", c.SSHAddr)
	if err != nil {
		return nil, 0, fmt.Errorf("listen on %s (DEVPORT_SSH_ADDR; off disables the SSH gateway): %w", c.SSHAddr, err)
	}
	go func() {
		if err := gateway.Serve(ln); !errors.Is(err, sshgateway.ErrServerClosed) {
			errc <- fmt.Errorf("ssh gateway: %w", err)
		}
	}()
	fmt.Fprintf(stdout, "devport SSH gateway on %s (host key %s)\n", ln.Addr(), gateway.HostKeyFingerprint())
	log.Info("SSH gateway", "addr", ln.Addr().String(), "host_key", gateway.HostKeyFingerprint())
	return gateway, ln.Addr().(*net.TCPAddr).Port, nil
}

// notificationSenders are the email and chat senders the settings turn on.
func notificationSenders(c config) (jobs.Senders, error) {
	base := "http://" + c.Addr
	if u, err := url.Parse(c.OIDCRedirectURL); err == nil && u.Host != "" {
		base = u.Scheme + "://" + u.Host
	}
	var senders jobs.Senders
	if c.SMTPAddr != "" {
		e, err := jobs.NewEmailSender(jobs.EmailConfig{Addr: c.SMTPAddr, TLS: c.SMTPTLS, User: c.SMTPUser, Password: c.SMTPPassword, From: c.SMTPFrom, BaseURL: base})
		if err != nil {
			return senders, &settingError{env: "DEVPORT_SMTP_ADDR", flag: "smtp-addr", value: c.SMTPAddr, problem: err.Error()}
		}
		senders.Email = e
	}
	if c.ChatWebhookURL != "" {
		chat, err := jobs.NewChatSender(c.ChatWebhookURL, base, 0)
		if err != nil {
			return senders, &settingError{env: "DEVPORT_CHAT_WEBHOOK_URL", flag: "chat-webhook-url", problem: err.Error()}
		}
		senders.Chat = chat
	}
	return senders, nil
}
