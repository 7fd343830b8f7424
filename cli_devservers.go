package main

// The CLI's devserver commands: ls, show, reserve, extend, release,
// migrate, share, backup and restore, each a call (or a few) of /api/v1.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devport/devport/store"
	"github.com/spf13/cobra"
)

// devserverCmds are the devserver commands.
func (c *cli) devserverCmds() []*cobra.Command {
	return []*cobra.Command{c.lsCmd(), c.showCmd(), c.reserveCmd(), c.extendCmd(), c.releaseCmd(),
		c.migrateCmd(), c.shareCmd(), c.backupCmd(), c.restoreCmd()}
}

// devserverPath is the API path of a devserver, or of something under it.
func devserverPath(name string, rest ...string) string {
	p := "devservers/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// explain turns the portal's refusals into sentences that say what to do:
// an object the person may not see, a read-only token.
func explain(err error, what, name string) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Status == http.StatusNotFound && what == "devserver":
		return fmt.Errorf("no devserver %s that you can see (devport ls lists yours)", name)
	case ae.Status == http.StatusNotFound && what == "container":
		return fmt.Errorf("no container %s that you can see (devport containers lists yours)", name)
	case ae.Status == http.StatusNotFound && what != "":
		return fmt.Errorf("no %s %s that you can see", what, name)
	case ae.Code == "read_only_token":
		return errors.New(`this token is read-only: it may look but not change anything; sign in with a full token ("devport login")`)
	}
	return err
}

// getDevserver reads one devserver the person can see.
func (c *cli) getDevserver(ctx context.Context, a *apiClient, name string) (store.Devserver, error) {
	var d store.Devserver
	err := a.get(ctx, devserverPath(name), &d)
	return d, explain(err, "devserver", name)
}

// devserverProgress is where a devserver on its way to ready stands.
func devserverProgress(d store.Devserver) progressState {
	st := progressState{State: d.State, Progress: d.Progress, Note: d.StatusNote}
	switch d.State {
	case store.StateReady:
		st.Done, st.Progress = true, 100
	case store.StateFailed, store.StateLost, store.StateReleased, store.StateReleasing:
		st.Failed = true
	}
	return st
}

