package store

// Authorization rules, one function per action and object. Handlers ask
// these and nothing else; a test holds them as a full matrix.

// CanSeeDevserver: the owner, the people it is shared with (d.ShareeIDs, as
// the store loads it) and admins may see a devserver, its connection details,
// its shares and its backups.
func CanSeeDevserver(u User, d Devserver) bool {
	return (d.OwnerID != 0 && u.ID == d.OwnerID) || (u.ID != 0 && d.SharedWith(u.ID)) || u.Has(RoleAdmin)
}

// CanManageDevserver: the owner and admins may release, migrate, share,
// restore and change features.
func CanManageDevserver(u User, d Devserver) bool {
	return (d.OwnerID != 0 && u.ID == d.OwnerID) || u.Has(RoleAdmin)
}

// CanListAllDevservers: admins.
func CanListAllDevservers(u User) bool { return u.Has(RoleAdmin) }

// CanExtendDevserver: the owner alone extends a lease (API.md); admins
// release, but do not lengthen someone else's hold on capacity.
func CanExtendDevserver(u User, d Devserver) bool { return d.OwnerID != 0 && u.ID == d.OwnerID }

// CanShellDevserver: the owner and the people it is shared with may open a
// shell in a devserver (SSH gateway, web terminal). Admins may not, unless
// they are one of those: a shell is the person's own workspace.
func CanShellDevserver(u User, d Devserver) bool {
	return u.ID != 0 && ((d.OwnerID != 0 && u.ID == d.OwnerID) || d.SharedWith(u.ID))
}

// CanRestoreBackup: whoever manages the target devserver may restore onto it
// a backup of the same owner's that still exists; anyone else's backup is
// not found.
func CanRestoreBackup(u User, b Backup, target Devserver) bool {
	return CanManageDevserver(u, target) && b.OwnerID == target.OwnerID && b.State != BackupDeleted
}

// CanSeeContainer: the owner and admins (API.md: owner, admin).
func CanSeeContainer(u User, c Container) bool {
	return (c.OwnerID != 0 && u.ID == c.OwnerID) || u.Has(RoleAdmin)
}

// CanManageContainer: the owner and admins may end a container.
func CanManageContainer(u User, c Container) bool { return CanSeeContainer(u, c) }

// CanRenewContainer: the owner alone takes a fresh one, which is theirs.
func CanRenewContainer(u User, c Container) bool { return c.OwnerID != 0 && u.ID == c.OwnerID }

// CanShellContainer: the owner alone opens a shell in a container; it is
// their workspace, as a devserver is.
func CanShellContainer(u User, c Container) bool { return c.OwnerID != 0 && u.ID == c.OwnerID }

// CanEditContainerCatalogue: admins edit types, profiles and pools.
func CanEditContainerCatalogue(u User) bool { return u.Has(RoleAdmin) }

// CanWriteSev: admins and reviewers open, edit and move SEVs, write their
// reports and broadcast their updates; everyone reads them and adds notes.
func CanWriteSev(u User) bool { return u.Has(RoleAdmin) || u.Has(RoleReviewer) }

// CanReviewSev: reviewers (and admins) record review meetings and sign off.
func CanReviewSev(u User) bool { return u.Has(RoleAdmin) || u.Has(RoleReviewer) }

// CanFileFollowup: reviewers and admins file a SEV's follow-ups.
func CanFileFollowup(u User) bool { return u.Has(RoleReviewer) || u.Has(RoleAdmin) }

// CanEditFollowup: reviewers and admins change anything about a follow-up.
func CanEditFollowup(u User) bool { return u.Has(RoleReviewer) || u.Has(RoleAdmin) }

// CanSetFollowupStatus: reviewers, admins and the follow-up's owner change its
// status (and the reason for won't do); the owner changes nothing else.
func CanSetFollowupStatus(u User, f Followup) bool {
	return CanEditFollowup(u) || (f.OwnerID != 0 && u.ID == f.OwnerID)
}

// CanRunStorms: admins start storms and dark storms and recover regions
// (and only after a recent sign-in, which the handlers check).
func CanRunStorms(u User) bool { return u.Has(RoleAdmin) }

// CanReplaceAfterStorm: the owner alone asks for a replacement of a
// devserver a storm touched, and chooses what becomes of it: it is theirs.
func CanReplaceAfterStorm(u User, e StormDevserver) bool { return u.ID != 0 && e.OwnerID == u.ID }

// CanDrainRegions: admins drain and undrain regions and see drains.
func CanDrainRegions(u User) bool { return u.Has(RoleAdmin) }

// CanMoveOutOfDrain: the owner alone starts the "move me" of a physical
// devserver a drain asked them to move.
func CanMoveOutOfDrain(u User, d Devserver) bool { return u.ID != 0 && d.OwnerID == u.ID }

// CanRunHostOps: admins see hosts, put them into maintenance and
// decommission them.
func CanRunHostOps(u User) bool { return u.Has(RoleAdmin) }

// CanMoveOffHost: the owner and admins move a devserver off a host in
// maintenance or being decommissioned.
func CanMoveOffHost(u User, d Devserver) bool { return CanManageDevserver(u, d) }

// CanRage: the owner and admins send the platform team a diagnostic bundle
// of a devserver.
func CanRage(u User, d Devserver) bool { return CanManageDevserver(u, d) }

// CanRestart: the owner and admins ask for a devserver's restart (the
// remediation steps); sharees see its health but may not.
func CanRestart(u User, d Devserver) bool { return CanManageDevserver(u, d) }

// CanSeeHealth: admins see health by cause and the support queue with its
// diagnostic bundles.
func CanSeeHealth(u User) bool { return u.Has(RoleAdmin) }
