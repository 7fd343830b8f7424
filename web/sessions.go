package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

// SessionCookie is the session cookie's name.
const SessionCookie = "devport_session"

// SessionStore keeps gorilla sessions server-side in the database: the cookie
// carries only a signed random ID, so sessions can be revoked, and they end
// after an idle timeout and an absolute timeout.
type SessionStore struct {
	s        *store.Store
	codecs   []securecookie.Codec
	Idle     time.Duration
	Absolute time.Duration
	Secure   bool
	log      *slog.Logger
}

var _ sessions.Store = (*SessionStore)(nil)

// NewSessionStore returns a session store whose cookies are signed with key.
func NewSessionStore(s *store.Store, key []byte, idle, absolute time.Duration, secure bool, log *slog.Logger) *SessionStore {
	c := securecookie.New(key, nil)
	c.MaxAge(int(absolute / time.Second))
	return &SessionStore{s: s, codecs: []securecookie.Codec{c}, Idle: idle, Absolute: absolute, Secure: secure, log: log}
}

const (
	userIDValue    = "user_id"
	createdAtValue = "created_at"
	flashValue     = "_flash"
)

// Get returns the request's session, cached for the request.
func (st *SessionStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(st, name)
}

// New loads the session named by the request's cookie, or starts a new one.
func (st *SessionStore) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(st, name)
	sess.Options = st.cookieOptions()
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	var id string
	if err := securecookie.DecodeMulti(name, c.Value, &id, st.codecs...); err != nil {
		markExpired(r)
		return sess, nil
	}
	row, err := st.s.SessionByID(r.Context(), id, st.Idle)
	if errors.Is(err, store.ErrNotFound) {
		markExpired(r)
		return sess, nil
	}
	if err != nil {
		return sess, err
	}
	values := map[string]any{}
	if err := json.Unmarshal([]byte(row.Data), &values); err != nil {
		return sess, fmt.Errorf("session data: %w", err)
	}
	for k, v := range values {
		sess.Values[k] = v
	}
	if row.UserID != nil {
		sess.Values[userIDValue] = *row.UserID
	}
	sess.Values[createdAtValue] = row.CreatedAt
	sess.ID = id
	sess.IsNew = false
	// Record activity at most once a minute, so reading pages is not write traffic.
	if st.s.Now().Sub(row.LastSeenAt) > time.Minute {
		if err := st.s.TouchSession(r.Context(), row.IDHash); err != nil {
			st.log.Warn("Could not record session activity", "error", err)
		}
	}
	return sess, nil
}

// Save writes the session and its cookie; a session with MaxAge < 0 is deleted.
func (st *SessionStore) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	if sess.Options != nil && sess.Options.MaxAge < 0 {
		if sess.ID != "" {
			if err := st.s.DeleteSession(r.Context(), store.HashSecret(sess.ID)); err != nil {
				return err
			}
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	now := st.s.Now()
	created, _ := sess.Values[createdAtValue].(time.Time)
	if sess.ID == "" {
		sess.ID = store.NewSecret(32)
		created = now
	}
	row := store.Session{
		IDHash: store.HashSecret(sess.ID), CreatedAt: created, LastSeenAt: now, ExpiresAt: created.Add(st.Absolute),
		RemoteAddr: r.RemoteAddr, UserAgent: clipString(r.UserAgent(), 300),
	}
	data := map[string]any{}
	for k, v := range sess.Values {
		key, ok := k.(string)
		if !ok || key == createdAtValue {
			continue
		}
		if key == userIDValue {
			if id, ok := v.(int64); ok {
				row.UserID = &id
			}
			continue
		}
		data[key] = v
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("session data: %w", err)
	}
	row.Data = string(b)
	if err := st.s.SaveSession(r.Context(), row); err != nil {
		return err
	}
	sess.Values[createdAtValue] = created
	encoded, err := securecookie.EncodeMulti(sess.Name(), sess.ID, st.codecs...)
	if err != nil {
		return fmt.Errorf("session cookie: %w", err)
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), encoded, sess.Options))
	return nil
}

