package main

// The CLI's tasks and inbox: what the portal asks of the person, and what
// it told them.

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/devport/devport/store"
	"github.com/spf13/cobra"
)

// itemID reads the numeric ID of a task or notification.
func itemID(what, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		lists := map[string]string{"task": "devport tasks", "notification": "devport inbox"}[what]
		return 0, fmt.Errorf("%q is not a %s ID: IDs are numbers (%s lists them)", s, what, lists)
	}
	return id, nil
}

func (c *cli) tasksCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "tasks",
		Short: "list what the portal asks you to do",
		Example: `  devport tasks
  devport tasks --all
  devport tasks done 12`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			ts, err := list[store.Task](cmd.Context(), a, "tasks")
			if err != nil {
				return explain(err, "", "")
			}
			shown := []store.Task{}
			for _, t := range ts {
				if all || !t.Done() {
					shown = append(shown, t)
				}
			}
			now := c.env.Now()
			rows := make([][]string, 0, len(shown))
			for _, t := range shown {
				state := "open"
				switch {
				case t.Done():
					state = "done"
				case t.Overdue(now):
					state = "overdue"
				}
				rows = append(rows, []string{strconv.FormatInt(t.ID, 10), state, when(&t.DueAt), t.Title, dash(t.Link)})
			}
			empty := `No open tasks. ("devport tasks --all" lists the done ones too.)`
			if all {
				empty = "No tasks."
			}
			return c.listing(shown, empty, []string{"ID", "STATE", "DUE", "TITLE", "LINK"}, rows)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list the done tasks too")
	done := &cobra.Command{
		Use:   "done ID",
		Short: "mark a task done",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := itemID("task", args[0])
			if err != nil {
				return err
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			var t store.Task
			if _, err := a.do(cmd.Context(), http.MethodPost, "tasks/"+strconv.FormatInt(id, 10)+"/done", nil, &t); err != nil {
				return explain(err, "task", strconv.FormatInt(id, 10))
			}
			if c.json {
				return c.printJSON(t)
			}
			c.say("Done: %s.", t.Title)
			return nil
		},
	}
	cmd.AddCommand(done)
	return cmd
}

func (c *cli) inboxCmd() *cobra.Command {
	var unread bool
	cmd := &cobra.Command{
		Use:   "inbox",
		Short: "list your notifications",
		Example: `  devport inbox --unread
  devport inbox read 7
  devport inbox read --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := c.client()
			if err != nil {
				return err
			}
			ns, err := list[store.Notification](cmd.Context(), a, "notifications")
			if err != nil {
				return explain(err, "", "")
			}
			shown := []store.Notification{}
			for _, n := range ns {
				if !unread || n.Unread() {
					shown = append(shown, n)
				}
			}
			rows := make([][]string, 0, len(shown))
			for _, n := range shown {
				read := "unread"
				if !n.Unread() {
					read = "read"
				}
				rows = append(rows, []string{strconv.FormatInt(n.ID, 10), read, when(&n.CreatedAt), n.Kind, n.Title})
			}
			empty := "Your inbox is empty."
			if unread {
				empty = "No unread notifications."
			}
			return c.listing(shown, empty, []string{"ID", "READ", "WHEN", "KIND", "TITLE"}, rows)
		},
	}
	cmd.Flags().BoolVar(&unread, "unread", false, "only the unread ones")
	var all bool
	read := &cobra.Command{
		Use:   "read (ID | --all)",
		Short: "mark a notification read (and show it), or all of them",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return errors.New("give a notification ID or --all")
			}
			a, err := c.client()
			if err != nil {
				return err
			}
			if all {
				var out struct {
					Marked int64 `json:"marked"`
				}
				if _, err := a.do(cmd.Context(), http.MethodPost, "notifications/read-all", nil, &out); err != nil {
					return explain(err, "", "")
				}
				if c.json {
					return c.printJSON(out)
				}
				c.say("Marked %d notifications read.", out.Marked)
				return nil
			}
			id, err := itemID("notification", args[0])
			if err != nil {
				return err
			}
			var n store.Notification
			if _, err := a.do(cmd.Context(), http.MethodPost, "notifications/"+strconv.FormatInt(id, 10)+"/read", nil, &n); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
					return fmt.Errorf("no notification %d in your inbox (devport inbox lists them)", id)
				}
				return explain(err, "", "")
			}
			if c.json {
				return c.printJSON(n)
			}
			c.say("%s\n%s\n\n%s", n.Title, when(&n.CreatedAt), n.Body)
			if n.Link != "" {
				c.say("\n%s", n.Link)
			}
			return nil
		},
	}
	read.Flags().BoolVar(&all, "all", false, "mark every notification read")
	cmd.AddCommand(read)
	return cmd
}
