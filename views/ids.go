package views

import (
	"net/url"
	"strconv"

	"github.com/a-h/templ"
)

// Element IDs and URLs come from these functions, so an hx-target and the id
// it names cannot drift apart.

// DevserverURL is a devserver's page.
func DevserverURL(name string) string { return "/devservers/" + url.PathEscape(name) }

// DevserverReleaseURL is where a devserver's release is posted.
func DevserverReleaseURL(name string) string { return DevserverURL(name) + "/release" }

// DevserverStatusID is the id of a devserver's live status panel.
func DevserverStatusID(name string) string { return "devserver-status-" + name }

// SettledEvent is the HTMX event a devserver's status panel fires when the
// devserver stops changing (provisioned, migrated, released); the page's
// other sections refresh themselves on it.
const SettledEvent = "devserver-settled"

// onSettled is the hx-trigger of a section that refreshes when the devserver settles.
const onSettled = SettledEvent + " from:body"

// DevserverRowsID is the id of the devserver list's body.
const DevserverRowsID = "devserver-rows"

// ReserveURL is the reservation form.
const ReserveURL = "/devservers/new"

// ReserveRegionsURL returns the region choices for a flavour.
func ReserveRegionsURL() string { return "/devservers/new/regions" }

// ReserveRegionsID is the id of the region choices on the reservation form.
const ReserveRegionsID = "reserve-regions"

// LoginURL is the sign-in page, returning to next afterwards.
func LoginURL(next string) string {
	if next == "" || next == "/" {
		return "/login"
	}
	return "/login?next=" + url.QueryEscape(next)
}

// OIDCStartURL starts a single sign-on that returns to next afterwards.
func OIDCStartURL(next string) string {
	if next == "" || next == "/" {
		return "/auth/oidc/start"
	}
	return "/auth/oidc/start?next=" + url.QueryEscape(next)
}

func itoa(n int) string { return strconv.Itoa(n) }

// refresh is how a server-owned component keeps itself current: while
// changing it polls url every second; otherwise it refreshes on the
// events named in otherwise ("" for never).
func refresh(changing bool, url, otherwise string) templ.Attributes {
	trigger := otherwise
	if changing {
		trigger = "every 1s"
	}
	if trigger == "" {
		return templ.Attributes{}
	}
	return templ.Attributes{"hx-get": url, "hx-trigger": trigger, "hx-swap": "outerHTML"}
}