// completeDevservers completes the first argument with the names of the
// person's devservers; it fails quietly (no completion rather than an error).
func (c *cli) completeDevservers(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	a, err := c.completionClient()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ds, err := list[store.Devserver](cmd.Context(), a, "devservers")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, d := range ds {
		if d.State != store.StateReleased {
			names = append(names, d.Name+"\t"+d.State+" "+d.Flavor+" in "+d.Region)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completionClient is a portal client for shell completion: the
// configuration read here (cobra runs no pre-run hook when completing) and
// a short timeout, as a person waits at the prompt.
func (c *cli) completionClient() (*apiClient, error) {
	if c.cfg == (cliConfig{}) && c.cfgErr == nil {
		c.cfg, c.cfgErr = loadCLIConfig(c.configPath())
	}
	base, err := c.portalURL()
	if err != nil {
		return nil, err
	}
	tok, err := c.tokenValue()
	if err != nil {
		return nil, err
	}
	return newAPIClient(base, tok, 2*time.Second, nil), nil
}

func (c *cli) lsCmd() *cobra.Command {
	var all bool
	var region, state string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "list your devservers and those shared with you",
		Long: `List your devservers and the ones shared with you, with where each stands
and how long its lease runs. Administrators see everyone's with --all.`,
		Example: `  devport ls
  devport ls --state ready --region prn
  devport ls --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if all {
				q.Set("all", "1")
			}
			if region != "" {
				q.Set("region", region)
			}
			if state != "" {
				q.Set("state", state)
			}
			path := "devservers"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			ds, err := list[store.Devserver](cmd.Context(), a, path)
			var ae *apiError
			if all && errors.As(err, &ae) && ae.Status == http.StatusForbidden {
				return errors.New("only administrators may list everyone's devservers (--all); \"devport ls\" lists yours")
			}
			if err != nil {
				return explain(err, "", "")
			}
			rows := make([][]string, 0, len(ds))
			for _, d := range ds {
				rows = append(rows, []string{d.Name, d.State, strconv.Itoa(d.Progress) + "%", d.Flavor, d.Region,
					dash(d.Host), leaseEnd(d.Lease), dash(d.Relation)})
			}
			return c.listing(ds, `No devservers. Reserve one with "devport reserve --flavor vm.small".`,
				[]string{"NAME", "STATE", "PROGRESS", "FLAVOR", "REGION", "HOST", "LEASE-UNTIL", "ROLE"}, rows)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "everyone's devservers (administrators)")
	cmd.Flags().StringVar(&region, "region", "", "only devservers in this region")
	cmd.Flags().StringVar(&state, "state", "", "only devservers in this state (provisioning, ready, migrating, releasing, ...)")
	return cmd
}

// leaseEnd says when a lease ends: its time, or "permanent".
func leaseEnd(l store.Lease) string {
	if l.EndsAt == nil {
		if l.Kind == "permanent" {
			return "permanent"
		}
		return "-"
	}
	return when(l.EndsAt)
}

func (c *cli) showCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show NAME",
		Short:             "show a devserver: state, lease, host and how to connect",
		Example:           "  devport show ada-vm-small-1\n  devport show ada-vm-small-1 --json",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeDevservers,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			d, err := c.getDevserver(cmd.Context(), a, args[0])
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(d)
			}
			c.showDevserver(d)
			return nil
		},
	}
}

// showDevserver prints a devserver as "Key: value" lines.
func (c *cli) showDevserver(d store.Devserver) {
	var lines [][2]string
	add := func(k, v string) { lines = append(lines, [2]string{k, v}) }
	add("Name", d.Name)
	state := d.State
	if d.State != store.StateReady && d.State != store.StateReleased {
		state += fmt.Sprintf(" (%d%%)", d.Progress)
	}
	if d.StatusNote != "" {
		state += ": " + d.StatusNote
	}
	add("State", state)
	add("Owner", dash(d.Owner))
	if d.Relation != "" {
		add("You are", d.Relation)
	}
	add("Flavor", d.Flavor+" ("+d.Kind+")")
	add("Region", d.Region)
	add("Host", dash(d.Host))
	add("Hostname", dash(d.Hostname))
	add("Address", dash(d.Address))
	if d.Lease.Kind != "" {
		add("Lease", d.Lease.Kind+", until "+leaseEnd(d.Lease))
	} else {
		add("Lease", "-")
	}
	add("Created", when(&d.CreatedAt))
	add("Ready since", when(d.ReadyAt))
	if len(d.Shares) > 0 {
		var emails []string
		for _, s := range d.Shares {
			emails = append(emails, s.Email)
		}
		add("Shared with", strings.Join(emails, ", "))
	}
	if cn := d.Connection; cn != nil {
		add("SSH", cn.SSHCommand)
		add("Connect", "devport ssh "+d.Name)
		add("VS Code", cn.VSCodeURL)
	} else if d.Transitional() {
		add("SSH", "- (once it is ready)")
	} else {
		add("SSH", "-")
	}
	w := 0
	for _, l := range lines {
		w = max(w, len(l[0]))
	}
	for _, l := range lines {
		c.say("%-*s %s", w+1, l[0]+":", l[1])
	}
}

// parseUntil reads a point in time: RFC 3339, "2006-01-02 15:04" or a date
// (the end of that day), in the person's local zone.
func parseUntil(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t.Add(24*time.Hour - time.Minute), nil
	}
	return time.Time{}, fmt.Errorf("--until %q is not a time: write it as 2026-12-31, \"2026-12-31 18:00\" or 2026-12-31T18:00:00Z", s)
}

// parseFor reads a duration, with days: 7d, 36h, 2d12h.
func parseFor(s string) (time.Duration, error) {
	bad := fmt.Errorf("--for %q is not a duration: write it as 7d, 36h or 2d12h", s)
	s = strings.TrimSpace(s)
	var days time.Duration
	if i := strings.Index(s, "d"); i >= 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, bad
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		var err error
		if rest, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d := days + rest; d > 0 {
		return d, nil
	}
	return 0, bad
}

// leaseUntil is the end of a lease asked with --until or --for (nil: neither).
func (c *cli) leaseUntil(until, forDur string) (*time.Time, error) {
	switch {
	case until != "" && forDur != "":
		return nil, errors.New("give --until or --for, not both")
	case until != "":
		t, err := parseUntil(until)
		return &t, err
	case forDur != "":
		d, err := parseFor(forDur)
		if err != nil {
			return nil, err
		}
		t := c.env.Now().Add(d).Truncate(time.Minute)
		return &t, nil
	}
	return nil, nil
}

func (c *cli) reserveCmd() *cobra.Command {
	var flavor, region, lease, until, forDur string
	var features []string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "reserve --flavor FLAVOR",
		Short: "reserve a devserver and wait until it is ready",
		Long: `Reserve a devserver of a flavour and follow it until it is ready, then print
how to connect. The lease is short (14 days unless --until or --for says
otherwise, within the flavour's policy) or permanent where allowed.`,
		Example: `  devport reserve --flavor vm.small
  devport reserve --flavor vm.medium --region lla --for 3d --feature docker
  devport reserve --flavor vm.large --lease permanent --no-wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			end, err := c.leaseUntil(until, forDur)
			if err != nil {
				return err
			}
			if lease != "" && lease != "short" && lease != "permanent" {
				return fmt.Errorf("--lease %q: it is short or permanent", lease)
			}
			if lease == "permanent" && end != nil {
				return errors.New("a permanent lease has no end: drop --until/--for, or use --lease short")
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			if flavor == "" {
				return c.whichFlavor(cmd.Context(), a)
			}
			body := map[string]any{"flavor": flavor}
			if region != "" {
				body["region"] = region
			}
			if len(features) > 0 {
				body["features"] = features
			}
			if lease != "" || end != nil {
				l := map[string]any{"kind": "short"}
				if lease != "" {
					l["kind"] = lease
				}
				if end != nil {
					l["until"] = end.UTC()
				}
				body["lease"] = l
			}
			var d store.Devserver
			if _, err := a.do(cmd.Context(), http.MethodPost, "devservers", body, &d); err != nil {
				return explain(err, "", "")
			}
			if noWait {
				if c.json {
					return c.printJSON(d)
				}
				c.say("Reserving %s (%s in %s): it is %s. Follow it with \"devport show %s\".", d.Name, d.Flavor, d.Region, d.State, d.Name)
				return nil
			}
			if _, err := c.follow(cmd.Context(), "reserve "+d.Name, func(ctx context.Context) (progressState, error) {
				var err error
				d, err = c.getDevserver(ctx, a, d.Name)
				return devserverProgress(d), err
			}); err != nil {
				return err
			}
			if c.json {
				return c.printJSON(d)
			}
			c.say("%s is ready (%s in %s, lease until %s).", d.Name, d.Flavor, d.Region, leaseEnd(d.Lease))
			if d.Connection != nil {
				c.say("Connect: devport ssh %s\n     or: %s", d.Name, d.Connection.SSHCommand)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&flavor, "flavor", "", "the flavour (devport reserve without it lists them)")
	f.StringVar(&region, "region", "", "the region (default: your home region, else the nearest with room)")
	f.StringVar(&lease, "lease", "", "short or permanent (default: short)")
	f.StringVar(&until, "until", "", "when the lease ends: 2026-12-31 or \"2026-12-31 18:00\"")
	f.StringVar(&forDur, "for", "", "how long the lease runs: 7d, 36h")
	f.StringSliceVar(&features, "feature", nil, "a feature to install (repeatable)")
	f.BoolVar(&noWait, "no-wait", false, "return once the portal accepted the reservation")
	return cmd
}

// whichFlavor is the error of a reserve without a flavour: it lists them.
func (c *cli) whichFlavor(ctx context.Context, a *apiClient) error {
	fs, err := list[store.Flavor](ctx, a, "flavors")
	if err != nil || len(fs) == 0 {
		return errors.New("which flavour? add --flavor (such as --flavor vm.small)")
	}
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	return fmt.Errorf("which flavour? add --flavor, one of: %s", strings.Join(names, ", "))
}

func (c *cli) extendCmd() *cobra.Command {
	var until, forDur string
	cmd := &cobra.Command{
		Use:               "extend NAME (--until TIME | --for DURATION)",
		Short:             "extend a devserver's lease",
		Example:           "  devport extend ada-vm-small-1 --for 7d\n  devport extend ada-vm-small-1 --until 2026-12-31",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeDevservers,
		RunE: func(cmd *cobra.Command, args []string) error {
			end, err := c.leaseUntil(until, forDur)
			if err != nil {
				return err
			}
			if end == nil {
				return errors.New("until when? add --until 2026-12-31 or --for 7d")
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			var d store.Devserver
			if _, err := a.do(cmd.Context(), http.MethodPost, devserverPath(args[0], "extend"), map[string]any{"until": end.UTC()}, &d); err != nil {
				return explain(err, "devserver", args[0])
			}
			if c.json {
				return c.printJSON(d)
			}
			c.say("The lease of %s now ends %s.", d.Name, leaseEnd(d.Lease))
			return nil
		},
	}
	cmd.Flags().StringVar(&until, "until", "", "when the lease ends: 2026-12-31 or \"2026-12-31 18:00\"")
	cmd.Flags().StringVar(&forDur, "for", "", "how long from now: 7d, 36h")
	return cmd
}

func (c *cli) releaseCmd() *cobra.Command {
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:   "release NAME",
		Short: "release a devserver (its home is backed up first)",
		Long: `Release a devserver: the portal backs up its home, then gives the machine
back. The backup stays restorable onto another devserver of yours.`,
		Example:           "  devport release ada-vm-small-1\n  devport release ada-vm-small-1 --yes --no-wait",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeDevservers,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			a, err := c.client()
			if err != nil {
				return err
			}
			d, err := c.getDevserver(cmd.Context(), a, name)
			if err != nil {
				return err
			}
			if !yes {
				if err := c.confirm(fmt.Sprintf("Release %s (%s in %s)? Its home is backed up, then the devserver is gone", name, d.Flavor, d.Region), "--yes"); err != nil {
					return err
				}
			}
			if _, err := a.do(cmd.Context(), http.MethodPost, devserverPath(name, "release"), nil, &d); err != nil {
				return explain(err, "devserver", name)
			}
			if !noWait && d.State != store.StateReleased {
				if _, err := c.follow(cmd.Context(), "release "+name, func(ctx context.Context) (progressState, error) {
					var err error
					d, err = c.getDevserver(ctx, a, name)
					st := progressState{State: d.State, Progress: d.Progress, Note: d.StatusNote}
					st.Done = d.State == store.StateReleased
					st.Failed = d.State == store.StateFailed
					return st, err
				}); err != nil {
					return err
				}
			}
			if c.json {
				return c.printJSON(d)
			}
			if d.State == store.StateReleased {
				c.say("Released %s. \"devport backup %s --list\" lists its backups.", name, name)
			} else {
				c.say("Releasing %s: it is %s.", name, d.State)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "release without asking")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the portal accepted the release")
	return cmd
}

// migrationProgress is where a migration stands: its step among the steps.
func migrationProgress(m store.DevserverMigration) progressState {
	st := progressState{State: m.State, Note: strings.ReplaceAll(m.Step, "_", " ")}
	if i := slices.Index(store.MigrationSteps, m.Step); i >= 0 {
		st.Progress = i * 100 / len(store.MigrationSteps)
	}
	switch m.State {
	case "done":
		st.Done, st.Progress, st.Note = true, 100, ""
	case "rolled_back":
		st.Failed, st.Note = true, dash(m.Error)
	case "rolling_back":
		st.Note = "rolling back: " + m.Error
	}
	return st
}

func (c *cli) migrateCmd() *cobra.Command {
	var flavor, region string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "migrate NAME [--flavor F] [--region R]",
		Short: "move a devserver to another flavour or region, home and all",
		Long: `Move a devserver to another flavour and/or region: the portal backs up its
home, builds the new one, restores the home onto it, moves the hostname and
releases the old one. A failure rolls back to the untouched original.`,
		Example:           "  devport migrate ada-vm-small-1 --region lla\n  devport migrate ada-vm-small-1 --flavor vm.large",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeDevservers,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if flavor == "" && region == "" {
				return errors.New("migrate where? add --region R and/or --flavor F")
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			var m store.DevserverMigration
			if _, err := a.do(cmd.Context(), http.MethodPost, devserverPath(name, "migrate"), map[string]string{"flavor": flavor, "region": region}, &m); err != nil {
				return explain(err, "devserver", name)
			}
			if !noWait {
				if _, err := c.follow(cmd.Context(), "migrate "+name, func(ctx context.Context) (progressState, error) {
					err := a.get(ctx, devserverPath(name, "migration"), &m)
					return migrationProgress(m), explain(err, "devserver", name)
				}); err != nil {
					if m.State == "rolled_back" {
						return fmt.Errorf("the migration of %s rolled back, %s is as it was: %s", name, name, dash(m.Error))
					}
					return err
				}
			}
			if c.json {
				return c.printJSON(m)
			}
			if m.State == "done" {
				c.say("Migrated %s to %s in %s (host %s).", name, m.ToFlavor, m.ToRegion, m.ToHost)
			} else {
				c.say("Migrating %s to %s in %s: %s. Follow it with \"devport show %s\".", name, m.ToFlavor, m.ToRegion, m.Step, name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&flavor, "flavor", "", "the new flavour (default: the same)")
	cmd.Flags().StringVar(&region, "region", "", "the new region (default: the same)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the portal accepted the migration")
	return cmd
}

func (c *cli) shareCmd() *cobra.Command {
	var remove []string
	cmd := &cobra.Command{
		Use:   "share NAME [EMAIL...]",
		Short: "list, add or remove the people a devserver is shared with",
		Long: `Without emails, list whom a devserver is shared with. With emails, share it
with them (they can sign in to it with their own SSH keys). --remove EMAIL
takes a person off.`,
		Example: `  devport share ada-vm-small-1
  devport share ada-vm-small-1 grace@example.com linus@example.com
  devport share ada-vm-small-1 --remove grace@example.com`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: c.completeDevservers,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, emails := args[0], args[1:]
			a, err := c.client()
			if err != nil {
				return err
			}
			for _, e := range emails {
				var sh store.Share
				if _, err := a.do(cmd.Context(), http.MethodPost, devserverPath(name, "shares"), map[string]string{"email": e}, &sh); err != nil {
					var ae *apiError
					if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
						return explain(err, "devserver", name)
					}
					return fmt.Errorf("share %s with %s: %w", name, e, explain(err, "devserver", name))
				}
				if !c.json {
					c.say("Shared %s with %s.", name, sh.Email)
				}
			}
			for _, e := range remove {
				if _, err := a.do(cmd.Context(), http.MethodDelete, devserverPath(name, "shares", url.PathEscape(e)), nil, nil); err != nil {
					var ae *apiError
					if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
						if _, gerr := c.getDevserver(cmd.Context(), a, name); gerr != nil {
							return gerr
						}
						return fmt.Errorf("%s is not shared with %s", name, e)
					}
					return fmt.Errorf("stop sharing %s with %s: %w", name, e, explain(err, "devserver", name))
				}
				if !c.json {
					c.say("%s is no longer shared with %s.", name, e)
				}
			}
			if (len(emails) > 0 || len(remove) > 0) && !c.json {
				return nil
			}
			shares, err := list[store.Share](cmd.Context(), a, devserverPath(name, "shares"))
			if err != nil {
				return explain(err, "devserver", name)
			}
			rows := make([][]string, 0, len(shares))
			for _, s := range shares {
				rows = append(rows, []string{s.Email, when(&s.CreatedAt), dash(s.CreatedBy)})
			}
			return c.listing(shares, fmt.Sprintf("%s is shared with nobody. \"devport share %s EMAIL\" shares it.", name, name),
				[]string{"EMAIL", "SINCE", "SHARED-BY"}, rows)
		},
	}
	cmd.Flags().StringSliceVar(&remove, "remove", nil, "stop sharing with this person (repeatable)")
	return cmd
}

// humanBytes shows a size such as 1.5 MB.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func (c *cli) backupCmd() *cobra.Command {
	var listOnly, noWait bool
	cmd := &cobra.Command{
		Use:   "backup NAME",
		Short: "back up a devserver's home now, or list its backups",
		Example: `  devport backup ada-vm-small-1
  devport backup ada-vm-small-1 --list`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeDevservers,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			a, err := c.client()
			if err != nil {
				return err
			}
			if listOnly {
				bs, err := list[store.Backup](cmd.Context(), a, devserverPath(name, "backups"))
				if err != nil {
					return explain(err, "devserver", name)
				}
				rows := make([][]string, 0, len(bs))
				for _, b := range bs {
					size := "-"
					if b.State == store.BackupDone {
						size = humanBytes(b.SizeBytes)
					}
					rows = append(rows, []string{strconv.FormatInt(b.ID, 10), b.State, size, when(&b.CreatedAt), b.Kind, dash(b.Error)})
				}
				return c.listing(bs, fmt.Sprintf("%s has no backups yet. \"devport backup %s\" takes one.", name, name),
					[]string{"ID", "STATE", "SIZE", "TAKEN", "KIND", "NOTE"}, rows)
			}
			var b store.Backup
			if _, err := a.do(cmd.Context(), http.MethodPost, devserverPath(name, "backups"), nil, &b); err != nil {
				return explain(err, "devserver", name)
			}
			if !noWait {
				if _, err := c.follow(cmd.Context(), "backup of "+name, func(ctx context.Context) (progressState, error) {
					bs, err := list[store.Backup](ctx, a, devserverPath(name, "backups"))
					if err != nil {
						return progressState{}, explain(err, "devserver", name)
					}
					for _, x := range bs {
						if x.ID == b.ID {
							b = x
						}
					}
					st := progressState{State: b.State, Note: b.Error}
					st.Done = b.State == store.BackupDone
					st.Failed = b.State == store.BackupFailed || b.State == store.BackupDeleted
					if st.Done {
						st.Progress = 100
					}
					return st, nil
				}); err != nil {
					return err
				}
			}
			if c.json {
				return c.printJSON(b)
			}
			if b.State == store.BackupDone {
				c.say("Backed up %s: backup %d, %s. Restore it with \"devport restore %s --backup %d\".", name, b.ID, humanBytes(b.SizeBytes), name, b.ID)
			} else {
				c.say("Backing up %s: backup %d is %s.", name, b.ID, b.State)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&listOnly, "list", false, "list the devserver's backups instead of taking one")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the portal accepted the backup")
	return cmd
}

// restoreView is a restore as the API shows it, with its progress.
type restoreView struct {
	store.Restore
	Progress int `json:"progress"`
}

func (c *cli) restoreCmd() *cobra.Command {
	var backupID int64
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:   "restore NAME --backup ID",
		Short: "restore a backup onto a devserver, replacing its home",
		Long: `Restore a backup (of this or another of your devservers) onto a devserver.
It replaces the home there; the portal first backs up the home it replaces.`,
		Example:           "  devport backup ada-vm-small-1 --list\n  devport restore ada-vm-small-1 --backup 42",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeDevservers,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if backupID <= 0 {
				return fmt.Errorf(`which backup? add --backup ID ("devport backup %s --list" lists them)`, name)
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			if _, err := c.getDevserver(cmd.Context(), a, name); err != nil {
				return err
			}
			if !yes {
				if err := c.confirm(fmt.Sprintf("Restore backup %d onto %s? It overwrites the home there (a backup of it is taken first)", backupID, name), "--yes"); err != nil {
					return err
				}
			}
			var rs restoreView
			if _, err := a.do(cmd.Context(), http.MethodPost, devserverPath(name, "restore"), map[string]int64{"backup_id": backupID}, &rs); err != nil {
				return explain(err, "devserver", name)
			}
			if !noWait {
				if _, err := c.follow(cmd.Context(), "restore onto "+name, func(ctx context.Context) (progressState, error) {
					rss, err := list[restoreView](ctx, a, devserverPath(name, "restores"))
					if err != nil {
						return progressState{}, explain(err, "devserver", name)
					}
					for _, x := range rss {
						if x.ID == rs.ID {
							rs = x
						}
					}
					st := progressState{State: rs.State, Progress: rs.Progress, Note: strings.ReplaceAll(rs.Step, "_", " ")}
					if rs.State == store.RestoreDone {
						st.Done, st.Note = true, ""
					}
					if rs.State == store.RestoreFailed {
						st.Failed, st.Note = true, rs.Error
					}
					return st, nil
				}); err != nil {
					return err
				}
			}
			if c.json {
				return c.printJSON(rs)
			}
			if rs.State == store.RestoreDone {
				c.say("Restored backup %d onto %s.", backupID, name)
				if rs.PreBackupID != nil {
					c.say("The home it replaced is backup %d.", *rs.PreBackupID)
				}
			} else {
				c.say("Restoring backup %d onto %s: %s.", backupID, name, rs.State)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&backupID, "backup", 0, "the backup's ID (devport backup NAME --list)")
	cmd.Flags().BoolVar(&yes, "yes", false, "restore without asking")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the portal accepted the restore")
	return cmd
}
