package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
)

// config is devport's settings, from flags over DEVPORT_* variables over defaults.
type config struct {
	Addr             string
	SSHAddr          string // "" when the SSH gateway is off
	DataDir          string
	DatabaseURL      string
	DevLogin         bool
	OIDCIssuer       string
	OIDCClientID     string
	OIDCClientSecret string
	OIDCRedirectURL  string
	AdminGroups      []string
	ReviewerGroups   []string
	SimLatency       time.Duration
	SimFailures      map[string]float64
	Fleet            string // a fleet file's path; "" means the built-in demo fleet (sim)
	SessionIdle      time.Duration
	SessionMaxAge    time.Duration
	PoolInterval     time.Duration
	BackupDir        string // "" means <data-dir>/backups
	BackupInterval   time.Duration
	BackupKeepLast   int
	BackupKeepDays   int
	LeaseReminders   []time.Duration
	// ContainerFreshness and ContainerWarning: how long a pooled container
	// waits before it is recycled, and how long before a container's end its
	// owner is warned.
	ContainerFreshness time.Duration
	ContainerWarning   time.Duration
	LogLevel           string
	LogFormat          string

	// Email over SMTP (off when SMTPAddr is empty) and chat through a
	// Slack-compatible incoming webhook (off when ChatWebhookURL is empty).
	SMTPAddr, SMTPTLS, SMTPUser, SMTPPassword, SMTPFrom string
	ChatWebhookURL                                      string
}

// setting is one configuration value: its flag, its variable, its default,
// and how to read it.
type setting struct {
	flag, env, def, usage string
	set                   func(string) error
}

// settingError names the setting and what is wrong with it.
type settingError struct {
	env, flag, value, problem string
}

func (e *settingError) Error() string {
	if e.flag == "database-url" {
		e.value = store.RedactURL(e.value) // never show its password
	}
	return fmt.Sprintf("invalid setting %s (--%s) = %q: %s", e.env, e.flag, e.value, e.problem)
}

