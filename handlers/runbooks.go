package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/jobs/runbook"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// Runbooks and their runs: admins only (the routes put every one of these
// behind web.RequireRole(admin)).

func runbooksView(ctx context.Context, s *store.Store) (views.RunbooksView, error) {
	var v views.RunbooksView
	var err error
	if v.Runbooks, err = s.Runbooks(ctx); err != nil {
		return v, err
	}
	if v.Runs, err = s.Runs(ctx, "", 20); err != nil {
		return v, err
	}
	reg := jobs.RunbookRegistry()
	for _, op := range reg {
		v.Operations = append(v.Operations, op)
	}
	sort.Slice(v.Operations, func(i, j int) bool { return v.Operations[i].Name < v.Operations[j].Name })
	return v, nil
}

func adminRunbooks(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := runbooksView(r.Context(), s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminRunbooksPage(v), nil)
	}
}

// runbookView loads a runbook's page, showing version (0: the newest).
func runbookView(ctx context.Context, s *store.Store, name string, version int) (views.RunbookView, error) {
	v := views.RunbookView{Name: name, Values: map[string]string{}, Errors: map[string]string{}}
	var err error
	if v.Versions, err = s.RunbookVersions(ctx, name); err != nil {
		return v, err
	}
	v.Shown = v.Versions[0]
	if version > 0 {
		found := false
		for _, ver := range v.Versions {
			if ver.Version == version {
				v.Shown, found = ver, true
			}
		}
		if !found {
			return v, store.ErrNotFound
		}
	}
	d, ps := runbook.Parse([]byte(v.Shown.YAML))
	if len(ps) > 0 {
		return v, fmt.Errorf("runbook %s version %d: %w", name, v.Shown.Version, ps.Err())
	}
	v.Def = d
	v.NewYAML = v.Versions[0].YAML
	v.Runs, err = s.Runs(ctx, name, 20)
	return v, err
}

func versionParam(r *http.Request, key string) (int, error) {
	raw := r.FormValue(key)
	if raw == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return 0, &store.ValidationError{Fields: map[string]string{"version": "must be a version number"}}
	}
	return n, nil
}

// requestedRunbookView loads the runbook page of the runbook in the path, at
// the version asked for ("version", 0 for the latest).
func requestedRunbookView(r *http.Request, s *store.Store) (views.RunbookView, error) {
	version, err := versionParam(r, "version")
	if err != nil {
		return views.RunbookView{}, err
	}
	return runbookView(r.Context(), s, chi.URLParam(r, "name"), version)
}

func adminRunbook(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := requestedRunbookView(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminRunbookPage(v), nil)
	}
}

// formRunParams reads a run's parameters from the form ("param.NAME").
func formRunParams(r *http.Request) (map[string]any, map[string]string) {
	params := map[string]any{}
	values := map[string]string{}
	for k, vs := range r.Form {
		name, ok := strings.CutPrefix(k, "param.")
		if !ok || len(vs) == 0 {
			continue
		}
		params[name] = vs[0]
		values[name] = vs[0]
	}
	return params, values
}

// paramProblems are a validation error's run parameter problems, by parameter.
func paramProblems(err error) (map[string]string, bool) {
	var ve *store.ValidationError
	if !errors.As(err, &ve) {
		return nil, false
	}
	out := map[string]string{}
	for k, msg := range ve.Fields {
		out[strings.TrimPrefix(k, "params.")] = msg
	}
	return out, true
}

// planRunbookForm is a dry run from the runbook page's form (a GET: it
// changes nothing).
func planRunbookForm(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := requestedRunbookView(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		params, values := formRunParams(r)
		v.Values = values
		p, err := jobs.PlanRunbook(r.Context(), s, v.Name, v.Shown.Version, params)
		if problems, ok := paramProblems(err); ok {
			v.Errors = problems
			web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.AdminRunbookPage(v), nil)
			return
		} else if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v.Plan = &p
		web.Render(w, r, log, views.AdminRunbookPage(v), nil)
	}
}

func startRunbookForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		version, err := versionParam(r, "version")
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		name := chi.URLParam(r, "name")
		params, values := formRunParams(r)
		run, err := jobs.StartRunbook(r.Context(), s, q, web.Actor(r), name, version, params)
		if problems, ok := paramProblems(err); ok {
			v, verr := runbookView(r.Context(), s, name, version)
			if verr != nil {
				web.Error(w, r, log, verr)
				return
			}
			v.Values, v.Errors = values, problems
			web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.AdminRunbookPage(v), nil)
			return
		} else if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", fmt.Sprintf("Started run %d of %s version %d.", run.ID, run.Runbook, run.Version))
		web.Redirect(w, r, views.AdminRunURL(run.ID))
	}
}

