package main

// devport doctor: checks what stands between the person and their
// environments (configuration, DNS, the portal, the token, an SSH key, the
// ssh client, their devservers' health), fixes what it can, and with
// --rage sends the evidence to the platform team.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

// Time bounds of doctor's checks: it never hangs on a dead portal.
const (
	doctorDNSTimeout     = 3 * time.Second
	doctorRequestTimeout = 5 * time.Second
	doctorSSHTimeout     = 3 * time.Second
	// doctorLogLines is how much of the CLI log a rage bundle carries.
	doctorLogLines = 200
)

// Check outcomes.
const (
	checkOK   = "ok"
	checkFail = "FAIL"
	checkWarn = "warn"
	checkSkip = "skip"
)

// checkResult is one check's outcome as doctor prints it and a rage bundle
// carries it.
type checkResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	// Fixed tells that doctor fixed what the check found.
	Fixed bool `json:"fixed,omitempty"`
}

// doctor is one run of the checks.
type doctor struct {
	c      *cli
	noFix  bool
	checks []checkResult
	fixes  []string

	base  string
	api   *apiClient
	me    meInfo
	token string
	// skip is why the checks that need the portal cannot run, or "".
	skip     string
	readOnly bool
	// What --rage did: the bundle sent, or the file it is saved in.
	bundle int64
	saved  string
}

