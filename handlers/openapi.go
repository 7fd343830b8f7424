package handlers

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/swaggest/jsonschema-go"
	"github.com/swaggest/openapi-go"
	"github.com/swaggest/openapi-go/openapi31"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/jobs/runbook"
	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
)

// This file is the OpenAPI 3.1 document of /api/v1, served at
// GET /api/v1/openapi.json. The table apiOperations names, for every route,
// the Go types the handler decodes and encodes; the schemas are reflected
// from those same types, so the document follows the code. openapi_test.go
// holds the table against the router and real answers against the schemas.

// apiOperation is one documented route.
type apiOperation struct {
	Method, Path string // Path is the chi pattern under /api/v1
	Summary      string
	Who          string // who may call it, as API.md says
	// Body is the JSON request body (nil: none).
	Body any
	// Resp is the success answer's body, with Status (nil: 204, no body).
	Resp   any
	Status int
	// Also are other success answers (a long operation already done, a dry run).
	Also []apiAnswer
	// Query are the query parameters the handler reads (see apiQueryParams).
	Query []string
	// Errors are the error statuses besides those every such route has
	// (401; 403 for changes; 404 with path parameters; 400/413/415/422 with a body).
	Errors []int
	// Public routes need no credentials.
	Public bool
	// Forbidden: some callers are refused with 403 even for reads (admin
	// routes, policies).
	Forbidden bool
}

// apiAnswer is one more success answer of an operation.
type apiAnswer struct {
	Status int
	Body   any
	Why    string
}

// The API's error envelope, as web.Error writes it.
type oaErrorBody struct {
	Error oaErrorDetail `json:"error" required:"true"`
}

type oaErrorDetail struct {
	Code    string            `json:"code" required:"true" description:"Stable snake_case code, such as not_found, invalid, no_capacity."`
	Message string            `json:"message" required:"true" description:"A human sentence."`
	Fields  map[string]string `json:"fields,omitempty" description:"For 422: what is wrong with each field."`
}

// Mirrors of answers the handlers build as maps.

// oaRunView is runJSON's answer: a runbook run with its progress.
type oaRunView struct {
	ID          int64            `json:"id" required:"true"`
	Runbook     string           `json:"runbook" required:"true"`
	Version     int              `json:"version" required:"true"`
	State       string           `json:"state" required:"true"`
	Progress    int              `json:"progress" required:"true" minimum:"0" maximum:"100"`
	Params      map[string]any   `json:"params" required:"true"`
	Error       string           `json:"error" required:"true"`
	StartedBy   string           `json:"started_by" required:"true"`
	CreatedAt   time.Time        `json:"created_at" required:"true"`
	FinishedAt  *time.Time       `json:"finished_at" required:"true"`
	DeadlineAt  *time.Time       `json:"deadline_at" required:"true"`
	ParentRunID *int64           `json:"parent_run_id" required:"true"`
	Steps       []store.RunStep  `json:"steps" required:"true"`
	Timeline    []store.RunEvent `json:"timeline" required:"true"`
	Logs        []store.RunEvent `json:"logs" required:"true"`
	NestedRuns  []store.Run      `json:"nested_runs" required:"true"`
}

// oaPlan is a runbook dry run's answer.
type oaPlan struct {
	DryRun bool         `json:"dry_run" required:"true"`
	Plan   runbook.Plan `json:"plan" required:"true"`
}

// oaFleetHealth is apiHealth's answer.
type oaFleetHealth struct {
	Since     time.Time                `json:"since" required:"true"`
	Causes    []store.CauseCount       `json:"causes" required:"true"`
	Recurring []store.RecurringFailure `json:"recurring" required:"true"`
	Open      []store.Remediation      `json:"open" required:"true"`
}

// oaBundle is bundleJSON's answer: a diagnostic bundle and its parts.
type oaBundle struct {
	Bundle store.DiagnosticBundle `json:"bundle" required:"true"`
	Parts  any                    `json:"parts" required:"true"`
}

type oaMarked struct {
	Marked int64 `json:"marked" required:"true"`
}

type oaStormReplaced struct {
	StormDevserver store.StormDevserver `json:"storm_devserver" required:"true"`
	Replacement    store.Devserver      `json:"replacement" required:"true"`
}

type oaSevReviewed struct {
	Review store.SevReview `json:"review" required:"true"`
	Sev    sevDocument     `json:"sev" required:"true"`
}

// Mirrors for the routes of the CLI login and health (issue 9) whose
// handlers decode or answer anonymous structs and maps.

type oaCLITokenRequest struct {
	Code     string `json:"code" required:"true"`
	Verifier string `json:"verifier" required:"true"`
}

type oaCLIUser struct {
	Email string `json:"email" required:"true"`
}

type oaCLIToken struct {
	Token  store.Token `json:"token" required:"true"`
	Secret string      `json:"secret" required:"true"`
	User   oaCLIUser   `json:"user" required:"true"`
}

// oaRestart is apiRestartDevserver's answer.
type oaRestart struct {
	Devserver   string                   `json:"devserver" required:"true"`
	Remediation store.RemediationSummary `json:"remediation" required:"true"`
}