// addRunbookVersionForm adds a version from the YAML form: on the runbooks
// page (any runbook) or on a runbook's page (that runbook only). An invalid
// definition is shown again with its problems, line by line.
func addRunbookVersionForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore, onRunbook bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, runbook.MaxSource+64<<10)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				err = &web.RequestError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("The definition is larger than %d KiB.", runbook.MaxSource>>10)}
			} else {
				err = web.BadRequest("malformed_form", "The form could not be read.")
			}
			web.Error(w, r, log, err)
			return
		}
		src := r.PostFormValue("yaml")
		name := ""
		if onRunbook {
			name = chi.URLParam(r, "name")
			if _, err := s.RunbookVersions(r.Context(), name); err != nil {
				web.Error(w, r, log, err)
				return
			}
		}
		v, err := jobs.AddRunbookVersion(r.Context(), s, web.Actor(r), []byte(src), name)
		var ie *jobs.InvalidRunbookError
		var ce *store.ConflictError
		if errors.As(err, &ie) || errors.As(err, &ce) {
			problems := runbook.Problems{}
			if ie != nil {
				problems = ie.Problems
			} else {
				problems = runbook.Problems{{Line: 1, Path: "version", Message: ce.Message}}
			}
			status := http.StatusUnprocessableEntity
			if ce != nil {
				status = http.StatusConflict
			}
			if onRunbook {
				rv, verr := runbookView(r.Context(), s, name, 0)
				if verr != nil {
					web.Error(w, r, log, verr)
					return
				}
				rv.NewYAML, rv.Problems = src, problems
				web.RenderStatus(w, r, log, status, views.AdminRunbookPage(rv), nil)
				return
			}
			rv, verr := runbooksView(r.Context(), s)
			if verr != nil {
				web.Error(w, r, log, verr)
				return
			}
			rv.YAML, rv.Problems = src, problems
			web.RenderStatus(w, r, log, status, views.AdminRunbooksPage(rv), nil)
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", fmt.Sprintf("Saved %s version %d.", v.Name, v.Version))
		web.Redirect(w, r, views.AdminRunbookURL(v.Name))
	}
}

func runID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id < 1 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

func runPageView(ctx context.Context, s *store.Store, id int64) (views.RunPageView, error) {
	rv, err := jobs.LoadRun(ctx, s, id)
	if err != nil {
		return views.RunPageView{}, err
	}
	return views.RunPageView{Run: rv.Run, Params: rv.Params, Steps: rv.Steps, Events: rv.Events, Children: rv.Children, Parent: rv.Parent, Now: s.Now()}, nil
}

func adminRun(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := runID(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v, err := runPageView(r.Context(), s, id)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		// Without JavaScript the page reloads itself while the run runs.
		web.Chrome(r).Refresh = !v.Run.Finished()
		web.Render(w, r, log, views.AdminRunPage(v), views.RunLive(v))
	}
}

// runAction posts an action on a run (cancel, retry a step, complete a step)
// and goes back to the run's page.
func runAction(log *slog.Logger, s *store.Store, sessions *web.SessionStore, act func(ctx context.Context, who store.Actor, id int64, step string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := runID(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		msg, err := act(r.Context(), web.Actor(r), id, chi.URLParam(r, "step"))
		if _, message, _, ok := web.FormProblem(err); ok && message != "" {
			sessions.Flash(w, r, "error", message)
			web.Redirect(w, r, views.AdminRunURL(id))
			return
		} else if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", msg)
		web.Redirect(w, r, views.AdminRunURL(id))
	}
}

func cancelRun(s *store.Store, q Enqueuer) func(context.Context, store.Actor, int64, string) (string, error) {
	return func(ctx context.Context, who store.Actor, id int64, _ string) (string, error) {
		return fmt.Sprintf("Cancelled run %d and its nested runs.", id), jobs.CancelRun(ctx, s, q, who, id)
	}
}

func retryRunStep(s *store.Store, q Enqueuer) func(context.Context, store.Actor, int64, string) (string, error) {
	return func(ctx context.Context, who store.Actor, id int64, step string) (string, error) {
		return fmt.Sprintf("Retrying step %q.", step), jobs.RetryRunStep(ctx, s, q, who, id, step)
	}
}

func completeRunStep(s *store.Store, q Enqueuer) func(context.Context, store.Actor, int64, string) (string, error) {
	return func(ctx context.Context, who store.Actor, id int64, step string) (string, error) {
		return fmt.Sprintf("Marked step %q done.", step), jobs.CompleteRunStep(ctx, s, q, who, id, step)
	}
}

// The API.

type runbookJSON struct {
	Name     string                 `json:"name"`
	Latest   int                    `json:"latest_version"`
	Params   []runbook.Param        `json:"params"`
	Versions []store.RunbookVersion `json:"versions"`
	// Runs are the newest runs of any version.
	Runs []store.Run `json:"runs"`
}

func apiRunbooks(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rs, err := s.Runbooks(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if rs == nil {
			rs = []store.RunbookSummary{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": rs, "next_cursor": ""})
	}
}

func apiRunbook(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := runbookView(r.Context(), s, chi.URLParam(r, "name"), 0)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		params := v.Def.Params
		if params == nil {
			params = []runbook.Param{}
		}
		runs := v.Runs
		if runs == nil {
			runs = []store.Run{}
		}
		web.WriteJSON(w, http.StatusOK, runbookJSON{Name: v.Name, Latest: v.Shown.Version, Params: params, Versions: v.Versions, Runs: runs})
	}
}

// runbookSource is the JSON body of POST /api/v1/runbooks/{name}/versions.
type runbookSource struct {
	YAML string `json:"yaml" required:"true" description:"The runbook definition as YAML."`
}

// apiAddRunbookVersion takes a definition as text/yaml (or application/yaml)
// or as JSON {"yaml": "..."}; the name in the definition must be the URL's.
func apiAddRunbookVersion(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var src []byte
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch mt {
		case "text/yaml", "application/yaml", "application/x-yaml", "text/x-yaml", "text/plain":
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, runbook.MaxSource+1))
			if err != nil {
				web.Error(w, r, log, &web.RequestError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("The definition is larger than %d KiB.", runbook.MaxSource>>10)})
				return
			}
			src = b
		default:
			var body runbookSource
			if err := web.DecodeJSON(w, r, &body); err != nil {
				web.Error(w, r, log, err)
				return
			}
			src = []byte(body.YAML)
		}
		v, err := jobs.AddRunbookVersion(r.Context(), s, web.Actor(r), src, chi.URLParam(r, "name"))
		var ie *jobs.InvalidRunbookError
		if errors.As(err, &ie) {
			err = ie.Validation()
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, v)
	}
}