func (c *cli) doctorCmd() *cobra.Command {
	var noFix, rage bool
	var note, devserver string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "check the CLI's setup and your devservers, and fix what can be fixed",
		Long: `Check, one line each: the configuration file, DNS for the portal, that the
portal answers, that your token is valid, that an SSH key of this machine is
on your profile, that an ssh client is installed, and that your devservers
are healthy. Doctor fixes what it can: it registers your local public key
when none is, and restarts an unhealthy devserver you own. --no-fix only
reports. It exits with an error when a check still fails.

--rage then sends the evidence (the checks, versions, the configuration with
the token redacted, the end of the CLI's log) to the platform team, which
opens a support task for them.`,
		Example: `  devport doctor
  devport doctor --no-fix
  devport doctor --rage --note "ssh to my devserver hangs" --devserver ada-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !rage && (note != "" || devserver != "") {
				return errors.New("--note and --devserver go with --rage")
			}
			d := &doctor{c: c, noFix: noFix}
			failed := d.run(cmd.Context())
			var rageErr error
			if rage {
				rageErr = d.rage(cmd.Context(), note, devserver)
			}
			if c.json {
				out := map[string]any{"checks": d.checks, "fixes": d.fixes}
				if d.bundle != 0 {
					out["bundle"] = d.bundle
				}
				if d.saved != "" {
					out["saved"] = d.saved
				}
				if err := c.printJSON(out); err != nil {
					return err
				}
			}
			switch {
			case failed > 0 && rageErr != nil:
				return fmt.Errorf("%d %s still %s; and %w", failed, plural(failed, "check", "checks"), plural(failed, "fails", "fail"), rageErr)
			case failed > 0:
				return fmt.Errorf("%d %s still %s (see above)", failed, plural(failed, "check", "checks"), plural(failed, "fails", "fail"))
			}
			return rageErr
		},
	}
	f := cmd.Flags()
	f.BoolVar(&noFix, "no-fix", false, "only report; change nothing")
	f.BoolVar(&rage, "rage", false, "after the checks, send a diagnostic bundle to the platform team")
	f.StringVar(&note, "note", "", "with --rage: what went wrong, in your words")
	f.StringVar(&devserver, "devserver", "", "with --rage: the devserver the problem is about")
	_ = cmd.RegisterFlagCompletionFunc("devserver", c.completeDevservers)
	return cmd
}

// out is where doctor's report goes: stderr under --json, whose stdout is
// the JSON of the checks.
func (d *doctor) out() io.Writer {
	if d.c.json {
		return d.c.env.Stderr
	}
	return d.c.env.Stdout
}

// add records and prints one check's outcome.
func (d *doctor) add(name, status, detail string) {
	d.checks = append(d.checks, checkResult{Name: name, Status: status, Detail: detail})
	fmt.Fprintf(d.out(), "%-4s  %-20s %s\n", status, name, detail)
}

// fixed records a fix made for the check just added.
func (d *doctor) fixed(what string) {
	d.checks[len(d.checks)-1].Fixed = true
	d.fixes = append(d.fixes, what)
}

// run makes every check and prints the fixes; it returns how many checks
// still fail.
func (d *doctor) run(ctx context.Context) int {
	d.checkConfig()
	d.checkDNS(ctx)
	d.checkPortal(ctx)
	d.checkToken(ctx)
	d.checkSSHKey(ctx)
	d.checkSSHClient(ctx)
	d.checkDevservers(ctx)

	if len(d.fixes) > 0 {
		fmt.Fprintln(d.out(), "\nFixed:")
		for _, f := range d.fixes {
			fmt.Fprintln(d.out(), "  - "+f)
		}
	}
	failed := 0
	for _, ch := range d.checks {
		if ch.Status == checkFail && !ch.Fixed {
			failed++
		}
	}
	switch {
	case failed == 0 && len(d.fixes) == 0:
		fmt.Fprintln(d.out(), "\nAll checks pass.")
	case failed == 0:
		fmt.Fprintln(d.out(), "\nEverything doctor found is fixed.")
	}
	return failed
}

func (d *doctor) checkConfig() {
	c := d.c
	if c.cfgErr != nil {
		d.add("configuration", checkFail, c.cfgErr.Error())
	}
	base, err := c.portalURL()
	if err != nil {
		if c.cfgErr == nil {
			d.add("configuration", checkFail, err.Error())
		}
		d.skip = "skipped: no portal to check"
		return
	}
	d.base = base
	if c.cfgErr != nil {
		return
	}
	detail := c.configPath()
	if _, err := os.Stat(c.configPath()); err != nil {
		detail = "no configuration file; the portal comes from the command line or $DEVPORT_PORTAL"
	}
	d.add("configuration", checkOK, fmt.Sprintf("%s (portal %s)", detail, base))
}

func (d *doctor) checkDNS(ctx context.Context) {
	const name = "dns"
	if d.skip != "" {
		d.add(name, checkSkip, d.skip)
		return
	}
	u, _ := url.Parse(d.base)
	host := u.Hostname()
	if net.ParseIP(host) != nil {
		d.add(name, checkOK, host+" is an IP address: no DNS needed")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, doctorDNSTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		why := "no address"
		if err != nil {
			why = err.Error()
		}
		if ctx.Err() != nil {
			why = fmt.Sprintf("no answer from DNS within %s", doctorDNSTimeout)
		}
		d.add(name, checkFail, fmt.Sprintf("%s does not resolve (%s): check your network or VPN; \"ssh NAME\" still works from the IP addresses devport ssh-config wrote", host, why))
		d.skip = "skipped: the portal's name does not resolve"
		return
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, ip.String())
	}
	d.add(name, checkOK, host+" resolves to "+strings.Join(addrs, ", "))
}

func (d *doctor) checkPortal(ctx context.Context) {
	const name = "portal"
	if d.skip != "" {
		d.add(name, checkSkip, d.skip)
		return
	}
	tok, _ := d.c.tokenValue()
	d.token = tok
	d.api = newAPIClient(d.base, tok, doctorRequestTimeout, d.c.logRequest)
	// Without the token: a refused token must not look like a dead portal.
	anon := newAPIClient(d.base, "", doctorRequestTimeout, d.c.logRequest)
	start := time.Now()
	if _, err := anon.do(ctx, http.MethodGet, "/healthz", nil, nil); err != nil {
		d.add(name, checkFail, portalProblem(d.base, err))
		d.skip = "skipped: the portal does not answer"
		return
	}
	took := time.Since(start)
	var ready struct {
		Reason string `json:"reason"`
	}
	if _, err := anon.do(ctx, http.MethodGet, "/readyz", nil, &ready); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
			d.add(name, checkFail, d.base+" answers but is not ready (its database or job runner is down): tell the platform team")
		} else {
			d.add(name, checkFail, portalProblem(d.base, err))
		}
		d.skip = "skipped: the portal is not ready"
		return
	}
	d.add(name, checkOK, fmt.Sprintf("%s answers and is ready (%s)", d.base, took.Round(time.Millisecond)))
}

// portalProblem says why the portal did not answer, without the advice to
// run doctor (this is doctor).
func portalProblem(base string, err error) string {
	var ue *unreachableError
	if errors.As(err, &ue) {
		return fmt.Sprintf("%s does not answer: %s", base, unreachableWhy(err))
	}
	return fmt.Sprintf("%s: %v", base, err)
}

func (d *doctor) checkToken(ctx context.Context) {
	const name = "token"
	if d.skip != "" {
		d.add(name, checkSkip, d.skip)
		return
	}
	if d.token == "" {
		_, err := d.c.tokenValue()
		d.add(name, checkFail, err.Error())
		d.skip = "skipped: not signed in"
		return
	}
	if err := d.api.get(ctx, "me", &d.me); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			d.add(name, checkFail, fmt.Sprintf("the portal refuses your token (%s): it is expired or revoked; run \"devport login\"", tokenPrefix(d.token)))
			d.skip = "skipped: the token is expired or revoked"
			return
		}
		d.add(name, checkFail, portalProblem(d.base, err))
		d.skip = "skipped: the portal does not answer"
		return
	}
	// Which of the person's tokens is this one: a read-only token can look
	// but not fix.
	type token struct {
		Prefix    string     `json:"prefix"`
		Scope     string     `json:"scope"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	expires := ""
	if ts, err := list[token](ctx, d.api, "me/tokens"); err == nil {
		for _, t := range ts {
			if t.Prefix != "" && strings.HasPrefix(d.token, t.Prefix) {
				d.readOnly = t.Scope == "read"
				if t.ExpiresAt != nil {
					expires = ", expires " + when(t.ExpiresAt)
				}
				break
			}
		}
	}
	if d.readOnly {
		d.add(name, checkWarn, fmt.Sprintf("signed in as %s with a read-only token (%s%s): it cannot change anything, so doctor only reports; run \"devport login\" for a full token", d.me.Email, tokenPrefix(d.token), expires))
		return
	}
	d.add(name, checkOK, fmt.Sprintf("signed in as %s (token %s%s)", d.me.Email, tokenPrefix(d.token), expires))
}