type oaBundleUpload struct {
	Note      string         `json:"note,omitempty" maxLength:"2000"`
	Devserver string         `json:"devserver,omitempty"`
	Parts     map[string]any `json:"parts" required:"true" minProperties:"1" maxProperties:"20"`
}

type oaBundleUploaded struct {
	ID          int64     `json:"id" required:"true"`
	State       string    `json:"state" required:"true"`
	RequestedBy string    `json:"requested_by" required:"true"`
	Devserver   string    `json:"devserver,omitempty"`
	CreatedAt   time.Time `json:"created_at" required:"true"`
}

// oaOpenAPIDocument is the OpenAPI document itself.
type oaOpenAPIDocument map[string]any

const (
	oaWhoAny      = "Any signed-in person."
	oaWhoAdmin    = "Admins."
	oaWhoOwner    = "The owner (sharees and admins may read: others get 404)."
	oaWhoOwnAdmin = "The owner and admins (others get 404, sharees 403)."
	oaWhoOwnOnly  = "The owner (sharees get 403, others 404)."
)

// apiOperations is every route under /api/v1.
var apiOperations = []apiOperation{
	{Method: "GET", Path: "/openapi.json", Summary: "This OpenAPI document", Who: "Anyone: no credentials needed.", Resp: oaOpenAPIDocument{}, Public: true},
	{Method: "GET", Path: "/me", Summary: "The caller", Who: oaWhoAny, Resp: store.User{}},
	{Method: "PATCH", Path: "/me", Summary: "Change the caller's home region", Who: oaWhoAny, Body: meRequest{}, Resp: store.User{}},
	{Method: "GET", Path: "/me/keys", Summary: "The caller's SSH public keys", Who: oaWhoAny, Resp: page[store.SSHKey]{}},
	{Method: "POST", Path: "/me/keys", Summary: "Add an SSH public key", Who: oaWhoAny, Body: keyRequest{}, Resp: store.SSHKey{}, Status: 201, Errors: []int{409}},
	{Method: "DELETE", Path: "/me/keys/{id}", Summary: "Delete an SSH public key", Who: "The key's owner."},
	{Method: "GET", Path: "/me/tokens", Summary: "The caller's personal access tokens", Who: oaWhoAny + " Newest first; revoked tokens are left out.", Resp: page[store.Token]{}, Query: []string{"limit", "cursor"}},
	{Method: "POST", Path: "/me/tokens", Summary: "Create a personal access token", Who: oaWhoAny + " A read-only token may not create tokens. name: 1-100 characters; scope: read or full; expires_at: RFC 3339, in the future, at most 366 days away (default 90 days). The secret is shown once and stored nowhere: a repeat with the same Idempotency-Key creates nothing and answers 409 secret_not_replayed.", Body: tokenRequest{}, Resp: createdToken{}, Status: 201, Errors: []int{409}},
	{Method: "DELETE", Path: "/me/tokens/current", Summary: "Revoke the token this request is made with (devport logout)", Who: oaWhoAny + " Only with a full-access token; a session gets 409 not_a_token.", Errors: []int{409}},
	{Method: "DELETE", Path: "/me/tokens/{id}", Summary: "Revoke a personal access token", Who: "The token's owner (others: 404). The next request with it is 401."},
	{Method: "GET", Path: "/me/oneoffs", Summary: "The caller's one-offs", Who: oaWhoAny, Resp: store.Oneoffs{}},
	{Method: "PUT", Path: "/me/oneoffs", Summary: "Replace the caller's one-offs", Who: oaWhoAny, Body: store.Oneoffs{}, Resp: store.Oneoffs{}},
	{Method: "GET", Path: "/me/preferences", Summary: "The caller's notification channels", Who: oaWhoAny, Resp: store.Preferences{}},
	{Method: "PUT", Path: "/me/preferences", Summary: "Choose notification channels", Who: oaWhoAny, Body: preferencesRequest{}, Resp: store.Preferences{}},
	{Method: "POST", Path: "/cli/token", Summary: "Exchange a CLI login code for a token", Who: "Anyone: no credentials; the code and its verifier are the proof. A bad, expired or used code or a wrong verifier: 400 invalid_grant.", Body: oaCLITokenRequest{}, Resp: oaCLIToken{}, Status: 201, Public: true},

	{Method: "GET", Path: "/policies/latencies", Summary: "Region latencies", Who: oaWhoAdmin, Resp: page[store.RegionLatency]{}, Forbidden: true},
	{Method: "PUT", Path: "/policies/latencies", Summary: "Set a region latency", Who: oaWhoAdmin, Body: latencyRequest{}, Resp: store.RegionLatency{}},
	{Method: "GET", Path: "/policies/leases", Summary: "Lease policies per flavour", Who: oaWhoAdmin, Resp: page[leasePolicyJSON]{}, Forbidden: true},
	{Method: "GET", Path: "/policies/leases/{flavor}", Summary: "A flavour's lease policy", Who: oaWhoAdmin, Resp: leasePolicyJSON{}, Forbidden: true},
	{Method: "PUT", Path: "/policies/leases/{flavor}", Summary: "Set a flavour's lease policy", Who: oaWhoAdmin, Body: leasePolicyRequest{}, Resp: leasePolicyJSON{}},
	{Method: "GET", Path: "/policies/quotas", Summary: "Quotas per role", Who: oaWhoAdmin, Resp: page[store.Quota]{}, Forbidden: true},
	{Method: "GET", Path: "/policies/quotas/{role}", Summary: "A role's quota", Who: oaWhoAdmin, Resp: store.Quota{}, Forbidden: true},
	{Method: "PUT", Path: "/policies/quotas/{role}", Summary: "Set a role's quota", Who: oaWhoAdmin, Body: quotaRequest{}, Resp: store.Quota{}},

	{Method: "GET", Path: "/regions", Summary: "Regions with their room per flavour", Who: oaWhoAny, Resp: page[regionView]{}},
	{Method: "GET", Path: "/flavors", Summary: "The flavour catalogue", Who: oaWhoAny, Resp: page[store.Flavor]{}},
	{Method: "GET", Path: "/features", Summary: "The feature catalogue", Who: oaWhoAny, Resp: page[store.Feature]{}},
	{Method: "PUT", Path: "/features/{feature}", Summary: "Roll out a feature version", Who: oaWhoAdmin, Body: bumpFeatureRequest{}, Resp: store.FeatureRollout{}, Status: 202, Errors: []int{409}},

	{Method: "GET", Path: "/devservers", Summary: "Own and shared devservers", Who: oaWhoAny + " Admins may list all with all=1.", Resp: page[store.Devserver]{}, Query: []string{"limit", "cursor", "region", "state", "all"}, Errors: []int{403}},
	{Method: "POST", Path: "/devservers", Summary: "Reserve a devserver", Who: oaWhoAny + " Answers 202 with the devserver on its way.", Body: reserveRequest{}, Resp: store.Devserver{}, Status: 202, Errors: []int{409, 429}},
	{Method: "GET", Path: "/devservers/{name}", Summary: "A devserver", Who: "Owner, sharees, admins; others 404.", Resp: store.Devserver{}},
	{Method: "POST", Path: "/devservers/{name}/release", Summary: "Release a devserver", Who: oaWhoOwnAdmin + " Backs up, then reclaims.", Resp: store.Devserver{}, Status: 202, Also: []apiAnswer{{200, store.Devserver{}, "Released already."}}, Errors: []int{409}},
	{Method: "POST", Path: "/devservers/{name}/extend", Summary: "Extend a devserver's lease", Who: "The owner, within the lease policy (admins and sharees get 403, others 404).", Body: extendRequest{}, Resp: store.Devserver{}, Errors: []int{409}},
	{Method: "GET", Path: "/devservers/{name}/health", Summary: "A devserver's health", Who: "Owner, sharees, admins; others 404.", Resp: store.OwnerHealth{}},
	{Method: "POST", Path: "/devservers/{name}/restart", Summary: "Restart an unhealthy devserver", Who: oaWhoOwnAdmin + " A remediation already open answers 202 with that one. Not ready or unreachable: 409 not_restartable.", Resp: oaRestart{}, Status: 202, Errors: []int{409}},
	{Method: "GET", Path: "/devservers/{name}/features", Summary: "A devserver's features", Who: oaWhoOwner, Resp: page[store.DevserverFeature]{}},
	{Method: "POST", Path: "/devservers/{name}/features", Summary: "Install a feature", Who: oaWhoOwnOnly, Body: featureRequest{}, Resp: store.DevserverFeature{}, Status: 202, Errors: []int{409}},
	{Method: "DELETE", Path: "/devservers/{name}/features/{feature}", Summary: "Remove a feature", Who: oaWhoOwnOnly, Resp: store.DevserverFeature{}, Status: 202, Errors: []int{409}},
	{Method: "POST", Path: "/devservers/{name}/oneoffs", Summary: "Apply the owner's one-offs again", Who: oaWhoOwnAdmin, Resp: store.Devserver{}, Status: 202, Errors: []int{409}},
	{Method: "POST", Path: "/devservers/{name}/migrate", Summary: "Migrate a devserver to another flavour or region", Who: oaWhoOwnAdmin, Body: migrateRequest{}, Resp: store.DevserverMigration{}, Status: 202, Errors: []int{409, 429}},
	{Method: "GET", Path: "/devservers/{name}/migration", Summary: "A devserver's latest migration", Who: oaWhoOwner, Resp: store.DevserverMigration{}},
	{Method: "GET", Path: "/devservers/{name}/shares", Summary: "A devserver's collaborators", Who: oaWhoOwner, Resp: page[store.Share]{}},
	{Method: "POST", Path: "/devservers/{name}/shares", Summary: "Share a devserver", Who: oaWhoOwnAdmin, Body: shareRequest{}, Resp: store.Share{}, Status: 201, Errors: []int{409}},
	{Method: "DELETE", Path: "/devservers/{name}/shares/{email}", Summary: "Stop sharing a devserver", Who: oaWhoOwnAdmin},
	{Method: "GET", Path: "/devservers/{name}/backups", Summary: "A devserver's backups", Who: oaWhoOwner, Resp: page[store.Backup]{}, Query: []string{"limit", "cursor"}},
	{Method: "POST", Path: "/devservers/{name}/backups", Summary: "Back a devserver up now", Who: oaWhoOwnOnly, Resp: store.Backup{}, Status: 202, Errors: []int{409, 429}},
	{Method: "POST", Path: "/devservers/{name}/restore", Summary: "Restore a backup onto a devserver", Who: oaWhoOwnOnly, Body: restoreRequest{}, Resp: restoreJSON{}, Status: 202, Errors: []int{409}},
	{Method: "GET", Path: "/devservers/{name}/restores", Summary: "A devserver's restores", Who: oaWhoOwner, Resp: page[restoreJSON]{}},
	{Method: "POST", Path: "/devservers/{name}/storm/replace", Summary: "Replace a devserver a storm took, from its backup", Who: oaWhoOwnOnly, Body: stormReplaceRequest{}, Resp: oaStormReplaced{}, Status: 202, Errors: []int{409}},
	{Method: "POST", Path: "/devservers/{name}/storm/choice", Summary: "Choose what happens to a devserver a storm took", Who: oaWhoOwnOnly, Body: stormChoiceRequest{}, Resp: store.StormDevserver{}, Errors: []int{409}},
	{Method: "POST", Path: "/devservers/{name}/rage", Summary: "Report a problem with a devserver (diagnostic bundle)", Who: oaWhoOwnAdmin, Body: rageRequest{}, Resp: store.DiagnosticBundle{}, Status: 202, Errors: []int{409, 429}},
	{Method: "POST", Path: "/devservers/{name}/move-off-host", Summary: "Move a devserver off its host", Who: oaWhoOwnAdmin, Resp: store.DevserverMigration{}, Status: 202, Errors: []int{409, 429}},

	{Method: "GET", Path: "/pools", Summary: "Devserver pools", Who: oaWhoAdmin, Resp: page[store.Pool]{}, Forbidden: true},
	{Method: "PUT", Path: "/pools/{region}/{flavor}", Summary: "Set a pool's target", Who: oaWhoAdmin, Body: poolRequest{}, Resp: store.Pool{}},
	{Method: "GET", Path: "/capacity", Summary: "Capacity per region and flavour, and the N-1 table", Who: oaWhoAdmin, Resp: store.CapacityReport{}, Forbidden: true},
	{Method: "GET", Path: "/containers/types", Summary: "On Demand types and hardware profiles", Who: oaWhoAny, Resp: store.Catalogue{}},
	{Method: "PUT", Path: "/containers/types/{name}", Summary: "Create or change an On Demand type", Who: oaWhoAdmin, Body: containerTypeRequest{}, Resp: store.ContainerType{}},
	{Method: "PUT", Path: "/containers/profiles/{name}", Summary: "Create or change a hardware profile", Who: oaWhoAdmin, Body: containerProfileRequest{}, Resp: store.ContainerProfile{}},
	{Method: "GET", Path: "/containers/pools", Summary: "On Demand container pools", Who: oaWhoAdmin, Resp: page[containerPoolJSON]{}, Forbidden: true},
	{Method: "PUT", Path: "/containers/pools/{region}/{type}/{profile}", Summary: "Set a container pool's target", Who: oaWhoAdmin, Body: containerPoolRequest{}, Resp: containerPoolJSON{}},
	{Method: "GET", Path: "/containers", Summary: "The caller's On Demand containers", Who: oaWhoAny + " Admins may list all with all=1.", Resp: page[store.Container]{}, Query: []string{"limit", "cursor", "region", "state", "ended", "all"}, Errors: []int{403}},
	{Method: "POST", Path: "/containers", Summary: "Request an On Demand container", Who: oaWhoAny, Body: containerRequestBody{}, Resp: store.Container{}, Status: 201, Errors: []int{409, 429}},
	{Method: "GET", Path: "/containers/{id}", Summary: "An On Demand container", Who: "The owner and admins; others 404.", Resp: store.Container{}},
	{Method: "DELETE", Path: "/containers/{id}", Summary: "End an On Demand container", Who: "The owner and admins; others 404.", Resp: store.Container{}, Status: 202, Also: []apiAnswer{{200, store.Container{}, "Ended already."}}, Errors: []int{409}},
	{Method: "POST", Path: "/containers/{id}/fresh", Summary: "Swap a container for a fresh one", Who: "The owner (admins get 403, others 404).", Resp: store.Container{}, Status: 201, Errors: []int{409, 429}},

	{Method: "GET", Path: "/notifications", Summary: "The caller's inbox", Who: oaWhoAny, Resp: page[store.Notification]{}, Query: []string{"limit", "cursor"}},
	{Method: "POST", Path: "/notifications/read-all", Summary: "Mark the whole inbox read", Who: oaWhoAny, Resp: oaMarked{}},
	{Method: "POST", Path: "/notifications/{id}/read", Summary: "Mark a notification read", Who: "The notification's recipient.", Resp: store.Notification{}},
	{Method: "GET", Path: "/tasks", Summary: "The caller's tasks", Who: oaWhoAny, Resp: page[store.Task]{}, Query: []string{"limit", "cursor"}},
	{Method: "POST", Path: "/tasks/{id}/done", Summary: "Mark a task done", Who: "The task's assignee.", Resp: store.Task{}, Errors: []int{409}},
	{Method: "GET", Path: "/banners", Summary: "Banners active for the caller", Who: oaWhoAny + " Admins may list every banner with all=1.", Resp: page[store.Banner]{}, Query: []string{"all"}, Errors: []int{400, 403}},
	{Method: "POST", Path: "/banners", Summary: "Create a banner", Who: oaWhoAdmin, Body: store.BannerInput{}, Resp: store.Banner{}, Status: 201},
	{Method: "PATCH", Path: "/banners/{id}", Summary: "Change a banner", Who: oaWhoAdmin, Body: store.BannerInput{}, Resp: store.Banner{}},
	{Method: "DELETE", Path: "/banners/{id}", Summary: "Delete a banner", Who: oaWhoAdmin},
	{Method: "GET", Path: "/deliveries", Summary: "The notification delivery log", Who: oaWhoAdmin, Resp: page[store.Delivery]{}, Query: []string{"limit", "cursor", "state", "channel"}, Forbidden: true},
	{Method: "POST", Path: "/deliveries/{id}/retry", Summary: "Retry a failed delivery", Who: oaWhoAdmin, Resp: store.Delivery{}, Errors: []int{409}},

	{Method: "GET", Path: "/runbooks", Summary: "Runbooks", Who: oaWhoAdmin, Resp: page[store.RunbookSummary]{}, Forbidden: true},
	{Method: "GET", Path: "/runbooks/{name}", Summary: "A runbook with its versions and newest runs", Who: oaWhoAdmin, Resp: runbookJSON{}, Forbidden: true},
	{Method: "POST", Path: "/runbooks/{name}/versions", Summary: "Add a runbook version", Who: oaWhoAdmin + " The body is JSON {yaml} or the YAML itself (Content-Type application/yaml or text/yaml).", Body: runbookSource{}, Resp: store.RunbookVersion{}, Status: 201},
	{Method: "POST", Path: "/runbooks/{name}/runs", Summary: "Start a run (or plan it with dry_run)", Who: oaWhoAdmin, Body: startRunRequest{}, Resp: oaRunView{}, Status: 202, Also: []apiAnswer{{200, oaPlan{}, "A dry run: the plan."}}, Errors: []int{409}},
	{Method: "GET", Path: "/runs/{id}", Summary: "A run: state, steps, timeline, logs", Who: oaWhoAdmin, Resp: oaRunView{}, Forbidden: true},
	{Method: "POST", Path: "/runs/{id}/cancel", Summary: "Cancel a run", Who: oaWhoAdmin, Resp: oaRunView{}, Errors: []int{409}},
	{Method: "POST", Path: "/runs/{id}/steps/{step}/complete", Summary: "Complete a manual step", Who: oaWhoAdmin, Resp: oaRunView{}, Errors: []int{409}},
	{Method: "POST", Path: "/runs/{id}/steps/{step}/retry", Summary: "Retry a failed step", Who: oaWhoAdmin, Resp: oaRunView{}, Status: 202, Errors: []int{409}},

	{Method: "POST", Path: "/regions/{code}/storm", Summary: "Storm a region (take it down)", Who: "Admins (storm runners).", Body: stormRequest{}, Resp: store.Storm{}, Status: 202, Errors: []int{409}},
	{Method: "POST", Path: "/regions/{code}/dark-storm", Summary: "Dark storm: wipe random devservers of a region", Who: "Admins (storm runners).", Body: stormRequest{}, Resp: store.Storm{}, Status: 202, Errors: []int{409}},
	{Method: "POST", Path: "/regions/{code}/recover", Summary: "End a region's storm", Who: "Admins (storm runners).", Body: recoverRequest{}, Resp: store.Recovery{}, Errors: []int{409}},
	{Method: "POST", Path: "/regions/{code}/drain", Summary: "Drain a region (or plan it with dry_run)", Who: oaWhoAdmin, Body: jobs.DrainRequest{}, Resp: drainResponse{}, Status: 202, Also: []apiAnswer{{200, planResponse{}, "A dry run: the plan."}}, Errors: []int{409}},
	{Method: "POST", Path: "/regions/{code}/undrain", Summary: "Cancel a region's drain", Who: oaWhoAdmin, Resp: store.Region{}, Errors: []int{409}},

	{Method: "GET", Path: "/sevs", Summary: "SEVs", Who: oaWhoAny, Resp: page[store.Sev]{}, Query: []string{"limit", "cursor", "state", "kind", "severity"}},
	{Method: "POST", Path: "/sevs", Summary: "Open a SEV", Who: "Admins and reviewers.", Body: store.SevInput{}, Resp: sevDocument{}, Status: 201},
	{Method: "GET", Path: "/sevs/{id}", Summary: "A SEV", Who: oaWhoAny, Resp: sevDocument{}},
	{Method: "PATCH", Path: "/sevs/{id}", Summary: "Change a SEV", Who: "Admins and reviewers.", Body: store.SevInput{}, Resp: sevDocument{}, Errors: []int{409}},
	{Method: "GET", Path: "/sevs/{id}/timeline", Summary: "A SEV's timeline", Who: oaWhoAny, Resp: page[store.SevTimelineItem]{}},
	{Method: "POST", Path: "/sevs/{id}/timeline", Summary: "Add a timeline note", Who: oaWhoAny, Body: sevNoteRequest{}, Resp: page[store.SevTimelineItem]{}, Status: 201},
	{Method: "POST", Path: "/sevs/{id}/broadcast", Summary: "Broadcast a SEV update", Who: "Admins and reviewers.", Body: store.SevBroadcast{}, Resp: store.SevBroadcastResult{}, Status: 201, Errors: []int{409}},
	{Method: "PUT", Path: "/sevs/{id}/subscription", Summary: "Subscribe to a SEV", Who: oaWhoAny, Resp: sevDocument{}},
	{Method: "DELETE", Path: "/sevs/{id}/subscription", Summary: "Unsubscribe from a SEV", Who: oaWhoAny, Resp: sevDocument{}},
	{Method: "GET", Path: "/sevs/{id}/report", Summary: "A SEV's incident report", Who: oaWhoAny, Resp: store.SevReport{}},
	{Method: "PUT", Path: "/sevs/{id}/report", Summary: "Write a SEV's incident report", Who: "Admins and reviewers.", Body: store.SevReportInput{}, Resp: store.SevReport{}, Errors: []int{409}},
	{Method: "GET", Path: "/sevs/{id}/review", Summary: "A SEV's review", Who: oaWhoAny, Resp: store.SevReview{}},
	{Method: "POST", Path: "/sevs/{id}/review", Summary: "Record a SEV's review and sign-off", Who: "Reviewers (and admins).", Body: store.SevReviewInput{}, Resp: oaSevReviewed{}, Errors: []int{409}},
	{Method: "GET", Path: "/sevs/{id}/followups", Summary: "A SEV's follow-ups", Who: oaWhoAny, Resp: page[followupJSON]{}, Query: []string{"limit", "cursor"}},
	{Method: "POST", Path: "/sevs/{id}/followups", Summary: "File a follow-up", Who: "Reviewers and admins.", Body: followupRequest{}, Resp: followupJSON{}, Status: 201},
	{Method: "GET", Path: "/sevs/{id}/export", Summary: "A SEV as Markdown", Who: oaWhoAny, Resp: ""},
	{Method: "GET", Path: "/reviews", Summary: "SEVs waiting for review", Who: oaWhoAny, Resp: page[store.ReviewQueueItem]{}},
	{Method: "GET", Path: "/followups", Summary: "The follow-up board", Who: oaWhoAny, Resp: page[followupJSON]{}, Query: []string{"limit", "cursor", "kind", "owner", "status", "overdue"}, Errors: []int{400, 422}},
	{Method: "PATCH", Path: "/followups/{id}", Summary: "Change a follow-up", Who: "Reviewers, admins and the follow-up's owner (status).", Body: followupPatchRequest{}, Resp: followupJSON{}, Errors: []int{409}},

	{Method: "GET", Path: "/hosts", Summary: "Hosts with their load", Who: oaWhoAdmin, Resp: page[store.HostLoad]{}, Forbidden: true},
	{Method: "POST", Path: "/hosts/{id}/maintenance", Summary: "Put a host into maintenance (or plan it with dry_run)", Who: oaWhoAdmin, Body: hostOpRequest{}, Resp: oaRunView{}, Status: 202, Also: []apiAnswer{{200, oaPlan{}, "A dry run: the plan."}}, Errors: []int{409}},
	{Method: "POST", Path: "/hosts/{id}/decommission", Summary: "Decommission a host (or plan it with dry_run)", Who: oaWhoAdmin, Body: hostOpRequest{}, Resp: oaRunView{}, Status: 202, Also: []apiAnswer{{200, oaPlan{}, "A dry run: the plan."}}, Errors: []int{409}},
	{Method: "GET", Path: "/health", Summary: "Fleet health: failure causes, recurring failures, open remediations", Who: oaWhoAdmin, Resp: oaFleetHealth{}, Forbidden: true},
	{Method: "GET", Path: "/support", Summary: "Diagnostic bundles", Who: oaWhoAdmin, Resp: page[store.DiagnosticBundle]{}, Forbidden: true},
	{Method: "GET", Path: "/support/{id}", Summary: "A diagnostic bundle with its parts", Who: oaWhoAdmin, Resp: oaBundle{}, Forbidden: true},
	{Method: "POST", Path: "/support/bundles", Summary: "Upload a CLI diagnostic bundle", Who: oaWhoAny + " 1 to 20 parts, the whole body at most 1 MiB; devserver: one the caller may see. At most one per person per 10 minutes (429). Opens a support task for every admin.", Body: oaBundleUpload{}, Resp: oaBundleUploaded{}, Status: 201, Errors: []int{429}},
}

