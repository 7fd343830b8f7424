package handlers

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// The browser sign-in of `devport login`: GET /cli/login asks the signed-in
// person, POST /cli/login approves (a one-time code for the CLI's local
// callback), POST /cli/login/deny refuses, and POST /api/v1/cli/token, with
// no session or token, exchanges the code and the PKCE verifier for a token.

// cliLoginRequest reads the CLI's request from the query or the form.
func cliLoginRequest(v url.Values) (store.CLILoginRequest, error) {
	c := store.CLILoginRequest{State: v.Get("state"), Challenge: v.Get("challenge"), Name: v.Get("name")}
	port, err := strconv.Atoi(v.Get("port"))
	if err != nil {
		port = 0
	}
	c.Port = port
	if err := c.Validate(); err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			fields := make([]string, 0, len(ve.Fields))
			for f, p := range ve.Fields {
				fields = append(fields, f+" "+p)
			}
			sort.Strings(fields)
			return c, web.BadRequest("invalid_cli_login", "This sign-in link of the devport CLI is not valid: "+strings.Join(fields, "; ")+
				". Run devport login again.")
		}
		return c, err
	}
	return c, nil
}

// cliLoginCSP lets the approval form's redirect reach the CLI's listener on
// this machine (form-action covers the redirect after a form is sent).
func cliLoginCSP(w http.ResponseWriter, port int) {
	w.Header().Set("Content-Security-Policy",
		strings.Replace(web.ContentSecurityPolicy, "form-action 'self'", "form-action 'self' http://127.0.0.1:"+strconv.Itoa(port), 1))
}

func cliLoginPage(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := cliLoginRequest(r.URL.Query())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		cliLoginCSP(w, c.Port)
		web.Render(w, r, log, views.CLILoginPage(c, web.User(r).Email), nil)
	}
}

func approveCLILogin(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		c, err := cliLoginRequest(r.PostForm)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		var code string
		err = s.InTx(r.Context(), func(tx *store.Tx) (err error) {
			code, err = tx.CreateCLILoginCode(r.Context(), web.Actor(r), *web.User(r), c)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		// Only the loopback address: the port is the CLI's, the host never
		// comes from the request.
		http.Redirect(w, r, views.CLILoginCallback(c.Port)+"?"+url.Values{"code": {code}, "state": {c.State}}.Encode(), http.StatusSeeOther)
	}
}

func denyCLILogin(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		// A valid request goes back to the CLI, which stops waiting and says
		// the sign-in was not approved; otherwise the page says it.
		if c, err := cliLoginRequest(r.PostForm); err == nil {
			http.Redirect(w, r, views.CLILoginCallback(c.Port)+"?"+url.Values{"error": {"access_denied"}, "state": {c.State}}.Encode(), http.StatusSeeOther)
			return
		}
		name := r.PostForm.Get("name")
		if len(name) > 100 {
			name = ""
		}
		web.Render(w, r, log, views.CLILoginDeniedPage(name), nil)
	}
}

var errInvalidGrant = &web.RequestError{Status: http.StatusBadRequest, Code: "invalid_grant",
	Message: "The sign-in code is unknown, expired or already used, or the verifier does not match. Run devport login again."}

func apiCLIToken(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Code     string `json:"code"`
			Verifier string `json:"verifier"`
		}
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		var (
			t      store.Token
			secret string
			u      store.User
		)
		err := s.InTx(r.Context(), func(tx *store.Tx) (err error) {
			t, secret, u, err = tx.ExchangeCLILoginCode(r.Context(), web.Actor(r), in.Code, in.Verifier)
			return err
		})
		if errors.Is(err, store.ErrInvalidGrant) {
			err = errInvalidGrant
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, map[string]any{"token": t, "secret": secret, "user": map[string]string{"email": u.Email}})
	}
}