// tokenPrefix is a token shown safely: its first characters.
func tokenPrefix(tok string) string {
	if len(tok) <= 8 {
		return strings.Repeat("*", len(tok))
	}
	return tok[:8] + "…"
}

// localKey is a public key found in ~/.ssh.
type localKey struct {
	Path string
	Text string // the file's line
	Key  string // "type base64", as the portal stores it
}

// localPublicKeys reads ~/.ssh/id_ed25519.pub, id_ecdsa.pub and id_rsa.pub.
func (c *cli) localPublicKeys() []localKey {
	var out []localKey
	for _, n := range []string{"id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"} {
		p := filepath.Join(c.home(), ".ssh", n)
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			continue
		}
		out = append(out, localKey{Path: p, Text: strings.TrimSpace(string(b)), Key: string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(pk)))})
	}
	return out
}

func (d *doctor) checkSSHKey(ctx context.Context) {
	const name = "ssh key"
	if d.skip != "" {
		d.add(name, checkSkip, d.skip)
		return
	}
	type key struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}
	keys, err := list[key](ctx, d.api, "me/keys")
	if err != nil {
		var ue *unreachableError
		if errors.As(err, &ue) {
			d.add(name, checkFail, portalProblem(d.base, err))
			d.skip = "skipped: the portal does not answer"
			return
		}
		d.add(name, checkFail, "could not list your keys: "+err.Error())
		return
	}
	local := d.c.localPublicKeys()
	for _, l := range local {
		for _, k := range keys {
			if k.PublicKey == l.Key {
				d.add(name, checkOK, fmt.Sprintf("%s is on your profile as %q", d.c.tildePath(l.Path), k.Name))
				return
			}
		}
	}
	if len(local) == 0 {
		if len(keys) > 0 {
			d.add(name, checkWarn, fmt.Sprintf("%d %s on your profile, but no ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub here: ssh needs the private key of one of them", len(keys), plural(len(keys), "key is", "keys are")))
			return
		}
		d.add(name, checkFail, "no SSH key on your profile and none in ~/.ssh: create one with \"ssh-keygen -t ed25519\" and run devport doctor again")
		return
	}
	first := local[0]
	what := "none of this machine's keys (" + d.c.tildePath(first.Path) + ") is on your profile"
	if len(keys) == 0 {
		what = "no SSH key on your profile"
	}
	switch {
	case d.noFix:
		d.add(name, checkFail, what+": run devport doctor without --no-fix to add "+d.c.tildePath(first.Path))
		return
	case d.readOnly:
		d.add(name, checkFail, what+": a read-only token cannot add it; add "+d.c.tildePath(first.Path)+" on your profile page")
		return
	}
	d.add(name, checkFail, what)
	host, _ := os.Hostname()
	if host == "" {
		host = "this machine"
	}
	keyName := host + " (devport doctor)"
	if len(keyName) > 100 {
		keyName = host[:100-len(" (devport doctor)")] + " (devport doctor)"
	}
	var added struct {
		Name        string `json:"name"`
		Fingerprint string `json:"fingerprint"`
	}
	if _, err := d.api.do(ctx, http.MethodPost, "me/keys", map[string]string{"name": keyName, "public_key": first.Text}, &added); err != nil {
		d.checks[len(d.checks)-1].Detail += "; adding " + d.c.tildePath(first.Path) + " failed: " + err.Error()
		fmt.Fprintf(d.out(), "      adding %s failed: %v\n", d.c.tildePath(first.Path), err)
		return
	}
	d.fixed(fmt.Sprintf("added %s to your profile as %q (%s); your devservers get it shortly", d.c.tildePath(first.Path), added.Name, added.Fingerprint))
}

