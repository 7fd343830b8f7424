package main

// devport ssh-config: an OpenSSH configuration file with one Host entry per
// environment the person can reach (their devservers, the ones shared with
// them, their On Demand containers), so that "ssh NAME" works, and keeps
// working from the last answer when the portal does not.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// sshEntry is one Host entry of the generated file.
type sshEntry struct {
	// Kind is devserver or container.
	Kind string `json:"kind"`
	// Name and Hostname are the aliases ssh accepts.
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
	// Address is the IP address ssh connects to (never a DNS name).
	Address string `json:"address"`
	Port    int    `json:"port"`
	User    string `json:"user"`
	Owner   string `json:"owner,omitempty"`
}

// sshConfigCache is the last list the portal gave, for when it does not answer.
type sshConfigCache struct {
	Portal    string     `json:"portal"`
	FetchedAt time.Time  `json:"fetched_at"`
	Entries   []sshEntry `json:"entries"`
}

// sshConn is the part of the API's connection object ssh-config reads.
type sshConn struct {
	Hostname string `json:"hostname"`
	Address  string `json:"address"`
	User     string `json:"user"`
	SSHHost  string `json:"ssh_host"`
	SSHPort  int    `json:"ssh_port"`
}

// sshResolveTimeout bounds the lookup of a connection's host name.
const sshResolveTimeout = 3 * time.Second

func (c *cli) sshConfigPath() string { return filepath.Join(c.home(), ".ssh", "devport_config") }
func (c *cli) sshConfigCachePath() string {
	return filepath.Join(c.cacheDir(), "ssh-config.json")
}

func (c *cli) sshConfigCmd() *cobra.Command {
	var output string
	var print, install bool
	cmd := &cobra.Command{
		Use:   "ssh-config",
		Short: "write an OpenSSH config with a Host entry per devserver and container",
		Long: `Write an OpenSSH configuration file (default ~/.ssh/devport_config) with one
Host entry for each ready devserver you own or that is shared with you, and
each of your ready On Demand containers, so that "ssh NAME" works.

HostName is always an IP address, looked up now, so the entries keep working
when DNS does not. The list is cached: when the portal does not answer, the
file is written from the last list it gave.

Include the file from ~/.ssh/config (--install adds the line at its top).`,
		Example: `  devport ssh-config --install
  devport ssh-config --print
  devport ssh-config --output ~/.ssh/work/devport`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := output
			if path == "" {
				path = c.sshConfigPath()
			} else if p, err := c.expandHome(path); err == nil {
				path = p
			}
			return c.runSSHConfig(cmd.Context(), path, print, install)
		},
	}
	cmd.Flags().StringVar(&output, "output", "", "the file to write (default ~/.ssh/devport_config)")
	cmd.Flags().BoolVar(&print, "print", false, "print the configuration instead of writing it")
	cmd.Flags().BoolVar(&install, "install", false, "add an Include of the file at the top of ~/.ssh/config (once)")
	return cmd
}

// expandHome replaces a leading ~/ with the home directory and makes the
// path absolute.
func (c *cli) expandHome(p string) (string, error) {
	if p == "~" {
		return c.home(), nil
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		p = filepath.Join(c.home(), rest)
	}
	return filepath.Abs(p)
}

// tildePath shows a path under the home directory as ~/...
func (c *cli) tildePath(p string) string {
	home := c.home()
	if rel, err := filepath.Rel(home, p); err == nil && home != "" && !strings.HasPrefix(rel, "..") && rel != "." {
		return "~/" + filepath.ToSlash(rel)
	}
	return p
}