// apiPathParams are the path parameters' types and meanings.
var apiPathParams = map[string]struct {
	typ  reflect.Type
	desc string
}{
	"name":    {reflect.TypeFor[string](), "The devserver's (or runbook's, type's, profile's) name."},
	"id":      {reflect.TypeFor[int64](), "The object's numeric ID."},
	"code":    {reflect.TypeFor[string](), "The region's code."},
	"region":  {reflect.TypeFor[string](), "The region's code."},
	"flavor":  {reflect.TypeFor[string](), "The flavour's name."},
	"role":    {reflect.TypeFor[string](), "The role."},
	"feature": {reflect.TypeFor[string](), "The feature's name."},
	"email":   {reflect.TypeFor[string](), "The collaborator's email."},
	"step":    {reflect.TypeFor[string](), "The step's name."},
	"type":    {reflect.TypeFor[string](), "The On Demand type."},
	"profile": {reflect.TypeFor[string](), "The hardware profile."},
}

// apiQueryParams are the query parameters, with their schema tags.
var apiQueryParams = map[string]struct {
	typ reflect.Type
	tag string
}{
	"limit":    {reflect.TypeFor[int](), `minimum:"1" maximum:"500" default:"50" description:"How many items (default 50, at most 500)."`},
	"cursor":   {reflect.TypeFor[string](), `description:"The next_cursor of the page before."`},
	"region":   {reflect.TypeFor[string](), `description:"Only this region's."`},
	"state":    {reflect.TypeFor[string](), `description:"Only those in this state."`},
	"all":      {reflect.TypeFor[string](), `enum:"0,1" description:"1: everyone's (admins only)."`},
	"ended":    {reflect.TypeFor[string](), `enum:"0,1" description:"1: ended ones too."`},
	"channel":  {reflect.TypeFor[string](), `description:"Only this channel's."`},
	"kind":     {reflect.TypeFor[string](), `description:"Only this kind."`},
	"severity": {reflect.TypeFor[string](), `description:"Only this severity (0-4 or SEV0-SEV4)."`},
	"owner":    {reflect.TypeFor[string](), `description:"Only this owner's (email)."`},
	"status":   {reflect.TypeFor[string](), `description:"Only those with this status."`},
	"overdue":  {reflect.TypeFor[string](), `enum:"0,1,on,true" description:"1: only overdue ones."`},
}

