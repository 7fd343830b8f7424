package store

// Authorization rules, one function per action and object. Handlers ask
// these and nothing else; a test holds them as a full matrix.

// CanSeeDevserver: the owner and admins.
func CanSeeDevserver(u User, d Devserver) bool {
	return (d.OwnerID != 0 && u.ID == d.OwnerID) || u.Has(RoleAdmin)
}

// CanManageDevserver: the owner and admins may release, migrate, share,
// restore and change features.
func CanManageDevserver(u User, d Devserver) bool {
	return (d.OwnerID != 0 && u.ID == d.OwnerID) || u.Has(RoleAdmin)
}

// CanListAllDevservers: admins.
func CanListAllDevservers(u User) bool { return u.Has(RoleAdmin) }