func settings(c *config, devLogin *string) []setting {
	dur := func(dst *time.Duration, min time.Duration) func(string) error {
		return func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return errors.New("not a duration such as 3s, 500ms or 12h")
			}
			if d < min {
				return fmt.Errorf("must be at least %s", min)
			}
			*dst = d
			return nil
		}
	}
	count := func(dst *int, min int) func(string) error {
		return func(v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < min {
				return fmt.Errorf("must be a whole number of at least %d", min)
			}
			*dst = n
			return nil
		}
	}
	str := func(dst *string) func(string) error {
		return func(v string) error { *dst = strings.TrimSpace(v); return nil }
	}
	list := func(dst *[]string) func(string) error {
		return func(v string) error {
			*dst = nil
			for _, g := range strings.Split(v, ",") {
				if g = strings.TrimSpace(g); g != "" {
					*dst = append(*dst, g)
				}
			}
			return nil
		}
	}
	return []setting{
		{"addr", "DEVPORT_ADDR", "127.0.0.1:8080", "address to listen on (host:port)", func(v string) error {
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				return errors.New("not host:port, such as 127.0.0.1:8080")
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				return errors.New("the port must be a number from 0 to 65535")
			}
			if host != "" && net.ParseIP(host) == nil && host != "localhost" {
				return errors.New("the host must be an IP address or localhost")
			}
			c.Addr = v
			return nil
		}},
		{"ssh-addr", "DEVPORT_SSH_ADDR", "127.0.0.1:2222", "address of the SSH gateway (host:port), or off", func(v string) error {
			v = strings.TrimSpace(v)
			if v == "" || strings.EqualFold(v, "off") {
				c.SSHAddr = ""
				return nil
			}
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				return errors.New("not host:port, such as 127.0.0.1:2222, or off")
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				return errors.New("the port must be a number from 0 to 65535")
			}
			if host != "" && net.ParseIP(host) == nil && host != "localhost" {
				return errors.New("the host must be an IP address or localhost")
			}
			c.SSHAddr = v
			return nil
		}},
		{"data-dir", "DEVPORT_DATA_DIR", "./data", "directory for the database and generated secrets", func(v string) error {
			if strings.TrimSpace(v) == "" {
				return errors.New("must not be empty")
			}
			c.DataDir = filepath.Clean(v)
			return nil
		}},
		{"database-url", "DEVPORT_DATABASE_URL", "", "database (default: SQLite in the data directory; sqlite:PATH for another file; postgres://USER:PASSWORD@HOST:PORT/DATABASE for PostgreSQL)", func(v string) error {
			v = strings.TrimSpace(v)
			switch {
			case v == "":
			case strings.HasPrefix(v, "sqlite:"), strings.HasPrefix(v, "file:"):
				u, err := url.Parse(v)
				if err != nil || (u.Opaque == "" && u.Path == "") {
					return errors.New("not a SQLite URL such as sqlite:/var/lib/devport/devport.db")
				}
			case store.EngineOf(v) == store.Postgres:
				if err := store.CheckPostgresURL(v); err != nil {
					return err
				}
			default:
				return errors.New("not a database URL devport knows (sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
			}
			c.DatabaseURL = v
			return nil
		}},
		{"dev-login", "DEVPORT_DEV_LOGIN", "", "enable the dev login: 1 or 0 (default: on when no OIDC issuer is set and the address is loopback)", func(v string) error {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "", "1", "0", "true", "false", "on", "off", "yes", "no":
				*devLogin = strings.ToLower(strings.TrimSpace(v))
				return nil
			}
			return errors.New("must be 1 or 0")
		}},
		{"oidc-issuer", "DEVPORT_OIDC_ISSUER", "", "OpenID Provider issuer URL", func(v string) error {
			if _, err := httpURL(v); err != nil {
				return err
			}
			c.OIDCIssuer = strings.TrimRight(v, "/")
			return nil
		}},
		{"oidc-client-id", "DEVPORT_OIDC_CLIENT_ID", "", "OAuth client ID registered with the provider", str(&c.OIDCClientID)},
		{"oidc-client-secret", "DEVPORT_OIDC_CLIENT_SECRET", "", "OAuth client secret", str(&c.OIDCClientSecret)},
		{"oidc-redirect-url", "DEVPORT_OIDC_REDIRECT_URL", "", "this portal's callback URL, ending in /auth/oidc/callback", func(v string) error {
			u, err := httpURL(v)
			if err != nil {
				return err
			}
			if u != nil && u.Path != "/auth/oidc/callback" {
				return errors.New("the path must be /auth/oidc/callback")
			}
			c.OIDCRedirectURL = v
			return nil
		}},
		{"admin-groups", "DEVPORT_ADMIN_GROUPS", "devport-admins", "comma-separated provider groups whose members are admins", list(&c.AdminGroups)},
		{"reviewer-groups", "DEVPORT_REVIEWER_GROUPS", "devport-reviewers", "comma-separated provider groups whose members are reviewers", list(&c.ReviewerGroups)},
		{"sim-latency", "DEVPORT_SIM_LATENCY", "3s", "how long the simulated fleet takes to create an environment; 0s is instant", dur(&c.SimLatency, 0)},
		{"fleet", "DEVPORT_FLEET", "", "fleet file (YAML) declaring regions, hosts and drivers; empty means the built-in demo fleet (sim)", str(&c.Fleet)},
		{"sim-failures", "DEVPORT_SIM_FAILURES", "", "simulated failure rates, such as create=0.1,start=0.05", func(v string) error {
			f, err := sim.ParseFailures(v)
			if err != nil {
				return err
			}
			c.SimFailures = f
			return nil
		}},
		{"session-idle", "DEVPORT_SESSION_IDLE", "12h", "a web session ends after this long unused", dur(&c.SessionIdle, time.Minute)},
		{"session-max-age", "DEVPORT_SESSION_MAX_AGE", "168h", "a web session ends this long after sign-in, used or not", dur(&c.SessionMaxAge, time.Minute)},
		{"pool-interval", "DEVPORT_POOL_INTERVAL", "10s", "how often the pools of ready devservers are topped up to their targets; 0s turns refills off", func(v string) error {
			if err := dur(&c.PoolInterval, 0)(v); err != nil {
				return err
			}
			if c.PoolInterval > 0 && c.PoolInterval < time.Second {
				return errors.New("must be 0s (off) or at least 1s")
			}
			return nil
		}},
		{"container-freshness", "DEVPORT_CONTAINER_FRESHNESS", "6h", "a pooled On Demand container older than this is recycled, so every user gets current tooling", dur(&c.ContainerFreshness, time.Minute)},
		{"container-warning", "DEVPORT_CONTAINER_WARNING", "2h", "how long before an On Demand container ends its owner is warned in the inbox", dur(&c.ContainerWarning, time.Minute)},
		{"smtp-addr", "DEVPORT_SMTP_ADDR", "", "SMTP server for email notifications, host:port (empty: email off)", func(v string) error {
			if v = strings.TrimSpace(v); v == "" {
				c.SMTPAddr = ""
				return nil
			}
			host, port, err := net.SplitHostPort(v)
			if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
				return errors.New("not host:port, such as smtp.example.com:587")
			}
			c.SMTPAddr = v
			return nil
		}},
		{"smtp-tls", "DEVPORT_SMTP_TLS", "starttls", "how email is encrypted: none, starttls or tls (implicit, port 465)", func(v string) error {
			if v != "none" && v != "starttls" && v != "tls" {
				return errors.New("must be none, starttls or tls")
			}
			c.SMTPTLS = v
			return nil
		}},
		{"smtp-user", "DEVPORT_SMTP_USER", "", "SMTP user name (empty: no authentication)", str(&c.SMTPUser)},
		{"smtp-password", "DEVPORT_SMTP_PASSWORD", "", "SMTP password", func(v string) error { c.SMTPPassword = v; return nil }},
		{"smtp-from", "DEVPORT_SMTP_FROM", "", "sender address of email notifications, such as devport@example.com", func(v string) error {
			v = strings.TrimSpace(v)
			if v != "" {
				if _, err := mail.ParseAddress(v); err != nil {
					return errors.New("not an email address")
				}
			}
			c.SMTPFrom = v
			return nil
		}},
		{"chat-webhook-url", "DEVPORT_CHAT_WEBHOOK_URL", "", "Slack-compatible incoming webhook for chat notifications (empty: chat off)", func(v string) error {
			if _, err := httpURL(strings.TrimSpace(v)); err != nil {
				return errors.New("not an http(s) URL, such as https://hooks.slack.com/services/...")
			}
			c.ChatWebhookURL = strings.TrimSpace(v)
			return nil
		}},
		{"backup-dir", "DEVPORT_BACKUP_DIR", "", "directory of the backup store (default: backups in the data directory)", str(&c.BackupDir)},
		{"backup-interval", "DEVPORT_BACKUP_INTERVAL", "24h", "how often each ready devserver is backed up on schedule", dur(&c.BackupInterval, time.Hour)},
		{"backup-keep-last", "DEVPORT_BACKUP_KEEP_LAST", "7", "retention: how many of each devserver's newest backups are kept", count(&c.BackupKeepLast, 1)},
		{"backup-keep-days", "DEVPORT_BACKUP_KEEP_DAYS", "30", "retention: for how many days one backup a day is kept as well", count(&c.BackupKeepDays, 0)},
		{"lease-reminders", "DEVPORT_LEASE_REMINDERS", "72h,24h", "how long before a short lease ends its owner is reminded, comma-separated", func(v string) error {
			c.LeaseReminders = nil
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part == "" {
					continue
				}
				d, err := time.ParseDuration(part)
				if err != nil || d < time.Hour {
					return fmt.Errorf("%q is not a duration of at least 1h, such as 72h", part)
				}
				if slices.Contains(c.LeaseReminders, d) {
					return fmt.Errorf("%s is given twice", part)
				}
				c.LeaseReminders = append(c.LeaseReminders, d)
			}
			if len(c.LeaseReminders) == 0 {
				return errors.New("give at least one duration, such as 72h,24h")
			}
			return nil
		}},
		{"log-level", "DEVPORT_LOG_LEVEL", "info", "debug, info, warn or error", func(v string) error {
			switch v {
			case "debug", "info", "warn", "error":
				c.LogLevel = v
				return nil
			}
			return errors.New("must be debug, info, warn or error")
		}},
		{"log-format", "DEVPORT_LOG_FORMAT", "text", "text or json", func(v string) error {
			if v != "text" && v != "json" {
				return errors.New("must be text or json")
			}
			c.LogFormat = v
			return nil
		}},
	}
}