func (c *cli) runSSHConfig(ctx context.Context, path string, print, install bool) error {
	base, err := c.portalURL()
	if err != nil {
		return err
	}
	entries, fetchedAt, warning, fetchErr := c.sshEntries(ctx, base)
	if fetchErr != nil && entries == nil {
		return fetchErr
	}
	text := renderSSHConfig(entries, fetchedAt, base)
	switch {
	case c.json:
		if err := c.printJSON(entries); err != nil {
			return err
		}
	case print:
		fmt.Fprint(c.env.Stdout, text)
	default:
		if err := writeFileAtomic(path, []byte(text), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if warning != "" {
		fmt.Fprintln(c.env.Stderr, "warning: "+warning)
	}
	if !print && !c.json {
		c.say("Wrote %d %s to %s.", len(entries), plural(len(entries), "entry", "entries"), path)
	}
	if install {
		added, err := c.installInclude(path)
		if err != nil {
			return err
		}
		if added {
			c.sayErr("Added %q at the top of %s.", includeLine(c.tildePath(path)), c.tildePath(c.userSSHConfig()))
		} else {
			c.sayErr("%s includes %s already.", c.tildePath(c.userSSHConfig()), c.tildePath(path))
		}
	} else if !print && !c.includes(path) {
		c.sayErr("Your %s does not include it yet: add the line %q at its top, or run \"devport ssh-config --install\".",
			c.tildePath(c.userSSHConfig()), includeLine(c.tildePath(path)))
	}
	return fetchErr
}

// sayErr prints a line for the person on stderr (stdout may be a file's text).
func (c *cli) sayErr(format string, a ...any) {
	fmt.Fprintf(c.env.Stderr, format+"\n", a...)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// sshEntries asks the portal for the entries and caches them; when the
// portal does not answer (or refuses the token) it returns the cached ones
// with a warning, and, for a refused token, an error to report after
// writing them.
func (c *cli) sshEntries(ctx context.Context, base string) ([]sshEntry, time.Time, string, error) {
	a, err := c.client()
	if err != nil {
		return nil, time.Time{}, "", err
	}
	entries, problems, err := c.fetchSSHEntries(ctx, a)
	if err == nil {
		now := c.env.Now()
		if cerr := c.saveSSHCache(sshConfigCache{Portal: base, FetchedAt: now.UTC(), Entries: entries}); cerr != nil {
			problems = append(problems, "the cache was not saved: "+cerr.Error())
		}
		return entries, now, strings.Join(problems, "; "), nil
	}
	var ue *unreachableError
	var ae *apiError
	switch {
	case errors.As(err, &ue) || (errors.As(err, &ae) && ae.Status >= 500):
		cache, cerr := c.loadSSHCache(base)
		if cerr != nil {
			return nil, time.Time{}, "", fmt.Errorf("%v; and there is no earlier list to write from (%v)", err, cerr)
		}
		return cache.Entries, cache.FetchedAt, fmt.Sprintf("the portal %s does not answer (%s); wrote %d %s from the cache of %s",
			base, unreachableWhy(err), len(cache.Entries), plural(len(cache.Entries), "entry", "entries"), when(&cache.FetchedAt)), nil
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		expired := fmt.Errorf("the portal %s refused your token: it is expired or revoked; run \"devport login\"", base)
		cache, cerr := c.loadSSHCache(base)
		if cerr != nil {
			return nil, time.Time{}, "", fmt.Errorf("%v (and there is no earlier list to write from)", expired)
		}
		return cache.Entries, cache.FetchedAt, fmt.Sprintf("wrote %d %s from the cache of %s, which may be out of date",
			len(cache.Entries), plural(len(cache.Entries), "entry", "entries"), when(&cache.FetchedAt)), expired
	}
	return nil, time.Time{}, "", err
}

// unreachableWhy is the short reason a portal did not answer.
func unreachableWhy(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return fmt.Sprintf("it answered %d", ae.Status)
	}
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "does not answer: "); ok {
		msg, _, _ = strings.Cut(after, " (run ")
	}
	return msg
}

// fetchSSHEntries lists the ready environments with a connection: the
// person's and shared devservers, and their containers. A host that does
// not resolve leaves its entry out, with a problem to report.
func (c *cli) fetchSSHEntries(ctx context.Context, a *apiClient) ([]sshEntry, []string, error) {
	type devserver struct {
		Name       string   `json:"name"`
		Owner      string   `json:"owner"`
		Hostname   string   `json:"hostname"`
		State      string   `json:"state"`
		Connection *sshConn `json:"connection"`
	}
	ds, err := list[devserver](ctx, a, "devservers?state=ready")
	if err != nil {
		return nil, nil, err
	}
	type container struct {
		ID       string `json:"id"`
		Hostname string `json:"hostname"`
		State    string `json:"state"`
		Access   *struct {
			SSH *sshConn `json:"ssh"`
		} `json:"access"`
	}
	cs, err := list[container](ctx, a, "containers?state=ready")
	if err != nil {
		return nil, nil, err
	}
	var entries []sshEntry
	var problems []string
	resolved := map[string]string{}
	add := func(kind, name, hostname, owner string, conn *sshConn) {
		if conn == nil {
			return
		}
		host := conn.SSHHost
		if host == "" {
			host = conn.Address
		}
		ip, ok := resolved[host]
		if !ok {
			var err error
			ip, err = resolveIP(ctx, host)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s left out: %v", name, err))
			}
			resolved[host] = ip
		}
		if ip == "" {
			return
		}
		port := conn.SSHPort
		if port == 0 {
			port = 22
		}
		if hostname == "" {
			hostname = conn.Hostname
		}
		entries = append(entries, sshEntry{Kind: kind, Name: name, Hostname: hostname, Address: ip, Port: port, User: conn.User, Owner: owner})
	}
	for _, d := range ds {
		if d.State == "ready" {
			add("devserver", d.Name, d.Hostname, d.Owner, d.Connection)
		}
	}
	for _, ct := range cs {
		if ct.State != "ready" {
			continue
		}
		// The list leaves out how to connect; the container itself says.
		var full container
		if err := a.get(ctx, "containers/"+url.PathEscape(ct.ID), &full); err != nil {
			return nil, nil, err
		}
		if full.Access != nil {
			add("container", ct.ID, ct.Hostname, "", full.Access.SSH)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, problems, nil
}

// resolveIP is host as an IP address: itself when it is one, else what DNS
// says now (an IPv4 address where there is one).
func resolveIP(ctx context.Context, host string) (string, error) {
	h := strings.Trim(host, "[]")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String(), nil
	}
	if h == "" {
		return "", errors.New("the portal gave no address to connect to")
	}
	ctx, cancel := context.WithTimeout(ctx, sshResolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", h)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("%s does not resolve (DNS): %v", h, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), nil
		}
	}
	return ips[0].String(), nil
}