const apiBase = "/api/v1"

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// errorStatuses are the error answers an operation documents.
func (op apiOperation) errorStatuses() []int {
	var out []int
	mutating := op.Method != http.MethodGet
	if !op.Public {
		out = append(out, http.StatusUnauthorized)
		if mutating || op.Forbidden || strings.HasPrefix(op.Who, "Admins") || strings.Contains(op.Who, "sharees 403") {
			out = append(out, http.StatusForbidden)
		}
	}
	if strings.Contains(op.Path, "{") {
		out = append(out, http.StatusNotFound)
	}
	if op.Body != nil {
		out = append(out, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity)
	}
	if slices.Contains(op.Query, "cursor") || slices.Contains(op.Query, "limit") {
		out = append(out, http.StatusBadRequest)
	}
	if mutating && !op.Public {
		// A reused Idempotency-Key with another request.
		out = append(out, http.StatusUnprocessableEntity)
	}
	out = append(out, op.Errors...)
	slices.Sort(out)
	return slices.Compact(out)
}

// params is a struct type whose tags the reflector reads as the
// operation's path, query and header parameters.
func (op apiOperation) params() (any, error) {
	var fields []reflect.StructField
	add := func(t reflect.Type, tag string) {
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("P%d", len(fields)), Type: t, Tag: reflect.StructTag(tag)})
	}
	for _, m := range pathParam.FindAllStringSubmatch(op.Path, -1) {
		p, ok := apiPathParams[m[1]]
		if !ok {
			return nil, fmt.Errorf("%s %s: path parameter %q has no type in apiPathParams", op.Method, op.Path, m[1])
		}
		add(p.typ, fmt.Sprintf(`path:%q description:%q`, m[1], p.desc))
	}
	for _, q := range op.Query {
		p, ok := apiQueryParams[q]
		if !ok {
			return nil, fmt.Errorf("%s %s: query parameter %q is not in apiQueryParams", op.Method, op.Path, q)
		}
		add(p.typ, fmt.Sprintf(`query:%q %s`, q, p.tag))
	}
	if op.Method != http.MethodGet && !op.Public {
		add(reflect.TypeFor[string](), `header:"Idempotency-Key" maxLength:"200" description:"A repeat with the same key returns the first answer and does nothing twice."`)
	}
	if len(fields) == 0 {
		return nil, nil
	}
	return reflect.New(reflect.StructOf(fields)).Interface(), nil
}

