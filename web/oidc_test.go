package web

import (
	"slices"
	"testing"
)

func TestRolesFromGroups(t *testing.T) {
	admins := []string{"devport-admins", "platform"}
	reviewers := []string{"devport-reviewers"}
	tests := []struct {
		name   string
		groups []string
		want   []string
	}{
		{"makes everyone an engineer", nil, []string{"engineer"}},
		{"ignores groups that map to no role", []string{"staff", "everyone"}, []string{"engineer"}},
		{"matches group names exactly", []string{"Devport-Admins", "devport-admins-old", " devport-reviewers"}, []string{"engineer"}},
		{"adds admin for any admin group", []string{"staff", "platform"}, []string{"engineer", "admin"}},
		{"adds reviewer for a reviewer group", []string{"devport-reviewers"}, []string{"engineer", "reviewer"}},
		{"adds each role once", []string{"platform", "devport-admins", "devport-reviewers", "platform"}, []string{"engineer", "admin", "reviewer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RolesFromGroups(tt.groups, admins, reviewers); !slices.Equal(got, tt.want) {
				t.Errorf("RolesFromGroups(%q) = %q, want %q", tt.groups, got, tt.want)
			}
		})
	}

	t.Run("grants nothing when no groups are configured", func(t *testing.T) {
		if got := RolesFromGroups([]string{"devport-admins", ""}, nil, nil); !slices.Equal(got, []string{"engineer"}) {
			t.Errorf("RolesFromGroups with no configured groups = %q, want [engineer]", got)
		}
	})
}