// parseConfig reads the settings of a subcommand: defaults, then DEVPORT_*
// variables, then flags. Any invalid value stops with its setting's name.
func parseConfig(name string, args []string, getenv func(string) string, out io.Writer, extra func(*flag.FlagSet)) (config, error) {
	var c config
	var devLogin string
	fs := flag.NewFlagSet("devport "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	for _, s := range settings(&c, &devLogin) {
		value := s.def
		if v, ok := lookup(getenv, s.env); ok {
			value = v
		}
		if err := s.set(value); err != nil {
			return c, &settingError{env: s.env, flag: s.flag, value: value, problem: err.Error()}
		}
		fs.Func(s.flag, s.usage+" ["+s.env+", default "+strconv.Quote(s.def)+"]", func(v string) error {
			if err := s.set(v); err != nil {
				return &settingError{env: s.env, flag: s.flag, value: v, problem: err.Error()}
			}
			return nil
		})
	}
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("devport %s: unexpected argument %q", name, fs.Arg(0))
	}
	return c, c.finish(devLogin)
}

func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

// finish checks the settings together.
func (c *config) finish(devLogin string) error {
	oidcSet := c.OIDCIssuer != "" || c.OIDCClientID != "" || c.OIDCRedirectURL != ""
	if oidcSet {
		switch {
		case c.OIDCIssuer == "":
			return &settingError{env: "DEVPORT_OIDC_ISSUER", flag: "oidc-issuer", problem: "is required when any OIDC setting is given"}
		case c.OIDCClientID == "":
			return &settingError{env: "DEVPORT_OIDC_CLIENT_ID", flag: "oidc-client-id", problem: "is required with DEVPORT_OIDC_ISSUER"}
		case c.OIDCRedirectURL == "":
			return &settingError{env: "DEVPORT_OIDC_REDIRECT_URL", flag: "oidc-redirect-url", value: "", problem: "is required with DEVPORT_OIDC_ISSUER, such as https://devport.example.com/auth/oidc/callback"}
		}
	}
	if c.SMTPAddr != "" && c.SMTPFrom == "" {
		return &settingError{env: "DEVPORT_SMTP_FROM", flag: "smtp-from", problem: "is required with DEVPORT_SMTP_ADDR, such as devport@example.com"}
	}
	if c.SMTPUser != "" && c.SMTPPassword == "" {
		return &settingError{env: "DEVPORT_SMTP_PASSWORD", flag: "smtp-password", problem: "is required with DEVPORT_SMTP_USER"}
	}
	switch devLogin {
	case "1", "true", "on", "yes":
		c.DevLogin = true
	case "0", "false", "off", "no":
		c.DevLogin = false
	default:
		c.DevLogin = c.OIDCIssuer == "" && isLoopback(c.Addr)
	}
	return nil
}

