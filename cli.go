package main

// The devport CLI: the portal's API in a terminal, in the same binary as the
// server. This file holds its frame: the commands' tree, the settings every
// command shares (portal, token, --json), the configuration file and how
// errors read. The commands live in cli_*.go, one file per area.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cli/browser"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// cliEnv is what the CLI reads and writes outside itself, so that tests run
// it in-process against a real portal.
type cliEnv struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// OpenBrowser opens a URL in the person's browser (devport login).
	OpenBrowser func(url string) error
	// Exec replaces the process with a program (devport ssh).
	Exec func(path string, argv []string) error
	// Interactive tells whether a person is at the terminal: progress bars
	// and confirmation prompts need one.
	Interactive bool
	Now         func() time.Time
}

// defaultCLIEnv is the CLI on the process's own terminal.
func defaultCLIEnv(getenv func(string) string, stdout io.Writer) cliEnv {
	stderr := io.Writer(os.Stderr)
	if stdout != io.Writer(os.Stdout) {
		stderr = stdout // a caller that captures stdout captures everything
	}
	return cliEnv{
		Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv,
		OpenBrowser: browser.OpenURL,
		Exec: func(path string, argv []string) error {
			return syscall.Exec(path, argv, os.Environ())
		},
		Interactive: stdout == io.Writer(os.Stdout) && term.IsTerminal(int(os.Stdout.Fd())) && term.IsTerminal(int(os.Stdin.Fd())),
		Now:         time.Now,
	}
}

// cliCommands are the commands the CLI adds to the server's own.
var cliCommands = map[string]bool{
	"login": true, "logout": true, "whoami": true, "ls": true, "reserve": true, "extend": true, "release": true,
	"share": true, "backup": true, "restore": true, "containers": true, "ssh": true,
	"tasks": true, "inbox": true, "ssh-config": true, "doctor": true, "completion": true, "show": true,
	"__complete": true, "__completeNoDesc": true,
}

// cli is one invocation of the CLI: its environment, its settings and the
// portal client it makes from them.
type cli struct {
	env cliEnv
	// Flags every command takes.
	portal, token string
	json          bool
	timeout       time.Duration

	cfg    cliConfig
	cfgErr error
}

// runCLI runs a CLI command; args are the command line without the program name.
func runCLI(ctx context.Context, env cliEnv, args []string) error {
	c := &cli{env: env}
	root := c.root()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	c.logInvocation(args, err)
	return err
}

