package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// meInfo is the caller as GET /api/v1/me tells it.
type meInfo struct {
	Email      string   `json:"email"`
	Name       string   `json:"name"`
	HomeRegion string   `json:"home_region"`
	Roles      []string `json:"roles"`
}

// loginTimeout is how long devport login waits for the person to approve
// the sign-in in the browser.
const loginTimeout = 5 * time.Minute

func (c *cli) loginCmd() *cobra.Command {
	var withToken bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "sign in to the portal (in the browser, or with a token)",
		Long: `Sign in to the portal and keep the token in the configuration file
(~/.config/devport/config.json, readable by you alone).

Without a token, devport login opens the portal in your browser; you approve
the sign-in there and the portal hands this CLI a token valid 90 days.
With --token (or --with-token, reading it from standard input) it checks and
keeps a token you created on your profile page.`,
		Example: `  devport login --portal https://devport.example.com
  devport login --portal https://devport.example.com --token dpt_...
  echo "$TOKEN" | devport login --with-token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			portal := c.portal
			if portal == "" {
				portal = c.env.Getenv("DEVPORT_PORTAL")
			}
			if portal == "" && c.cfgErr == nil {
				portal = c.cfg.Portal
			}
			if portal == "" {
				return errors.New(`which portal? run "devport login --portal https://devport.example.com"`)
			}
			base, err := normalizePortal(portal)
			if err != nil {
				return err
			}
			token := c.token
			if withToken {
				line, err := bufio.NewReader(c.env.Stdin).ReadString('\n')
				if err != nil && line == "" {
					return errors.New("--with-token reads the token from standard input, which is empty")
				}
				token = strings.TrimSpace(line)
			}
			if token == "" {
				if token, err = c.browserLogin(cmd.Context(), base); err != nil {
					return err
				}
			}
			var me meInfo
			if err := newAPIClient(base, token, c.timeout, c.logRequest).get(cmd.Context(), "me", &me); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
					return errors.New("the portal does not accept this token: it is unknown, expired or revoked")
				}
				return err
			}
			if err := c.saveConfig(cliConfig{Portal: base, Token: token, User: me.Email}); err != nil {
				return err
			}
			c.say("Signed in to %s as %s.", base, me.Email)
			return nil
		},
	}
	cmd.Flags().BoolVar(&withToken, "with-token", false, "read the token from standard input")
	return cmd
}

// browserLogin signs the CLI in through the portal's page: it listens on
// loopback, opens /cli/login in the browser, receives a one-time code on
// its callback once the person approves, and exchanges the code (with the
// PKCE verifier only this process knows) for a token.
func (c *cli) browserLogin(ctx context.Context, base string) (string, error) {
	verifier := randomURLSafe(32)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	state := randomURLSafe(16)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen on loopback for the browser's answer: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if q.Get("state") != state {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "<!doctype html><title>devport</title><p>This sign-in answer is not for this devport login; it was ignored.</p>")
			return
		}
		code := q.Get("code")
		if code == "" {
			fmt.Fprint(w, "<!doctype html><title>devport</title><p>The sign-in was not approved. You can close this tab.</p>")
			select {
			case got <- result{err: errors.New("the sign-in was not approved in the browser")}:
			default:
			}
			return
		}
		fmt.Fprintf(w, "<!doctype html><title>devport</title><p>The devport CLI is signed in to %s. You can close this tab.</p>", html.EscapeString(base))
		select {
		case got <- result{code: code}:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// The portal names the token "devport CLI on <name>": name the host
	// alone, within the portal's 100 bytes.
	host, _ := os.Hostname()
	if host == "" {
		host = "this machine"
	}
	for len(host) > 100 {
		_, size := utf8.DecodeLastRuneInString(host)
		host = host[:len(host)-size]
	}
	u := base + "/cli/login?" + url.Values{
		"port": {strconv.Itoa(port)}, "state": {state}, "challenge": {challenge}, "name": {host},
	}.Encode()
	fmt.Fprintf(c.env.Stderr, "Opening the portal in your browser to approve this sign-in.\nIf it does not open, visit:\n\n  %s\n\nWaiting (up to %s)...\n", u, loginTimeout)
	if c.env.OpenBrowser != nil {
		if err := c.env.OpenBrowser(u); err != nil {
			fmt.Fprintf(c.env.Stderr, "(the browser did not open: %v)\n", err)
		}
	}
	var res result
	select {
	case res = <-got:
	case <-time.After(loginTimeout):
		return "", fmt.Errorf("nobody approved the sign-in within %s; run devport login again", loginTimeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if res.err != nil {
		return "", res.err
	}
	var out struct {
		Secret string `json:"secret"`
	}
	_, err = newAPIClient(base, "", c.timeout, c.logRequest).do(ctx, http.MethodPost, "cli/token", map[string]string{"code": res.code, "verifier": verifier}, &out)
	if err != nil {
		return "", fmt.Errorf("exchange the sign-in code for a token: %w", err)
	}
	return out.Secret, nil
}

func randomURLSafe(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *cli) logoutCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "revoke the stored token and forget it",
		Long: `Revoke the stored token on the portal, so nothing can use it any more, and
remove it from the configuration file. When the portal cannot be reached (or
with --keep-token) the token is only forgotten here and stays valid until it
expires: revoke it on your profile page.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.cfgErr == nil && c.cfg.Token == "" {
				c.say("Not signed in.")
				return nil
			}
			portal := c.cfg.Portal
			revoked := false
			var why error
			if c.cfgErr == nil && !keep {
				a := newAPIClient(portal, c.cfg.Token, c.timeout, c.logRequest)
				_, why = a.do(cmd.Context(), http.MethodDelete, "me/tokens/current", nil, nil)
				var ae *apiError
				// A token the portal no longer accepts is as good as revoked.
				revoked = why == nil || (errors.As(why, &ae) && ae.Status == http.StatusUnauthorized)
			}
			if err := os.Remove(c.configPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", c.configPath(), err)
			}
			switch {
			case revoked:
				c.say("Signed out: the token is revoked on %s and no longer stored here.", portal)
			case why != nil:
				c.say("Signed out here, but the token could not be revoked (%v); it stays valid until it expires: revoke it on %s/profile.", why, portal)
			default:
				c.say("Signed out: the token is no longer stored here. It stays valid until it expires; revoke it on %s/profile to end it now.", portal)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-token", false, "forget the token here without revoking it")
	return cmd
}

func (c *cli) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "show who you are signed in as",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			var me meInfo
			if err := a.get(cmd.Context(), "me", &me); err != nil {
				return err
			}
			roles := strings.Join(me.Roles, ", ")
			if roles == "" {
				roles = "engineer"
			}
			return c.output(me, []string{"EMAIL", "NAME", "HOME REGION", "ROLES", "PORTAL"},
				[][]string{{me.Email, dash(me.Name), dash(me.HomeRegion), roles, a.base}})
		},
	}
}

// dash is s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