// startRunRequest is the body of POST /api/v1/runbooks/{name}/runs.
type startRunRequest struct {
	Params  json.RawMessage `json:"params"`
	Version int             `json:"version" description:"0: the latest."`
	DryRun  bool            `json:"dry_run"`
}

func apiStartRun(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body startRunRequest
		if err := web.DecodeJSON(w, r, &body); err != nil {
			web.Error(w, r, log, err)
			return
		}
		params, err := jobs.RunbookParamsFromJSON(body.Params)
		if err != nil {
			web.Error(w, r, log, web.BadRequest("malformed_json", "params must be a JSON object of parameter names to values."))
			return
		}
		name := chi.URLParam(r, "name")
		if _, err := s.RunbookVersion(r.Context(), name, body.Version); err != nil {
			web.Error(w, r, log, err)
			return
		}
		if body.DryRun {
			writeRunbookPlan(w, r, log, s, name, body.Version, params)
			return
		}
		run, err := jobs.StartRunbook(r.Context(), s, q, web.Actor(r), name, body.Version, params)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Location", apiRunURL(run.ID))
		writeRun(w, r, log, s, http.StatusAccepted, run.ID)
	}
}

// writeRunbookPlan answers a dry run of a runbook with its plan; it changes nothing.
func writeRunbookPlan(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, name string, version int, params map[string]any) {
	p, err := jobs.PlanRunbook(r.Context(), s, name, version, params)
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"dry_run": true, "plan": p})
}

// writeRun answers with a run as the API shows it (runJSON).
func writeRun(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, status int, id int64) {
	rv, err := jobs.LoadRun(r.Context(), s, id)
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	web.WriteJSON(w, status, runJSON(rv))
}

// apiRunURL is where the API shows a run: the Location of an answer that started one.
func apiRunURL(id int64) string {
	return "/api/v1/runs/" + strconv.FormatInt(id, 10)
}

// runJSON is a run as the API shows it: state, progress, steps, timeline and log.
func runJSON(rv jobs.RunView) map[string]any {
	done := 0
	for _, st := range rv.Steps {
		if st.Terminal() {
			done++
		}
	}
	progress := 100
	if len(rv.Steps) > 0 {
		progress = done * 100 / len(rv.Steps)
	}
	var timeline, logs []store.RunEvent
	for _, e := range rv.Events {
		if e.Kind == store.EventLog {
			logs = append(logs, e)
		} else {
			timeline = append(timeline, e)
		}
	}
	if logs == nil {
		logs = []store.RunEvent{}
	}
	children := rv.Children
	if children == nil {
		children = []store.Run{}
	}
	return map[string]any{
		"id": rv.Run.ID, "runbook": rv.Run.Runbook, "version": rv.Run.Version, "state": rv.Run.State, "progress": progress,
		"params": rv.Params, "error": rv.Run.Error, "started_by": rv.Run.StartedBy, "created_at": rv.Run.CreatedAt,
		"finished_at": rv.Run.FinishedAt, "deadline_at": rv.Run.DeadlineAt, "parent_run_id": rv.Run.ParentRunID,
		"steps": rv.Steps, "timeline": timeline, "logs": logs, "nested_runs": children,
	}
}

func apiShowRun(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := runID(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		writeRun(w, r, log, s, http.StatusOK, id)
	}
}

// apiRunAction does an action on a run and answers with the run.
func apiRunAction(log *slog.Logger, s *store.Store, status int, act func(ctx context.Context, who store.Actor, id int64, step string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := runID(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if _, err := act(r.Context(), web.Actor(r), id, chi.URLParam(r, "step")); err != nil {
			web.Error(w, r, log, err)
			return
		}
		writeRun(w, r, log, s, status, id)
	}
}