func (c *cli) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "devport",
		Short: "devport: developer environments from a terminal",
		Long: `devport reserves, migrates, shares, backs up and restores devservers, and
requests On Demand containers, from a terminal. Sign in once with "devport login".

The same binary runs the portal: "devport serve" (see "devport serve -h"),
"devport migrate" without a devserver name (the database's migrations) and
"devport token create" (on the server host).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			c.cfg, c.cfgErr = loadCLIConfig(c.configPath())
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&c.portal, "portal", "", "the portal's URL (default: $DEVPORT_PORTAL, then the one you logged in to)")
	f.StringVar(&c.token, "token", "", "a personal access token (default: $DEVPORT_TOKEN, then the one devport login stored)")
	f.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	f.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the portal to answer one request")

	root.AddCommand(c.loginCmd(), c.logoutCmd(), c.whoamiCmd())
	root.AddCommand(c.sshConfigCmd(), c.doctorCmd())
	root.AddCommand(c.devserverCmds()...)
	root.AddCommand(c.containersCmd(), c.sshCmd(), c.tasksCmd(), c.inboxCmd())
	root.AddCommand(c.serverCmds()...)
	root.CompletionOptions.HiddenDefaultCmd = false
	return root
}

// serverCmds lists the server's commands (run by run, not by cobra) so that
// help and shell completion show them.
func (c *cli) serverCmds() []*cobra.Command {
	stub := func(use, short string) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, DisableFlagParsing: true,
			RunE: func(*cobra.Command, []string) error {
				return fmt.Errorf("%s is run by the devport binary itself: run \"devport %s\"", use, use)
			}}
	}
	return []*cobra.Command{
		stub("serve", "run the portal"),
		stub("token", "create a user and a personal access token on the server host"),
		stub("version", "print the version"),
	}
}

// cliConfig is what devport login stores: which portal, and the token.
type cliConfig struct {
	Portal string `json:"portal"`
	Token  string `json:"token"`
	User   string `json:"user,omitempty"`
}

// configDir is where the CLI keeps its configuration: $DEVPORT_CONFIG_DIR,
// else $XDG_CONFIG_HOME/devport, else ~/.config/devport.
func (c *cli) configDir() string {
	if d := c.env.Getenv("DEVPORT_CONFIG_DIR"); d != "" {
		return d
	}
	if d := c.env.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "devport")
	}
	return filepath.Join(c.home(), ".config", "devport")
}

// cacheDir is where the CLI keeps what it can rebuild (the ssh-config cache,
// its log): $XDG_CACHE_HOME/devport, else ~/.cache/devport.
func (c *cli) cacheDir() string {
	if d := c.env.Getenv("DEVPORT_CACHE_DIR"); d != "" {
		return d
	}
	if d := c.env.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "devport")
	}
	return filepath.Join(c.home(), ".cache", "devport")
}

func (c *cli) home() string {
	if h := c.env.Getenv("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

func (c *cli) configPath() string { return filepath.Join(c.configDir(), "config.json") }

// loadCLIConfig reads the configuration file; a missing one is an empty
// configuration, a corrupt one an error that says how to recover.
func loadCLIConfig(path string) (cliConfig, error) {
	var cfg cliConfig
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read the configuration %s: %w", path, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cliConfig{}, fmt.Errorf("the configuration file %s is corrupt (%v); delete it and run \"devport login\" again", path, err)
	}
	return cfg, nil
}

// saveConfig writes the configuration readable by its owner alone: it holds a token.
func (c *cli) saveConfig(cfg cliConfig) error {
	dir := c.configDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save the configuration: %w", err)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("save the configuration: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save the configuration: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save the configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save the configuration: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.configPath()); err != nil {
		return fmt.Errorf("save the configuration: %w", err)
	}
	return nil
}

// portalURL is the portal this invocation talks to.
func (c *cli) portalURL() (string, error) {
	p := c.portal
	if p == "" {
		p = c.env.Getenv("DEVPORT_PORTAL")
	}
	if p == "" {
		if c.cfgErr != nil {
			return "", c.cfgErr
		}
		p = c.cfg.Portal
	}
	if p == "" {
		return "", errors.New(`no portal: run "devport login --portal https://devport.example.com" (or set DEVPORT_PORTAL)`)
	}
	return normalizePortal(p)
}

// tokenValue is the token this invocation presents.
func (c *cli) tokenValue() (string, error) {
	if c.token != "" {
		return c.token, nil
	}
	if t := c.env.Getenv("DEVPORT_TOKEN"); t != "" {
		return t, nil
	}
	if c.cfgErr != nil {
		return "", c.cfgErr
	}
	if c.cfg.Token == "" {
		return "", errors.New(`not signed in: run "devport login"`)
	}
	// The stored token goes to the portal it was made by, never to another
	// one named by --portal or $DEVPORT_PORTAL (a typo there must not hand
	// the token to whoever answers at that address).
	if base, err := c.portalURL(); err == nil && c.cfg.Portal != "" {
		if own, err := normalizePortal(c.cfg.Portal); err != nil || base != own {
			return "", fmt.Errorf(`not signed in to %s: the stored token is for %s; run "devport login --portal %s", or give a token with --token or $DEVPORT_TOKEN`,
				base, c.cfg.Portal, base)
		}
	}
	return c.cfg.Token, nil
}

// client is a client of the portal with this invocation's token.
func (c *cli) client() (*apiClient, error) {
	base, err := c.portalURL()
	if err != nil {
		return nil, err
	}
	tok, err := c.tokenValue()
	if err != nil {
		return nil, err
	}
	return newAPIClient(base, tok, c.timeout, c.logRequest), nil
}

// printJSON prints v as indented JSON.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, aligned.
func (c *cli) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// output prints v as JSON with --json, else the table.
func (c *cli) output(v any, header []string, rows [][]string) error {
	if c.json {
		return c.printJSON(v)
	}
	return c.table(header, rows)
}

// listing prints a list as output does, except that a person gets the
// line empty instead of a table with no rows.
func (c *cli) listing(v any, empty string, header []string, rows [][]string) error {
	if !c.json && len(rows) == 0 {
		c.say("%s", empty)
		return nil
	}
	return c.output(v, header, rows)
}

// say prints a line meant for the person, not for a program: to stderr
// under --json so that stdout stays JSON.
func (c *cli) say(format string, a ...any) {
	w := c.env.Stdout
	if c.json {
		w = c.env.Stderr
	}
	fmt.Fprintf(w, format+"\n", a...)
}

// confirm asks a yes/no question at the terminal; without one it refuses
// and says which flag says yes.
func (c *cli) confirm(question, flag string) error {
	if !c.env.Interactive {
		return fmt.Errorf("%s: add %s to confirm (no terminal to ask at)", question, flag)
	}
	fmt.Fprintf(c.env.Stderr, "%s [y/N] ", question)
	var answer string
	_, _ = fmt.Fscanln(c.env.Stdin, &answer)
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return errors.New("cancelled")
	}
	return nil
}

// when shows a time in the person's local zone, or "-".
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// lookPath finds a program on the PATH.
var lookPath = exec.LookPath

// cliInvocation tells whether a command line (without the program name) is
// the CLI's rather than the server's: a CLI command, possibly after the CLI's
// global flags ("devport --json ls"), or "migrate" naming a devserver or
// taking the devserver migration's flags ("devport migrate --region lla
// NAME"), which the database's "migrate" never does.
func cliInvocation(args []string) bool {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch name {
		case "json":
			i++
		case "portal", "token", "timeout":
			i++
			if !hasValue {
				i++
			}
		default:
			return false // a server flag: devport [serve] [flags]
		}
	}
	if i >= len(args) {
		return false
	}
	cmd, rest := args[i], args[i+1:]
	if cliCommands[cmd] || (i > 0 && (cmd == "migrate" || cmd == "help")) {
		return true
	}
	if cmd != "migrate" {
		return false
	}
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		return true
	}
	for _, a := range rest {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "region" || name == "flavor" || name == "no-wait") {
			return true
		}
	}
	return false
}
