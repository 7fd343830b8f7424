// Package views holds devport's templ components: the layout, shared
// components, and one file per area with its page and partials.
package views

import (
	"context"

	"github.com/devport/devport/store"
)

// Chrome is what every page's frame shows: who is signed in, how, and the
// flash messages of the last action.
type Chrome struct {
	User     *store.User
	DevLogin bool   // the dev login is enabled: every page says so
	Fleet    string // "simulated fleet" where the fleet is not real
	Flashes  []Flash
	// Refresh makes a page without JavaScript reload itself while something on it is changing.
	Refresh bool
	// Unread counts the signed-in user's unread notifications for the
	// navigation; it is asked only when a full page is drawn.
	Unread func() int
	// OpenTasks counts the signed-in user's open tasks for the navigation.
	OpenTasks func() int
	// Banners lists the banners active for the signed-in user now.
	Banners func() []store.Banner
	// Channels are the notification channels this portal sends over.
	Channels store.Offered
}

// OpenTaskCount is the navigation's open task count, 0 when nobody is signed in.
func (c *Chrome) OpenTaskCount() int {
	if c.User == nil || c.OpenTasks == nil {
		return 0
	}
	return c.OpenTasks()
}

// ActiveBanners are the banners every page shows the signed-in user.
func (c *Chrome) ActiveBanners() []store.Banner {
	if c.User == nil || c.Banners == nil {
		return nil
	}
	return c.Banners()
}

// UnreadCount is the navigation's unread count, 0 when nobody is signed in.
func (c *Chrome) UnreadCount() int {
	if c.User == nil || c.Unread == nil {
		return 0
	}
	return c.Unread()
}

// Flash is a one-time message shown after an action.
type Flash struct {
	Kind    string // success, error, info
	Message string
}

type chromeKey struct{}

// WithChrome stores the chrome in a context.
func WithChrome(ctx context.Context, c *Chrome) context.Context {
	return context.WithValue(ctx, chromeKey{}, c)
}

// ChromeFrom returns the chrome stored in ctx, or an empty one.
func ChromeFrom(ctx context.Context) *Chrome {
	if c, ok := ctx.Value(chromeKey{}).(*Chrome); ok {
		return c
	}
	return &Chrome{}
}
