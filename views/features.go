package views

import (
	"net/url"
	"slices"
	"strings"

	"github.com/devport/devport/store"
)

// DevserverFeaturesURL is a devserver's features section, and where a feature is added.
func DevserverFeaturesURL(name string) string { return DevserverURL(name) + "/features" }

// DevserverFeatureRemoveURL is where a feature's removal is posted.
func DevserverFeatureRemoveURL(name, feature string) string {
	return DevserverFeaturesURL(name) + "/" + url.PathEscape(feature) + "/remove"
}

// DevserverOneoffsURL is where one-offs are applied to a devserver again.
func DevserverOneoffsURL(name string) string { return DevserverURL(name) + "/oneoffs" }

// DevserverFeaturesID is the id of a devserver's features section.
const DevserverFeaturesID = "devserver-features"

// OneoffsURL is the one-offs editor in the profile.
const OneoffsURL = "/profile/oneoffs"

// AdminFeaturesURL is the features catalogue for admins.
const AdminFeaturesURL = "/admin/features"

// AdminFeatureBumpURL is where a feature's new version is posted.
func AdminFeatureBumpURL(feature string) string {
	return AdminFeaturesURL + "/" + url.PathEscape(feature) + "/version"
}

// RolloutsID is the id of the rolling updates table.
const RolloutsID = "rollouts"

func featuresInFlight(fs []store.DevserverFeature) bool {
	for _, f := range fs {
		if f.State == store.FeaturePending || f.State == store.FeatureRemoving {
			return true
		}
	}
	return false
}

// addableFeatures are the catalogue's features not on the devserver yet.
func addableFeatures(catalogue []store.Feature, have []store.DevserverFeature) []store.Feature {
	on := map[string]bool{}
	for _, f := range have {
		on[f.Feature] = true
	}
	var out []store.Feature
	for _, f := range catalogue {
		if !on[f.Name] {
			out = append(out, f)
		}
	}
	return out
}

// OneoffsForm is the one-offs editor's fields as entered: dotfiles as
// parallel path and content lists, the environment as NAME=value lines.
type OneoffsForm struct {
	Paths       []string
	Contents    []string
	SetupScript string
	Env         string
	Errors      map[string]string
}

// OneoffsFormFrom fills the editor from saved one-offs, with an empty row for a new dotfile.
func OneoffsFormFrom(o store.Oneoffs, errs map[string]string) OneoffsForm {
	f := OneoffsForm{SetupScript: o.SetupScript, Errors: errs}
	for _, d := range o.Dotfiles {
		f.Paths = append(f.Paths, d.Path)
		f.Contents = append(f.Contents, d.Content)
	}
	var lines []string
	for k, v := range o.Env {
		lines = append(lines, k+"="+v)
	}
	slices.Sort(lines)
	f.Env = strings.Join(lines, "\n")
	return f
}

func (f OneoffsForm) rows() []int {
	n := len(f.Paths) + 1
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func (f OneoffsForm) path(i int) string {
	if i < len(f.Paths) {
		return f.Paths[i]
	}
	return ""
}

func (f OneoffsForm) content(i int) string {
	if i < len(f.Contents) {
		return f.Contents[i]
	}
	return ""
}
