// Package handlers is devport's URL surface: HTML pages and /api/v1, one file
// per area. This file lists every route.
package handlers

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
)

// Enqueuer inserts a job in the transaction of the change that needs it.
type Enqueuer interface {
	Enqueue(ctx context.Context, tx *store.Tx, args jobs.Args) error
}

// Options is what the routes need.
type Options struct {
	// SSHPort is the SSH gateway's port, shown in connection details (0: off).
	SSHPort  int
	Log      *slog.Logger
	Store    *store.Store
	Jobs     Enqueuer
	Sessions *web.SessionStore
	// OIDC is nil when no identity provider is configured.
	OIDC     *web.OIDC
	DevLogin bool
	// Fleet is shown in every page's frame, such as "simulated fleet".
	Fleet string
	// Drivers open shells in devservers for the web terminal.
	Drivers *fleet.Fleet
	// Terminals holds the web terminal's sessions, for a shutdown to end
	// (nil: a set of its own, which nothing shuts down).
	Terminals *Terminals
	// Registry holds the metrics /metrics serves; the HTTP metrics are added to it.
	Registry *prometheus.Registry
	// Ready reports whether the portal can serve (database and job runner up).
	Ready  func(context.Context) error
	Static fs.FS
	// RequestTimeout bounds a request's work (default 30 s).
	RequestTimeout time.Duration
	// ContainerFreshness is how long a pooled container may wait before it
	// counts as stale on the capacity page (0: store.DefaultContainerFreshness).
	ContainerFreshness time.Duration
	// Channels are the notification channels people may choose besides the inbox.
	Channels store.Offered
}