// renderSSHConfig is the file's text.
func renderSSHConfig(entries []sshEntry, at time.Time, portal string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by devport at %s from %s; do not edit.\n", at.UTC().Format(time.RFC3339), portal)
	b.WriteString("# \"devport ssh-config\" rewrites it; HostName is an IP address so that it works without DNS.\n")
	if len(entries) == 0 {
		b.WriteString("# You have no ready devserver or container.\n")
	}
	for _, e := range entries {
		aliases := e.Name
		if e.Hostname != "" && e.Hostname != e.Name {
			aliases += " " + e.Hostname
		}
		fmt.Fprintf(&b, "\n# %s %s", e.Kind, e.Name)
		if e.Owner != "" {
			fmt.Fprintf(&b, " (owner %s)", e.Owner)
		}
		fmt.Fprintf(&b, "\nHost %s\n    HostName %s\n    Port %d\n", aliases, e.Address, e.Port)
		if e.User != "" {
			fmt.Fprintf(&b, "    User %s\n", e.User)
		}
	}
	return b.String()
}

func (c *cli) saveSSHCache(cache sshConfigCache) error {
	if cache.Entries == nil {
		cache.Entries = []sshEntry{}
	}
	b, err := json.MarshalIndent(cache, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.sshConfigCachePath(), append(b, '\n'), 0o600)
}

// loadSSHCache reads the cache of the portal's last list.
func (c *cli) loadSSHCache(portal string) (sshConfigCache, error) {
	var cache sshConfigCache
	b, err := os.ReadFile(c.sshConfigCachePath())
	if errors.Is(err, os.ErrNotExist) {
		return cache, errors.New("no devport ssh-config has succeeded on this machine yet")
	}
	if err != nil {
		return cache, err
	}
	if err := json.Unmarshal(b, &cache); err != nil {
		return cache, fmt.Errorf("the cache %s is corrupt: %v", c.sshConfigCachePath(), err)
	}
	if portal != "" && cache.Portal != portal {
		return cache, fmt.Errorf("the cache is of another portal, %s", cache.Portal)
	}
	return cache, nil
}

// writeFileAtomic replaces path with data: readers see the old file or the
// new one, never half of it. A directory it creates is private.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (c *cli) userSSHConfig() string { return filepath.Join(c.home(), ".ssh", "config") }

func includeLine(path string) string {
	if strings.ContainsAny(path, " \t") {
		path = strconv.Quote(path)
	}
	return "Include " + path
}

// includes tells whether ~/.ssh/config has an Include of path.
func (c *cli) includes(path string) bool {
	b, err := os.ReadFile(c.userSSHConfig())
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) < 2 || !strings.EqualFold(strings.TrimSuffix(f[0], "="), "include") {
			continue
		}
		for _, arg := range f[1:] {
			arg = strings.Trim(arg, `"`)
			p := arg
			if !strings.HasPrefix(p, "~") && !filepath.IsAbs(p) {
				p = filepath.Join(c.home(), ".ssh", p) // relative Includes are under ~/.ssh
			}
			if e, err := c.expandHome(p); err == nil && e == path {
				return true
			}
		}
	}
	return false
}

// installInclude adds an Include of path at the top of ~/.ssh/config
// (created private if missing), once. An Include must come before the
// first Host line to apply to every host.
func (c *cli) installInclude(path string) (bool, error) {
	if c.includes(path) {
		return false, nil
	}
	cfg := c.userSSHConfig()
	old, err := os.ReadFile(cfg)
	mode := os.FileMode(0o600)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("read %s: %w", cfg, err)
	default:
		if fi, err := os.Stat(cfg); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	text := "# Added by devport ssh-config --install: the devport environments.\n" + includeLine(c.tildePath(path)) + "\n"
	if len(old) > 0 {
		text += "\n" + string(old)
	}
	// Keep a symlinked ~/.ssh/config (dotfiles) a symlink: write its target.
	if target, err := filepath.EvalSymlinks(cfg); err == nil {
		cfg = target
	}
	if err := writeFileAtomic(cfg, []byte(text), mode); err != nil {
		return false, fmt.Errorf("write %s: %w", cfg, err)
	}
	return true, nil
}
