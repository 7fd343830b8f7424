package main

// The CLI's On Demand container commands: list, types, request, show, end
// and fresh.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/devport/devport/store"
	"github.com/spf13/cobra"
)

func containerPath(id string, rest ...string) string {
	p := "containers/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

func (c *cli) getContainer(ctx context.Context, a *apiClient, id string) (store.Container, error) {
	var ct store.Container
	err := a.get(ctx, containerPath(id), &ct)
	return ct, explain(err, "container", id)
}

// containerProgress is where a container on its way to ready stands: ready
// once it runs and its setup is over.
func containerProgress(ct store.Container) progressState {
	st := progressState{State: ct.State, Progress: ct.Progress, Note: ct.StatusNote}
	switch ct.State {
	case store.ContainerReady:
		if ct.SetupState == "pending" {
			st.Note = "setting up"
			return st
		}
		st.Done, st.Progress = true, 100
	case store.ContainerFailed, store.ContainerEnding, store.ContainerEnded:
		st.Failed = true
		if st.Note == "" {
			st.Note = ct.EndReason
		}
	}
	return st
}

// completeContainers completes the first argument with the person's live
// containers' IDs, failing quietly.
func (c *cli) completeContainers(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	a, err := c.completionClient()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cs, err := list[store.Container](cmd.Context(), a, "containers")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var ids []string
	for _, ct := range cs {
		ids = append(ids, ct.Name+"\t"+ct.State+" "+ct.Type+" "+ct.Profile+" in "+ct.Region)
	}
	return ids, cobra.ShellCompDirectiveNoFileComp
}

func (c *cli) containersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "containers",
		Short: "On Demand containers: list, request, show, end",
		Long: `On Demand containers are short-lived environments of a type (web, android,
jupyter...) on a hardware profile. "devport containers" lists yours.`,
		Example: `  devport containers
  devport containers types
  devport containers request --type web --profile small
  devport containers end od2k4m7q3a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.listContainers(cmd, false) },
	}
	var ended bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "list your containers",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.listContainers(cmd, ended) },
	}
	ls.Flags().BoolVar(&ended, "ended", false, "list the ended ones instead")
	cmd.AddCommand(ls, c.containerTypesCmd(), c.containerRequestCmd(), c.containerShowCmd(), c.containerEndCmd(), c.containerFreshCmd())
	return cmd
}

func (c *cli) listContainers(cmd *cobra.Command, ended bool) error {
	a, err := c.client()
	if err != nil {
		return err
	}
	path := "containers"
	if ended {
		path += "?ended=1"
	}
	cs, err := list[store.Container](cmd.Context(), a, path)
	if err != nil {
		return explain(err, "", "")
	}
	rows := make([][]string, 0, len(cs))
	for _, ct := range cs {
		rows = append(rows, []string{ct.Name, ct.State, strconv.Itoa(ct.Progress) + "%", ct.Type, ct.Profile, ct.Region, when(ct.ExpiresAt)})
	}
	return c.listing(cs, `No containers. "devport containers types" lists what you can request.`,
		[]string{"ID", "STATE", "PROGRESS", "TYPE", "PROFILE", "REGION", "ENDS-AT"}, rows)
}

func (c *cli) containerTypesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "types",
		Short: "list the container types and hardware profiles you can request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			var cat store.Catalogue
			if err := a.get(cmd.Context(), "containers/types", &cat); err != nil {
				return explain(err, "", "")
			}
			if c.json {
				return c.printJSON(cat)
			}
			rows := make([][]string, 0, len(cat.Types))
			for _, t := range cat.Types {
				rows = append(rows, []string{t.Name, t.Stack, strings.Join(t.Profiles, ","), fmt.Sprintf("%dh", t.LifetimeHours),
					dash(strings.Join(t.Features, ",")), t.Description})
			}
			if err := c.table([]string{"TYPE", "STACK", "PROFILES", "LIFETIME", "FEATURES", "DESCRIPTION"}, rows); err != nil {
				return err
			}
			c.say("")
			rows = rows[:0]
			for _, p := range cat.Profiles {
				rows = append(rows, []string{p.Name, strconv.Itoa(p.CPUs), fmt.Sprintf("%d GB", p.MemoryGB), fmt.Sprintf("%d GB", p.DiskGB),
					strconv.Itoa(p.GPUs), p.Description})
			}
			return c.table([]string{"PROFILE", "CPUS", "MEMORY", "DISK", "GPUS", "DESCRIPTION"}, rows)
		},
	}
}

// followContainer follows a new container until it is ready and says how
// to get in.
func (c *cli) followContainer(ctx context.Context, a *apiClient, ct store.Container, noWait bool) error {
	if !noWait && ct.State != store.ContainerReady {
		if _, err := c.follow(ctx, "container "+ct.Name, func(ctx context.Context) (progressState, error) {
			var err error
			ct, err = c.getContainer(ctx, a, ct.Name)
			return containerProgress(ct), err
		}); err != nil {
			return err
		}
	}
	if c.json {
		return c.printJSON(ct)
	}
	if ct.State != store.ContainerReady {
		c.say("Requested container %s (%s on %s in %s): it is %s. Follow it with \"devport containers show %s\".",
			ct.Name, ct.Type, ct.Profile, ct.Region, ct.State, ct.Name)
		return nil
	}
	c.say("Container %s is ready (%s on %s in %s); it ends %s.", ct.Name, ct.Type, ct.Profile, ct.Region, when(ct.ExpiresAt))
	if ct.PlacementNote != "" {
		c.say("%s", ct.PlacementNote)
	}
	if ct.Access != nil && ct.Access.Connection != nil {
		c.say("Connect: devport ssh %s\n     or: %s", ct.Name, ct.Access.Connection.SSHCommand)
	}
	return nil
}

func (c *cli) containerRequestCmd() *cobra.Command {
	var typ, profile, region string
	var features []string
	var noWait bool
	cmd := &cobra.Command{
		Use:     "request --type T --profile P",
		Short:   "request a container and wait until it is ready",
		Example: "  devport containers request --type web --profile small\n  devport containers request --type jupyter --profile gpu --region prn",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if typ == "" || profile == "" {
				return errors.New(`which type and profile? add --type and --profile ("devport containers types" lists them)`)
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			body := map[string]any{"type": typ, "profile": profile}
			if region != "" {
				body["region"] = region
			}
			if len(features) > 0 {
				body["features"] = features
			}
			var ct store.Container
			if _, err := a.do(cmd.Context(), http.MethodPost, "containers", body, &ct); err != nil {
				return explain(err, "", "")
			}
			return c.followContainer(cmd.Context(), a, ct, noWait)
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "the container type (devport containers types)")
	f.StringVar(&profile, "profile", "", "the hardware profile (devport containers types)")
	f.StringVar(&region, "region", "", "the region (default: the nearest with room)")
	f.StringSliceVar(&features, "feature", nil, "a feature to add (repeatable)")
	f.BoolVar(&noWait, "no-wait", false, "return once the portal accepted the request")
	return cmd
}

func (c *cli) containerShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "show ID",
		Short:             "show a container: state, hardware, when it ends, how to connect",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeContainers,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			ct, err := c.getContainer(cmd.Context(), a, args[0])
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(ct)
			}
			state := ct.State
			if ct.State == store.ContainerProvisioning {
				state += fmt.Sprintf(" (%d%%)", ct.Progress)
			}
			if ct.StatusNote != "" {
				state += ": " + ct.StatusNote
			}
			lines := [][2]string{
				{"ID", ct.Name}, {"State", state}, {"Type", ct.Type + " (" + ct.Stack + ")"},
				{"Profile", fmt.Sprintf("%s: %d CPUs, %d GB memory, %d GB disk, %d GPUs", ct.Profile, ct.CPUs, ct.MemoryGB, ct.DiskGB, ct.GPUs)},
				{"Region", ct.Region}, {"Host", dash(ct.Host)}, {"Hostname", dash(ct.Hostname)}, {"Image", dash(ct.Image)},
				{"Created", when(&ct.CreatedAt)}, {"Ends", when(ct.ExpiresAt)},
			}
			if ct.EndedAt != nil {
				lines = append(lines, [2]string{"Ended", when(ct.EndedAt) + " " + strings.TrimSpace(ct.EndReason+" "+ct.EndedBy)})
			}
			if ct.ReplacedBy != "" {
				lines = append(lines, [2]string{"Replaced by", ct.ReplacedBy})
			}
			var feats []string
			for _, f := range ct.Features {
				feats = append(feats, f.Feature)
			}
			if len(feats) > 0 {
				lines = append(lines, [2]string{"Features", strings.Join(feats, ", ")})
			}
			if ct.Access != nil {
				if ct.Access.Connection != nil {
					lines = append(lines, [2]string{"SSH", ct.Access.Connection.SSHCommand}, [2]string{"Connect", "devport ssh " + ct.Name})
				}
				if ct.Access.SandboxURL != "" {
					lines = append(lines, [2]string{"Sandbox", ct.Access.SandboxURL})
				}
			}
			w := 0
			for _, l := range lines {
				w = max(w, len(l[0]))
			}
			for _, l := range lines {
				c.say("%-*s %s", w+1, l[0]+":", l[1])
			}
			return nil
		},
	}
}

func (c *cli) containerEndCmd() *cobra.Command {
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:               "end ID",
		Short:             "end a container now (what is in it is gone)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeContainers,
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			a, err := c.client()
			if err != nil {
				return err
			}
			ct, err := c.getContainer(cmd.Context(), a, id)
			if err != nil {
				return err
			}
			if !yes {
				if err := c.confirm(fmt.Sprintf("End container %s (%s on %s)? What is in it is gone", id, ct.Type, ct.Profile), "--yes"); err != nil {
					return err
				}
			}
			if _, err := a.do(cmd.Context(), http.MethodDelete, containerPath(id), nil, &ct); err != nil {
				return explain(err, "container", id)
			}
			if !noWait && ct.State != store.ContainerEnded {
				if _, err := c.follow(cmd.Context(), "end "+id, func(ctx context.Context) (progressState, error) {
					var err error
					ct, err = c.getContainer(ctx, a, id)
					st := progressState{State: ct.State, Note: ct.StatusNote, Done: ct.State == store.ContainerEnded}
					if st.Done {
						st.Progress = 100
					}
					return st, err
				}); err != nil {
					return err
				}
			}
			if c.json {
				return c.printJSON(ct)
			}
			if ct.State == store.ContainerEnded {
				c.say("Ended container %s.", id)
			} else {
				c.say("Ending container %s: it is %s.", id, ct.State)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "end it without asking")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the portal accepted it")
	return cmd
}

func (c *cli) containerFreshCmd() *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:               "fresh ID",
		Short:             "get a fresh container like this one (type, profile, features) with a new lifetime",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeContainers,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			var ct store.Container
			if _, err := a.do(cmd.Context(), http.MethodPost, containerPath(args[0], "fresh"), nil, &ct); err != nil {
				return explain(err, "container", args[0])
			}
			if !c.json {
				c.say("Fresh container %s replaces %s.", ct.Name, args[0])
			}
			return c.followContainer(cmd.Context(), a, ct, noWait)
		},
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the portal accepted the request")
	return cmd
}