// New returns the router with every route.
func New(o Options) http.Handler {
	log := o.Log.With("component", "web")
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.Terminals == nil {
		o.Terminals = NewTerminals()
	}
	auth := &web.Auth{Store: o.Store, Sessions: o.Sessions, Log: log, DevLogin: o.DevLogin, Fleet: o.Fleet, Channels: o.Channels}
	s, q := o.Store, o.Jobs

	r := chi.NewRouter()
	r.Use(web.RequestIDs, web.AccessLog(log, web.NewHTTPMetrics(o.Registry)), web.Recover(log), web.SecurityHeaders,
		middleware.Timeout(o.RequestTimeout), web.CrossOrigin(log), auth.Middleware, web.SSHGateway(o.SSHPort),
		// A read-only token changes nothing anywhere: page routes take tokens too.
		web.RequireWriteScope(log))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { web.Error(w, r, log, web.ErrRouteNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { web.Error(w, r, log, web.ErrMethod) })

	r.Get("/healthz", healthz)
	r.Get("/readyz", readyz(log, o.Ready))
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	r.Method(http.MethodGet, "/static/*", staticFiles(o.Static))

	// Sign-in.
	r.Get("/login", loginPage(log, o.OIDC != nil, o.DevLogin))
	if o.DevLogin {
		r.Post("/login/dev", devLogin(log, s, o.Sessions))
	}
	if o.OIDC != nil {
		r.Get("/auth/oidc/start", oidcStart(log, o.OIDC, o.Sessions))
		r.Get("/auth/oidc/callback", oidcCallback(log, s, o.OIDC, o.Sessions))
	}
	r.Post("/logout", logout(log, s, o.Sessions))

	// The browser sign-in of `devport login` (handlers/cli_login.go); the
	// code exchange has no session or token, so it sits outside /api/v1's
	// RequireUser.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Get("/cli/login", cliLoginPage(log))
		r.Post("/cli/login", approveCLILogin(log, s))
		r.Post("/cli/login/deny", denyCLILogin(log))
	})
	r.With(web.NoStore).Post("/api/v1/cli/token", apiCLIToken(log, s))

	// Pages.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Get("/", home)
		r.Get("/devservers", listDevservers(log, s))
		r.Get("/devservers/new", reserveForm(log, s))
		r.Get("/devservers/new/regions", reserveRegions(log, s))
		r.Post("/devservers", reserveDevserver(log, s, q, o.Sessions))
		r.Get("/devservers/{name}", showDevserver(log, s))
		r.Get("/devservers/{name}/terminal", terminalSection(log, s))
		r.Get("/devservers/{name}/terminal/ws", terminalSocket(log, s, o.Terminals, devserverShell(s, o.Drivers)))
		r.Post("/devservers/{name}/release", releaseDevserver(log, s, q, o.Sessions))
		r.Post("/devservers/{name}/extend", extendDevserver(log, s, o.Sessions))
	})

	// On Demand containers.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Get("/containers", listContainers(log, s))
		r.Get("/containers/new", containerRequestForm(log, s))
		r.Get("/containers/new/options", containerRequestForm(log, s))
		r.Post("/containers", postContainerRequest(log, s, q, o.Sessions))
		r.Get("/containers/{id}", showContainer(log, s))
		r.Get("/containers/{id}/access", showContainerAccess(log, s))
		r.Get("/containers/{id}/terminal/ws", terminalSocket(log, s, o.Terminals, containerShell(s, o.Drivers)))
		r.Post("/containers/{id}/end", postEndContainer(log, s, q, o.Sessions))
		r.Post("/containers/{id}/fresh", postFreshContainer(log, s, q, o.Sessions))
	})

	// Admin: the On Demand catalogue and the capacity page with container pools.
	fresh := freshnessOr(o.ContainerFreshness)
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.RequireRole(log, store.RoleAdmin), web.NoStore)
		r.Get("/admin/containers", adminContainers(log, s))
		r.Post("/admin/containers/types", saveTypeForm(log, s, o.Sessions, true))
		r.Post("/admin/containers/types/{name}", saveTypeForm(log, s, o.Sessions, false))
		r.Post("/admin/containers/profiles", saveProfileForm(log, s, o.Sessions, true))
		r.Post("/admin/containers/profiles/{name}", saveProfileForm(log, s, o.Sessions, false))
		r.Get("/admin/capacity", adminCapacity(log, s, fresh))
		r.Post("/admin/capacity/pools", saveContainerPoolForm(log, s, q, o.Sessions, fresh, true))
		r.Post("/admin/capacity/pools/{region}/{type}/{profile}", saveContainerPoolForm(log, s, q, o.Sessions, fresh, false))
	})

	// Admin: runbooks and their runs.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.RequireRole(log, store.RoleAdmin), web.NoStore)
		r.Get("/admin/runbooks", adminRunbooks(log, s))
		r.Post("/admin/runbooks", addRunbookVersionForm(log, s, o.Sessions, false))
		r.Get("/admin/runbooks/{name}", adminRunbook(log, s))
		r.Get("/admin/runbooks/{name}/plan", planRunbookForm(log, s))
		r.Post("/admin/runbooks/{name}/runs", startRunbookForm(log, s, q, o.Sessions))
		r.Post("/admin/runbooks/{name}/versions", addRunbookVersionForm(log, s, o.Sessions, true))
		r.Get("/admin/runs/{id}", adminRun(log, s))
		r.Post("/admin/runs/{id}/cancel", runAction(log, s, o.Sessions, cancelRun(s, q)))
		r.Post("/admin/runs/{id}/steps/{step}/retry", runAction(log, s, o.Sessions, retryRunStep(s, q)))
		r.Post("/admin/runs/{id}/steps/{step}/complete", runAction(log, s, o.Sessions, completeRunStep(s, q)))
	})

	// Admin: storms, dark storms and recoveries of a region (handlers/storms.go);
	// owners: the replacement of a devserver a storm touched.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), requirePolicy(log, store.CanRunStorms), web.NoStore)
		r.Get("/admin/storms", adminStormsPage(log, s))
		r.Get("/admin/regions/{code}/storm", adminStormPage(log, s))
		r.Post("/admin/regions/{code}/storm", stormForm(log, s, q, o.Sessions, store.StormKind))
		r.Post("/admin/regions/{code}/dark-storm", stormForm(log, s, q, o.Sessions, store.DarkStormKind))
		r.Post("/admin/regions/{code}/recover", recoverForm(log, s, q, o.Sessions))
	})
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Get("/devservers/{name}/storm", ownerStormPage(log, s))
		r.Post("/devservers/{name}/storm/replace", stormReplaceForm(log, s, q, o.Sessions))
		r.Post("/devservers/{name}/storm/choice", stormChoiceForm(log, s, o.Sessions))
	})

	// Admin: region drains (handlers/drains.go); owners: "move me" of a
	// physical devserver a drain asked them to move.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.RequireRole(log, store.RoleAdmin), web.NoStore)
		r.Get("/admin/drains", adminDrains(log, s))
		r.Get("/admin/regions/{code}/drain", adminDrain(log, s))
		r.Post("/admin/regions/{code}/drain", drainForm(log, s, q, o.Sessions))
		r.Post("/admin/regions/{code}/undrain", undrainForm(log, s, q, o.Sessions))
	})
	r.With(web.RequireUser(log), web.NoStore).Post("/devservers/{name}/move-me", moveMe(log, s, q, o.Sessions))

	// Admin: the landing page and pools.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.RequireRole(log, store.RoleAdmin), web.NoStore)
		r.Get("/admin", adminHome(log))
		r.Get("/admin/pools", adminPools(log, s))
		r.Post("/admin/pools", saveAdminPools(log, s, q, o.Sessions))
		r.Get("/admin/policies", adminPolicies(log, s))
		r.Post("/admin/policies/latencies", savePolicyForm(log, s, o.Sessions, latencyForm))
		r.Post("/admin/policies/leases", savePolicyForm(log, s, o.Sessions, leaseForm))
		r.Post("/admin/policies/quotas", savePolicyForm(log, s, o.Sessions, quotaForm))
	})

	// Features and one-offs.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Get("/devservers/{name}/features", showFeatures(log, s))
		r.Post("/devservers/{name}/features", addFeature(log, s, q, o.Sessions))
		r.Post("/devservers/{name}/features/{feature}/remove", removeFeature(log, s, q, o.Sessions))
		r.Post("/devservers/{name}/oneoffs", applyOneoffs(log, s, q, o.Sessions))
		r.Get("/devservers/{name}/migrate", showMigration(log, s))
		r.Get("/devservers/{name}/activity", showActivity(log, s))
		r.Post("/devservers/{name}/migrate", migrateDevserver(log, s, q, o.Sessions))
		r.Get("/profile/oneoffs", oneoffsPage(log, s))
		r.Post("/profile/oneoffs", saveOneoffs(log, s, o.Sessions))
	})
	// Sharing, SSH keys and the profile.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Post("/devservers/{name}/shares", shareDevserver(log, s, q, o.Sessions))
		r.Post("/devservers/{name}/shares/{email}/remove", unshareDevserver(log, s, q, o.Sessions))
		r.Get("/profile", profilePage(log, s))
		r.Post("/profile/keys", addKeyForm(log, s, q, o.Sessions))
		r.Post("/profile/keys/{id}/delete", deleteKeyForm(log, s, q, o.Sessions))
		r.Post("/profile/tokens", createTokenForm(log, s))
		r.Post("/profile/tokens/{id}/revoke", revokeTokenForm(log, s, o.Sessions))
		r.Post("/profile/home-region", saveHomeRegion(log, s, o.Sessions))
	})
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.RequireRole(log, store.RoleAdmin), web.NoStore)
		r.Get("/admin/features", adminFeatures(log, s))
		r.Post("/admin/features/{feature}/version", adminBumpFeature(log, s, q, o.Sessions))
	})
	// Backups, restores and the inbox.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Get("/devservers/{name}/backups", showBackups(log, s))
		r.Post("/devservers/{name}/backups", backUpDevserver(log, s, q, o.Sessions))
		r.Post("/backups/{id}/restore", restoreBackup(log, s, q, o.Sessions))
		r.Get("/inbox", showInbox(log, s))
		r.Post("/inbox/read-all", readAllNotifications(log, s, o.Sessions))
		r.Post("/inbox/{id}/read", readNotification(log, s))
	})

	// Communications: tasks, notification channels, banners and the delivery log.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		r.Get("/tasks", showTasks(log, s))
		r.Post("/tasks/{id}/done", postTaskDone(log, s, o.Sessions))
		r.Post("/profile/preferences", postPreferences(log, s, o.Channels, o.Sessions))
	})
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.RequireRole(log, store.RoleAdmin), web.NoStore)
		r.Get("/admin/banners", adminBanners(log, s))
		r.Post("/admin/banners", saveBannerForm(log, s, o.Sessions, true))
		r.Get("/admin/banners/{id}", adminBannerEdit(log, s))
		r.Post("/admin/banners/{id}", saveBannerForm(log, s, o.Sessions, false))
		r.Post("/admin/banners/{id}/delete", deleteBannerForm(log, s, o.Sessions))
		r.Get("/admin/deliveries", adminDeliveries(log, s, o.Channels))
		r.Post("/admin/deliveries/{id}/retry", retryDeliveryForm(log, s, o.Sessions))
	})

	// SEVs: everyone reads them and adds timeline notes; admins and reviewers
	// write them; reviewers (and admins) review them.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		sevWrite, sevReview := requirePolicy(log, store.CanWriteSev), requirePolicy(log, store.CanReviewSev)
		r.Get("/sevs", listSevs(log, s))
		r.With(sevWrite).Get("/sevs/new", newSevForm(log, s))
		r.With(sevWrite).Post("/sevs", saveSevForm(log, s, o.Sessions, true))
		r.Get("/sevs/{id}", showSev(log, s))
		r.With(sevWrite).Get("/sevs/{id}/edit", editSevForm(log, s))
		r.With(sevWrite).Post("/sevs/{id}", saveSevForm(log, s, o.Sessions, false))
		r.With(sevWrite).Post("/sevs/{id}/state", sevStateForm(log, s, o.Sessions))
		r.Post("/sevs/{id}/timeline", sevNoteForm(log, s, o.Sessions))
		r.With(sevWrite).Post("/sevs/{id}/broadcast", sevBroadcastForm(log, s, o.Sessions))
		r.Post("/sevs/{id}/subscription", sevSubscriptionForm(log, s, o.Sessions))
		r.With(sevWrite).Get("/sevs/{id}/report/edit", sevReportEdit(log, s))
		r.With(sevWrite).Post("/sevs/{id}/report", saveSevReportForm(log, s, o.Sessions))
		r.With(sevReview).Get("/sevs/{id}/review", sevReviewForm(log, s))
		r.With(sevReview).Post("/sevs/{id}/review", saveSevReviewForm(log, s, o.Sessions))
		r.Get("/reviews", showReviews(log, s))
	})

	// Follow-ups, SEV metrics and exports: everyone reads them; reviewers and
	// admins file follow-ups; a follow-up's owner changes its status too.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		fileFollowups := requirePolicy(log, store.CanFileFollowup)
		r.Get("/followups", showFollowupBoard(log, s))
		r.Post("/followups/{id}", setFollowupStatusForm(log, s, o.Sessions))
		r.With(fileFollowups).Get("/sevs/{id}/followups/new", newFollowupPage(log, s))
		r.With(fileFollowups).Post("/sevs/{id}/followups", fileFollowupForm(log, s, o.Sessions))
		r.Get("/sevs/metrics", showSevMetrics(log, s))
		r.Get("/sevs/{id}/export.md", exportSev(log, s))
	})

	// Hosts (maintenance, decommissioning), devserver health and the
	// support queue: admins. Rage and moving off a host: owner and admins.
	r.Group(func(r chi.Router) {
		r.Use(web.RequireUser(log), web.NoStore)
		hostOps, health := requirePolicy(log, store.CanRunHostOps), requirePolicy(log, store.CanSeeHealth)
		r.With(hostOps).Get("/admin/hosts", adminHosts(log, s))
		r.With(hostOps).Post("/admin/hosts/{id}/maintenance", hostOpForm(log, s, q, o.Sessions, store.HostOpMaintenance))
		r.With(hostOps).Post("/admin/hosts/{id}/decommission", hostOpForm(log, s, q, o.Sessions, store.HostOpDecommission))
		r.With(health).Get("/admin/health", adminHealth(log, s))
		r.With(health).Get("/admin/support", adminSupport(log, s))
		r.With(health).Get("/admin/support/{id}", adminBundle(log, s))
		r.Post("/devservers/{name}/rage", rageForm(log, s, q, o.Sessions))
		r.Post("/devservers/{name}/restart", restartForm(log, s, q, o.Sessions))
		r.Get("/devservers/{name}/move-off-host", showMoveOffHost(log, s))
		r.Post("/devservers/{name}/move-off-host", postMoveOffHost(log, s, q, o.Sessions))
	})

	// The API's OpenAPI document (handlers/openapi.go): no credentials needed.
	r.Get("/api/v1/openapi.json", apiOpenAPI(log))
	// The API: every action of the UI, with the same authorization.
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(web.RequireUser(log), web.RequireWriteScope(log), web.NoStore, web.Idempotency(log, s))
		r.NotFound(func(w http.ResponseWriter, r *http.Request) { web.Error(w, r, log, web.ErrRouteNotFound) })
		r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { web.Error(w, r, log, web.ErrMethod) })
		r.Get("/me", apiMe)
		r.Patch("/me", apiPatchMe(log, s))
		r.Group(func(r chi.Router) {
			r.Use(web.RequireRole(log, store.RoleAdmin))
			r.Get("/policies/latencies", apiLatencies(log, s))
			r.Put("/policies/latencies", apiSetLatency(log, s))
			r.Get("/policies/leases", apiLeasePolicies(log, s))
			r.Get("/policies/leases/{flavor}", apiLeasePolicy(log, s))
			r.Put("/policies/leases/{flavor}", apiSetLeasePolicy(log, s))
			r.Get("/policies/quotas", apiQuotas(log, s))
			r.Get("/policies/quotas/{role}", apiQuota(log, s))
			r.Put("/policies/quotas/{role}", apiSetQuota(log, s))
		})
		r.Get("/regions", apiRegions(log, s))
		r.Get("/flavors", apiFlavors(log, s))
		r.Get("/features", apiFeatures(log, s))
		r.Get("/devservers", apiListDevservers(log, s))
		r.Post("/devservers", apiReserveDevserver(log, s, q))
		r.Get("/devservers/{name}", apiShowDevserver(log, s))
		r.Post("/devservers/{name}/release", apiReleaseDevserver(log, s, q))
		r.Post("/devservers/{name}/extend", apiExtendDevserver(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Get("/pools", apiPools(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Put("/pools/{region}/{flavor}", apiSetPool(log, s, q))
		r.With(web.RequireRole(log, store.RoleAdmin)).Put("/containers/types/{name}", apiSaveContainerType(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Put("/containers/profiles/{name}", apiSaveContainerProfile(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Get("/containers/pools", apiContainerPools(log, s, fresh))
		r.With(web.RequireRole(log, store.RoleAdmin)).Get("/capacity", apiCapacity(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Put("/containers/pools/{region}/{type}/{profile}", apiSetContainerPool(log, s, q, fresh))
		r.Get("/devservers/{name}/features", apiDevserverFeatures(log, s))
		r.Post("/devservers/{name}/features", apiAddFeature(log, s, q))
		r.Delete("/devservers/{name}/features/{feature}", apiRemoveFeature(log, s, q))
		r.Post("/devservers/{name}/oneoffs", apiApplyOneoffs(log, s, q))
		r.Post("/devservers/{name}/migrate", apiMigrateDevserver(log, s, q))
		r.Get("/devservers/{name}/migration", apiShowMigration(log, s))
		r.Get("/me/oneoffs", apiGetOneoffs(log, s))
		r.Put("/me/oneoffs", apiPutOneoffs(log, s))
		r.Get("/devservers/{name}/shares", apiListShares(log, s))
		r.Post("/devservers/{name}/shares", apiAddShare(log, s, q))
		r.Delete("/devservers/{name}/shares/{email}", apiRemoveShare(log, s, q))
		r.Get("/me/keys", apiListKeys(log, s))
		r.Post("/me/keys", apiAddKey(log, s, q))
		r.Delete("/me/keys/{id}", apiDeleteKey(log, s, q))
		r.Get("/me/tokens", apiListTokens(log, s))
		// Its answer holds the secret: a repeat with its Idempotency-Key gets
		// 409 secret_not_replayed, and the secret is kept nowhere.
		r.Post("/me/tokens", apiCreateToken(log, s))
		r.Delete("/me/tokens/current", apiRevokeCurrentToken(log, s))
		r.Delete("/me/tokens/{id}", apiRevokeToken(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Put("/features/{feature}", apiBumpFeature(log, s, q))
		r.Get("/devservers/{name}/backups", apiListBackups(log, s))
		r.Post("/devservers/{name}/backups", apiBackUpDevserver(log, s, q))
		r.Post("/devservers/{name}/restore", apiRestoreBackup(log, s, q))
		r.Get("/devservers/{name}/restores", apiListRestores(log, s))
		r.Get("/containers/types", apiContainerTypes(log, s))
		r.Get("/containers", apiListContainers(log, s))
		r.Post("/containers", apiRequestContainer(log, s, q))
		r.Get("/containers/{id}", apiShowContainer(log, s))
		r.Delete("/containers/{id}", apiEndContainer(log, s, q))
		r.Post("/containers/{id}/fresh", apiFreshContainer(log, s, q))
		r.Get("/notifications", apiListNotifications(log, s))
		r.Post("/notifications/read-all", apiReadAllNotifications(log, s))
		r.Post("/notifications/{id}/read", apiReadNotification(log, s))
		r.Group(func(r chi.Router) {
			r.Use(web.RequireRole(log, store.RoleAdmin))
			r.Get("/runbooks", apiRunbooks(log, s))
			r.Get("/runbooks/{name}", apiRunbook(log, s))
			r.Post("/runbooks/{name}/versions", apiAddRunbookVersion(log, s))
			r.Post("/runbooks/{name}/runs", apiStartRun(log, s, q))
			r.Get("/runs/{id}", apiShowRun(log, s))
			r.Post("/runs/{id}/cancel", apiRunAction(log, s, http.StatusOK, cancelRun(s, q)))
			r.Post("/runs/{id}/steps/{step}/complete", apiRunAction(log, s, http.StatusOK, completeRunStep(s, q)))
			r.Post("/runs/{id}/steps/{step}/retry", apiRunAction(log, s, http.StatusAccepted, retryRunStep(s, q)))
		})
		r.With(requirePolicy(log, store.CanRunStorms)).Post("/regions/{code}/storm", apiStorm(log, s, q, store.StormKind))
		r.With(requirePolicy(log, store.CanRunStorms)).Post("/regions/{code}/dark-storm", apiStorm(log, s, q, store.DarkStormKind))
		r.With(requirePolicy(log, store.CanRunStorms)).Post("/regions/{code}/recover", apiRecover(log, s, q))
		r.With(web.RequireRole(log, store.RoleAdmin)).Post("/regions/{code}/drain", apiDrainRegion(log, s, q))
		r.With(web.RequireRole(log, store.RoleAdmin)).Post("/regions/{code}/undrain", apiUndrainRegion(log, s, q))
		r.Post("/devservers/{name}/storm/replace", apiStormReplace(log, s, q))
		r.Post("/devservers/{name}/storm/choice", apiStormChoice(log, s))
		r.Get("/tasks", apiListTasks(log, s))
		r.Post("/tasks/{id}/done", apiTaskDone(log, s))
		r.Get("/me/preferences", apiGetPreferences(log, s))
		r.Put("/me/preferences", apiPutPreferences(log, s, o.Channels))
		r.Get("/banners", apiListBanners(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Post("/banners", apiCreateBanner(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Patch("/banners/{id}", apiPatchBanner(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Delete("/banners/{id}", apiDeleteBanner(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Get("/deliveries", apiListDeliveries(log, s))
		r.With(web.RequireRole(log, store.RoleAdmin)).Post("/deliveries/{id}/retry", apiRetryDelivery(log, s))
		sevWrite, sevReview := requirePolicy(log, store.CanWriteSev), requirePolicy(log, store.CanReviewSev)
		r.Get("/sevs", apiListSevs(log, s))
		r.With(sevWrite).Post("/sevs", apiCreateSev(log, s))
		r.Get("/sevs/{id}", apiShowSev(log, s))
		r.With(sevWrite).Patch("/sevs/{id}", apiPatchSev(log, s))
		r.Get("/sevs/{id}/timeline", apiSevTimeline(log, s))
		r.Post("/sevs/{id}/timeline", apiAddSevTimeline(log, s))
		r.With(sevWrite).Post("/sevs/{id}/broadcast", apiBroadcastSev(log, s))
		r.Put("/sevs/{id}/subscription", apiSevSubscription(log, s, true))
		r.Delete("/sevs/{id}/subscription", apiSevSubscription(log, s, false))
		r.Get("/sevs/{id}/report", apiSevReport(log, s))
		r.With(sevWrite).Put("/sevs/{id}/report", apiPutSevReport(log, s))
		r.Get("/sevs/{id}/review", apiSevReview(log, s))
		r.With(sevReview).Post("/sevs/{id}/review", apiPostSevReview(log, s))
		r.Get("/reviews", apiReviewQueue(log, s))
		r.Get("/sevs/{id}/followups", apiSevFollowups(log, s))
		r.With(requirePolicy(log, store.CanFileFollowup)).Post("/sevs/{id}/followups", apiFileFollowup(log, s))
		r.Get("/followups", apiFollowupBoard(log, s))
		r.Patch("/followups/{id}", apiPatchFollowup(log, s))
		r.Get("/sevs/{id}/export", exportSev(log, s))
		hostOps, health := requirePolicy(log, store.CanRunHostOps), requirePolicy(log, store.CanSeeHealth)
		r.With(hostOps).Get("/hosts", apiHosts(log, s))
		r.With(hostOps).Post("/hosts/{id}/maintenance", apiHostOp(log, s, q, store.HostOpMaintenance))
		r.With(hostOps).Post("/hosts/{id}/decommission", apiHostOp(log, s, q, store.HostOpDecommission))
		r.With(health).Get("/health", apiHealth(log, s))
		r.With(health).Get("/support", apiSupport(log, s))
		r.With(health).Get("/support/{id}", apiBundle(log, s))
		r.Post("/devservers/{name}/rage", apiRage(log, s, q))
		r.Post("/devservers/{name}/move-off-host", apiMoveOffHost(log, s, q))
		r.Get("/devservers/{name}/health", apiDevserverHealth(log, s))
		r.Post("/devservers/{name}/restart", apiRestartDevserver(log, s, q))
		r.Post("/support/bundles", apiUploadBundle(log, s))
	})
	return r
}

func home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/devservers", http.StatusSeeOther)
}

func staticFiles(fsys fs.FS) http.Handler {
	files := http.StripPrefix("/static/", http.FileServerFS(fsys))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}