func (d *doctor) checkSSHClient(ctx context.Context) {
	const name = "ssh client"
	path, err := lookPath("ssh")
	if err != nil {
		d.add(name, checkWarn, "no ssh on your PATH: install OpenSSH to reach your devservers from a terminal (the portal's web terminal works without it)")
		return
	}
	v := sshVersion(ctx, path)
	if v == "" {
		v = "version unknown"
	}
	d.add(name, checkOK, path+" ("+v+")")
}

// sshVersion is what ssh -V says, briefly.
func sshVersion(ctx context.Context, path string) string {
	if path == "" {
		var err error
		if path, err = lookPath("ssh"); err != nil {
			return ""
		}
	}
	ctx, cancel := context.WithTimeout(ctx, doctorSSHTimeout)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, "-V").CombinedOutput()
	return strings.TrimSpace(string(out))
}

func (d *doctor) checkDevservers(ctx context.Context) {
	const name = "devservers"
	if d.skip != "" {
		d.add(name, checkSkip, d.skip)
		return
	}
	type devserver struct {
		Name     string `json:"name"`
		Owner    string `json:"owner"`
		State    string `json:"state"`
		Relation string `json:"relation"`
	}
	ds, err := list[devserver](ctx, d.api, "devservers")
	if err != nil {
		d.add(name, checkFail, "could not list your devservers: "+err.Error())
		return
	}
	if len(ds) == 0 {
		d.add(name, checkOK, "you have no devservers")
		return
	}
	type remediation struct {
		ID     int64  `json:"id"`
		State  string `json:"state"`
		Step   string `json:"step"`
		Reason string `json:"reason"`
	}
	type health struct {
		State       string       `json:"state"`
		Health      string       `json:"health"`
		Detail      string       `json:"detail"`
		Remediation *remediation `json:"remediation"`
	}
	for _, ds := range ds {
		label := "devserver " + ds.Name
		own := ds.Relation == "owner" || (ds.Relation == "" && ds.Owner == d.me.Email)
		whose := ""
		if !own {
			whose = " (shared with you by " + dash(ds.Owner) + ")"
		}
		if d.skip != "" {
			d.add(label, checkSkip, d.skip)
			continue
		}
		var h health
		if err := d.api.get(ctx, "devservers/"+url.PathEscape(ds.Name)+"/health", &h); err != nil {
			var ue *unreachableError
			if errors.As(err, &ue) {
				d.add(label, checkFail, portalProblem(d.base, err))
				d.skip = "skipped: the portal does not answer"
				continue
			}
			d.add(label, checkFail, "could not read its health: "+err.Error())
			continue
		}
		open := h.Remediation != nil && h.Remediation.State == "open"
		switch {
		case h.Health == "healthy":
			d.add(label, checkOK, "ready and healthy"+whose)
		case h.State != "ready":
			status := checkWarn
			if h.State == "failed" || h.State == "lost" || h.State == "unreachable" {
				status = checkFail
			}
			d.add(label, status, "is "+h.State+whose)
		case h.Health == "unknown":
			d.add(label, checkOK, "ready; not checked yet"+whose)
		case open:
			d.add(label, checkWarn, fmt.Sprintf("unhealthy (%s)%s; the portal is remediating it: remediation %d, step %s", dash(h.Detail), whose, h.Remediation.ID, h.Remediation.Step))
		case !own:
			d.add(label, checkFail, fmt.Sprintf("unhealthy (%s)%s: only its owner can restart it; ask them to run devport doctor", dash(h.Detail), whose))
		case d.noFix:
			d.add(label, checkFail, fmt.Sprintf("unhealthy (%s): run devport doctor without --no-fix to restart it", dash(h.Detail)))
		case d.readOnly:
			d.add(label, checkFail, fmt.Sprintf("unhealthy (%s): a read-only token cannot restart it", dash(h.Detail)))
		default:
			d.add(label, checkFail, fmt.Sprintf("unhealthy (%s)", dash(h.Detail)))
			var out struct {
				Remediation remediation `json:"remediation"`
			}
			if _, err := d.api.do(ctx, http.MethodPost, "devservers/"+url.PathEscape(ds.Name)+"/restart", nil, &out); err != nil {
				d.checks[len(d.checks)-1].Detail += "; the restart was refused: " + err.Error()
				fmt.Fprintf(d.out(), "      the restart was refused: %v\n", err)
				continue
			}
			d.fixed(fmt.Sprintf("asked the portal to restart %s: remediation %d (follow it on %s/devservers/%s)", ds.Name, out.Remediation.ID, d.base, url.PathEscape(ds.Name)))
		}
	}
}