func (st *SessionStore) cookieOptions() *sessions.Options {
	return &sessions.Options{
		Path: "/", MaxAge: int(st.Absolute / time.Second), HttpOnly: true, Secure: st.Secure, SameSite: http.SameSiteLaxMode,
	}
}

// SignIn starts a fresh session for the user: the old session, and with it
// anything an attacker may have planted in it, is deleted, and the new one
// gets a new ID.
func (st *SessionStore) SignIn(w http.ResponseWriter, r *http.Request, userID int64) error {
	old, err := st.Get(r, SessionCookie)
	if err != nil {
		return err
	}
	if !old.IsNew && old.ID != "" {
		if err := st.s.DeleteSession(r.Context(), store.HashSecret(old.ID)); err != nil {
			return err
		}
	}
	old.ID = ""
	old.IsNew = true
	for k := range old.Values {
		delete(old.Values, k)
	}
	old.Values[userIDValue] = userID
	return old.Save(r, w)
}

// SignOut ends the request's session.
func (st *SessionStore) SignOut(w http.ResponseWriter, r *http.Request) error {
	sess, err := st.Get(r, SessionCookie)
	if err != nil {
		return err
	}
	sess.Options.MaxAge = -1
	return sess.Save(r, w)
}

// Flash adds a one-time message, shown on the next full page.
func (st *SessionStore) Flash(w http.ResponseWriter, r *http.Request, kind, message string) {
	sess, err := st.Get(r, SessionCookie)
	if err != nil {
		return
	}
	sess.AddFlash(kind + "|" + message)
	if err := sess.Save(r, w); err != nil {
		st.log.Warn("Could not save flash", "error", err)
	}
}

// Put stores a value in the session (for example the OIDC state), saving it.
func (st *SessionStore) Put(w http.ResponseWriter, r *http.Request, key string, value any) error {
	sess, err := st.Get(r, SessionCookie)
	if err != nil {
		return err
	}
	sess.Values[key] = value
	return sess.Save(r, w)
}

// Take returns a string value from the session and removes it.
func (st *SessionStore) Take(w http.ResponseWriter, r *http.Request, key string) (string, error) {
	sess, err := st.Get(r, SessionCookie)
	if err != nil {
		return "", err
	}
	v, _ := sess.Values[key].(string)
	if _, ok := sess.Values[key]; ok {
		delete(sess.Values, key)
		if err := sess.Save(r, w); err != nil {
			return "", err
		}
	}
	return v, nil
}

// takeFlashes moves the session's flashes into the page chrome.
func takeFlashes(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	st, ok := r.Context().Value(sessionStoreKey{}).(*SessionStore)
	if !ok {
		return
	}
	sess, err := st.Get(r, SessionCookie)
	if err != nil || sess.IsNew {
		return
	}
	flashes := sess.Flashes()
	if len(flashes) == 0 {
		return
	}
	if err := sess.Save(r, w); err != nil {
		log.Warn("Could not save session", "error", err)
	}
	c := views.ChromeFrom(r.Context())
	for _, f := range flashes {
		s, _ := f.(string)
		kind, msg, ok := strings.Cut(s, "|")
		if !ok {
			kind, msg = "info", s
		}
		c.Flashes = append(c.Flashes, views.Flash{Kind: kind, Message: msg})
	}
}

type sessionStoreKey struct{}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

type expiredFlag struct{ expired bool }

func markExpired(r *http.Request) {
	if f, ok := r.Context().Value(sessionExpiredKey).(*expiredFlag); ok {
		f.expired = true
	}
}

// SessionExpired tells whether the request carried a session cookie that is
// no longer valid (expired, revoked, or signed with another key).
func SessionExpired(r *http.Request) bool {
	f, ok := r.Context().Value(sessionExpiredKey).(*expiredFlag)
	return ok && f.expired
}
