package main

// devport ssh: the OpenSSH client into a devserver or container, through
// the portal's SSH gateway.

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/devport/devport/store"
	"github.com/spf13/cobra"
)

// sshArgv is the OpenSSH command line into an environment: its connection,
// then the person's own arguments (OpenSSH reads options after the
// destination too, so both options and a remote command work there).
func sshArgv(cn store.Connection, extra []string) []string {
	argv := []string{"ssh"}
	if cn.SSHPort != 0 && cn.SSHPort != 22 {
		argv = append(argv, "-p", strconv.Itoa(cn.SSHPort))
	}
	argv = append(argv, cn.User+"@"+cn.SSHHost)
	return append(argv, extra...)
}

func (c *cli) sshCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh NAME [-- SSH-ARGS...]",
		Short: "open a shell on a devserver or container (OpenSSH through the portal's gateway)",
		Long: `Run the OpenSSH client into a ready devserver, or a container by its ID,
through the portal's SSH gateway, with your own SSH keys (add them on your
profile page). Whatever follows the name goes to ssh: options, a command.`,
		Example: `  devport ssh ada-vm-small-1
  devport ssh ada-vm-small-1 -- -L 8080:localhost:8080
  devport ssh od2k4m7q3a -- uname -a`,
		Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			names, dir := c.completeDevservers(cmd, args, s)
			ids, _ := c.completeContainers(cmd, args, s)
			return append(names, ids...), dir
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, extra := args[0], args[1:]
			if len(extra) > 0 && extra[0] == "--" {
				extra = extra[1:]
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			var cn *store.Connection
			if store.IsContainerName(name) {
				ct, err := c.getContainer(cmd.Context(), a, name)
				if err != nil {
					return err
				}
				if ct.State != store.ContainerReady {
					return fmt.Errorf("container %s is %s, not ready: nothing to connect to yet (devport containers show %s)", name, ct.State, name)
				}
				if ct.Access != nil {
					cn = ct.Access.Connection
				}
			} else {
				d, err := c.getDevserver(cmd.Context(), a, name)
				if err != nil {
					return err
				}
				if d.State != store.StateReady {
					msg := fmt.Sprintf("%s is %s, not ready", name, d.State)
					if d.State == store.StateProvisioning || d.State == store.StateMigrating {
						msg += fmt.Sprintf(" (%d%%): try again once it is (devport show %s)", d.Progress, name)
					} else {
						msg += fmt.Sprintf(": there is nothing to connect to (devport show %s)", name)
					}
					return errors.New(msg)
				}
				cn = d.Connection
			}
			if cn == nil || cn.SSHHost == "" {
				return fmt.Errorf("the portal gives no SSH connection for %s: its SSH gateway may be off (ask your administrators)", name)
			}
			path, err := lookPath("ssh")
			if err != nil {
				return errors.New("the OpenSSH client (ssh) is not installed or not on your PATH: install it (openssh-client) and try again")
			}
			return c.env.Exec(path, sshArgv(*cn, extra))
		},
	}
	// Everything after the name is ssh's, flags included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}