// rage collects the local evidence and sends it as a diagnostic bundle; a
// portal that does not take it leaves it in a file to send later.
func (d *doctor) rage(ctx context.Context, note, devserver string) error {
	c := d.c
	parts := map[string]any{
		"checks": map[string]any{"checks": d.checks, "fixes": d.fixes},
		"versions": map[string]string{
			"cli": version, "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH,
			"ssh": dash(sshVersion(ctx, "")),
		},
		"config":  d.redactedConfig(),
		"cli_log": lastLines(c.logPath(), doctorLogLines),
	}
	if cache, err := c.loadSSHCache(""); err == nil {
		names := make([]string, 0, len(cache.Entries))
		for _, e := range cache.Entries {
			names = append(names, e.Kind+" "+e.Name+" -> "+e.User+"@"+e.Address+fmt.Sprintf(":%d", e.Port))
		}
		parts["ssh_config_cache"] = map[string]any{"portal": cache.Portal, "fetched_at": cache.FetchedAt, "entries": names}
	} else {
		parts["ssh_config_cache"] = map[string]any{"missing": err.Error()}
	}
	body := map[string]any{"note": note, "parts": parts}
	if devserver != "" {
		body["devserver"] = devserver
	}
	fmt.Fprintln(d.out())
	var sendErr error
	if d.api == nil || d.token == "" {
		sendErr = errors.New("there is no portal or token to send it with")
	} else {
		var out struct {
			ID int64 `json:"id"`
		}
		// A bundle may be large: give it the command's timeout, not doctor's short one.
		a := newAPIClient(d.base, d.token, max(c.timeout, doctorRequestTimeout), c.logRequest)
		_, err := a.do(ctx, http.MethodPost, "support/bundles", body, &out)
		if err == nil {
			d.bundle = out.ID
			fmt.Fprintf(d.out(), "Sent diagnostic bundle %d to the platform team: a support task was opened for them.\n", out.ID)
			return nil
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusUnauthorized {
			// The portal answered and refused (a bad devserver name, too soon): saving it would not help.
			return fmt.Errorf("the portal refused the diagnostic bundle: %w", err)
		}
		sendErr = err
	}
	path := filepath.Join(c.cacheDir(), "rage-"+c.env.Now().UTC().Format("20060102T150405Z")+".json")
	b, err := json.MarshalIndent(map[string]any{"portal": d.base, "created_at": c.env.Now().UTC(), "bundle": body}, "", "  ")
	if err == nil {
		err = writeFileAtomic(path, append(b, '\n'), 0o600)
	}
	if err != nil {
		return fmt.Errorf("the diagnostic bundle was not sent (%v) nor saved: %v", sendErr, err)
	}
	d.saved = path
	fmt.Fprintf(d.out(), "The diagnostic bundle was not sent; it is saved in %s.\n", path)
	return fmt.Errorf("the diagnostic bundle was not sent (%v); it is saved in %s: run devport doctor --rage again when the portal answers, or send the file to the platform team", sendErr, path)
}

// redactedConfig is the configuration without the token's secret.
func (d *doctor) redactedConfig() map[string]any {
	c := d.c
	out := map[string]any{"path": c.configPath(), "portal": d.base}
	if c.cfgErr != nil {
		out["error"] = c.cfgErr.Error()
	} else {
		out["user"] = c.cfg.User
	}
	tok, _ := c.tokenValue()
	switch {
	case c.token != "":
		out["token_from"] = "--token"
	case c.env.Getenv("DEVPORT_TOKEN") != "":
		out["token_from"] = "DEVPORT_TOKEN"
	case tok != "":
		out["token_from"] = "configuration file"
	}
	if tok != "" {
		out["token"] = tokenPrefix(tok)
	}
	if c.portal != "" {
		out["portal_from"] = "--portal"
	} else if c.env.Getenv("DEVPORT_PORTAL") != "" {
		out["portal_from"] = "DEVPORT_PORTAL"
	}
	return out
}

// lastLines is the last n lines of a file (none when it is missing).
func lastLines(path string, n int) []string {
	lines := []string{}
	f, err := os.Open(path)
	if err != nil {
		return lines
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n {
			lines = append(lines[:0], lines[len(lines)-n:]...)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