// buildOpenAPI reflects the document from apiOperations.
func buildOpenAPI() ([]byte, error) {
	r := openapi31.NewReflector()
	r.Spec.Info.WithTitle("devport").WithVersion("v1").
		WithDescription("The devport HTTP API: every action of the UI, with the same authorization. " +
			"Errors are {\"error\":{\"code\",\"message\",\"fields\"}}; lists are {\"items\",\"next_cursor\"}; " +
			"long operations answer 202 with the object in its transitional state.")
	r.SpecEns().SetHTTPBearerTokenSecurity("bearer", "dpt_...", "A personal access token: Authorization: Bearer dpt_...")
	r.SpecEns().SetAPIKeySecurity("session", web.SessionCookie, openapi.InCookie, "The browser session cookie (same-origin calls).")
	names := map[string]reflect.Type{}
	r.JSONSchemaReflector().DefaultOptions = append(r.JSONSchemaReflector().DefaultOptions,
		jsonschema.InterceptDefName(func(t reflect.Type, name string) string {
			short := name
			for _, p := range []string{"HandlersOa", "Handlers", "Store", "Jobs", "Runbook"} {
				if s, ok := strings.CutPrefix(name, p); ok && s != "" {
					short = s
					break
				}
			}
			if strings.HasPrefix(t.Name(), "page[") && t.Kind() == reflect.Struct {
				// page[store.Devserver] is a DevserverList.
				elem := t.Field(0).Type.Elem().Name()
				short = strings.ToUpper(elem[:1]) + elem[1:] + "List"
			}
			if prev, ok := names[short]; ok && prev != t {
				return name
			}
			names[short] = t
			return short
		}))

	// Answers always carry the fields without omitempty: those are required
	// in answers (not in request bodies, which may leave fields out).
	inRequests := map[string]bool{}
	for _, op := range apiOperations {
		if op.Body != nil {
			requestFields(reflect.TypeOf(op.Body), inRequests, map[reflect.Type]bool{})
		}
	}
	r.JSONSchemaReflector().DefaultOptions = append(r.JSONSchemaReflector().DefaultOptions,
		jsonschema.InterceptProp(func(p jsonschema.InterceptPropParams) error {
			oc, ok := openapi.OperationCtx(p.Context)
			if !p.Processed || !ok || !oc.IsProcessingResponse() || inRequests[fieldKey(p.Field)] {
				return nil
			}
			name, opts, _ := strings.Cut(p.Field.Tag.Get("json"), ",")
			if name == "-" && opts == "" || strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,") {
				return nil
			}
			if !slices.Contains(p.ParentSchema.Required, p.Name) {
				p.ParentSchema.Required = append(p.ParentSchema.Required, p.Name)
			}
			return nil
		}))

	for _, op := range apiOperations {
		oc, err := r.NewOperationContext(op.Method, apiBase+op.Path)
		if err != nil {
			return nil, err
		}
		oc.SetSummary(op.Summary)
		oc.SetDescription("Who: " + op.Who)
		oc.SetID(operationID(op.Method, op.Path))
		if tag := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")[0]; tag != "" {
			oc.SetTags(tag)
		}
		if !op.Public {
			oc.AddSecurity("bearer")
			oc.AddSecurity("session")
		}
		ps, err := op.params()
		if err != nil {
			return nil, err
		}
		if ps != nil {
			oc.AddReqStructure(ps)
		}
		if op.Body != nil {
			oc.AddReqStructure(op.Body, openapi.WithContentType("application/json"))
			if _, ok := op.Body.(runbookSource); ok {
				oc.AddReqStructure(new(string), openapi.WithContentType("application/yaml"))
				oc.AddReqStructure(new(string), openapi.WithContentType("text/yaml"))
			}
		}
		status := op.Status
		if status == 0 {
			status = http.StatusOK
		}
		switch op.Resp.(type) {
		case nil:
			oc.AddRespStructure(nil, openapi.WithHTTPStatus(http.StatusNoContent))
		case string:
			oc.AddRespStructure(nil, openapi.WithHTTPStatus(status), openapi.WithContentType("text/markdown"))
		default:
			oc.AddRespStructure(op.Resp, openapi.WithHTTPStatus(status))
		}
		for _, a := range op.Also {
			oc.AddRespStructure(a.Body, openapi.WithHTTPStatus(a.Status), func(cu *openapi.ContentUnit) { cu.Description = a.Why })
		}
		for _, st := range op.errorStatuses() {
			oc.AddRespStructure(new(oaErrorBody), openapi.WithHTTPStatus(st))
		}
		if err := r.AddOperation(oc); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Method, op.Path, err)
		}
	}
	return json.MarshalIndent(r.Spec, "", "  ")
}

// requestFields collects the struct fields a request body type holds, at
// any depth.
func requestFields(t reflect.Type, into map[string]bool, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		into[fieldKey(f)] = true
		requestFields(f.Type, into, seen)
	}
}

func fieldKey(f reflect.StructField) string {
	return fmt.Sprintf("%s %s %s %v", f.Name, f.Type, f.Tag, f.Index)
}

// operationID is a stable name such as get_devservers_name_features.
func operationID(method, path string) string {
	id := strings.ToLower(method)
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		part = strings.Trim(part, "{}")
		part = strings.NewReplacer("-", "_", ".", "_").Replace(part)
		if part != "" {
			id += "_" + part
		}
	}
	return id
}

var openAPIDoc = sync.OnceValues(buildOpenAPI)

// apiOpenAPI serves the document; it needs no credentials.
func apiOpenAPI(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		doc, err := openAPIDoc()
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	}
}