// DatabaseEngine is the engine the database URL selects (SQLite by default).
func (c config) DatabaseEngine() store.Engine { return store.EngineOf(c.DatabaseURL) }

// DatabaseName names the database in messages: the SQLite file, or the
// PostgreSQL URL without its password.
func (c config) DatabaseName() string {
	if c.DatabaseEngine() == store.Postgres {
		return store.RedactURL(c.DatabaseURL)
	}
	return c.DatabasePath()
}

// DatabasePath is the SQLite file (when the engine is SQLite).
func (c config) DatabasePath() string {
	if c.DatabaseURL == "" {
		return filepath.Join(c.DataDir, "devport.db")
	}
	u, _ := url.Parse(c.DatabaseURL)
	if u.Opaque != "" {
		return u.Opaque
	}
	return u.Path
}

// SSHHostKeyPath is the SSH gateway's host key, generated on first start.
func (c config) SSHHostKeyPath() string {
	return filepath.Join(c.DataDir, "secrets", "ssh_host_ed25519_key")
}

// BackupPath is the backup store's directory.
func (c config) BackupPath() string {
	if c.BackupDir == "" {
		return filepath.Join(c.DataDir, "backups")
	}
	return filepath.Clean(c.BackupDir)
}

// httpURL checks an optional http(s) URL setting; nil for an empty one.
func httpURL(v string) (*url.URL, error) {
	if v == "" {
		return nil, nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("not an http(s) URL")
	}
	return u, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
