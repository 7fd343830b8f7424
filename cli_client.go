package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// apiClient speaks the portal's /api/v1 with a token, and never waits
// longer than its timeout for an answer.
type apiClient struct {
	base  string // scheme://host[:port], no trailing slash
	token string
	http  *http.Client
	// timeout bounds one request, from dialling to the end of the body.
	timeout time.Duration
	logf    func(method, path string, status int, took time.Duration, err error)
}

func newAPIClient(base, token string, timeout time.Duration, logf func(string, string, int, time.Duration, error)) *apiClient {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dial := min(timeout, 5*time.Second)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   dial,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
	}
	return &apiClient{base: base, token: token, timeout: timeout, logf: logf,
		http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// normalizePortal checks a portal URL and keeps its scheme and host.
func normalizePortal(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("the portal %q is not an http(s) URL such as https://devport.example.com", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// apiError is the portal's answer to a request it refused.
type apiError struct {
	Status  int
	Code    string
	Message string
	Fields  map[string]string
}

func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if len(e.Fields) > 0 {
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+" "+e.Fields[k])
		}
		msg = strings.TrimSuffix(msg, ".") + ": " + strings.Join(parts, "; ")
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return msg + ` (your token is missing, expired or revoked: run "devport login")`
	}
	return msg
}

// unreachableError says the portal did not answer, and why.
type unreachableError struct {
	Portal string
	Err    error
}

func (e *unreachableError) Error() string {
	var ne net.Error
	why := e.Err.Error()
	switch {
	case errors.As(e.Err, &ne) && ne.Timeout(), errors.Is(e.Err, context.DeadlineExceeded):
		why = "no answer in time"
	case isDNSError(e.Err):
		why = "its name does not resolve (DNS)"
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		why = "connection refused"
	}
	return fmt.Sprintf("the portal %s does not answer: %s (run \"devport doctor\" to find out more)", e.Portal, why)
}

func (e *unreachableError) Unwrap() error { return e.Err }

func isDNSError(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}

// newIdempotencyKey makes a key that lets the portal recognise a repeated
// mutating request.
func newIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "cli-" + hex.EncodeToString(b)
}

// do sends a request to path (under /api/v1 unless it starts with "/") with
// in as its JSON body (nil: none), decodes a 2xx answer into out (nil:
// discarded) and returns the status. A refused request is an *apiError, a
// portal that does not answer an *unreachableError.
func (a *apiClient) do(ctx context.Context, method, path string, in, out any) (int, error) {
	if !strings.HasPrefix(path, "/") {
		path = "/api/v1/" + path
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "devport-cli/"+version)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("Idempotency-Key", newIdempotencyKey())
	}
	start := time.Now()
	resp, err := a.http.Do(req)
	if err != nil {
		if a.logf != nil {
			a.logf(method, path, 0, time.Since(start), err)
		}
		if errors.Is(ctx.Err(), context.Canceled) && !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			return 0, ctx.Err()
		}
		return 0, &unreachableError{Portal: a.base, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if a.logf != nil {
		a.logf(method, path, resp.StatusCode, time.Since(start), err)
	}
	if err != nil {
		return resp.StatusCode, &unreachableError{Portal: a.base, Err: err}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, decodeAPIError(resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("the portal's answer to %s %s is not what this CLI (%s) understands: %v", method, path, version, err)
		}
	}
	return resp.StatusCode, nil
}

func decodeAPIError(status int, b []byte) error {
	var env struct {
		Error struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Fields  map[string]string `json:"fields"`
		} `json:"error"`
	}
	e := &apiError{Status: status}
	if json.Unmarshal(b, &env) == nil && env.Error.Message != "" {
		e.Code, e.Message, e.Fields = env.Error.Code, env.Error.Message, env.Error.Fields
	} else if status >= 300 && status < 400 {
		e.Message = fmt.Sprintf("the portal answered with a redirect (%d): is the portal URL right?", status)
	} else {
		e.Message = fmt.Sprintf("the portal answered %d %s", status, http.StatusText(status))
	}
	return e
}

func (a *apiClient) get(ctx context.Context, path string, out any) error {
	_, err := a.do(ctx, http.MethodGet, path, nil, out)
	return err
}

// list fetches every page of a list endpoint. An empty list is an empty
// slice, never nil, so that --json prints [] rather than null.
func list[T any](ctx context.Context, a *apiClient, path string) ([]T, error) {
	all := []T{}
	cursor := ""
	for {
		p := path
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		p += sep + "limit=500"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Items      []T    `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		if err := a.get(ctx, p, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" || len(all) > 100000 {
			return all, nil
		}
		cursor = page.NextCursor
	}
}

// logPath is the CLI's own log: one line per request and per command, for
// devport doctor --rage.
func (c *cli) logPath() string { return filepath.Join(c.cacheDir(), "cli.log") }

// maxLogBytes bounds the CLI log; past it the older half is dropped.
const maxLogBytes = 256 << 10

func (c *cli) appendLog(line string) {
	dir := c.cacheDir()
	if os.MkdirAll(dir, 0o700) != nil {
		return
	}
	path := c.logPath()
	if st, err := os.Stat(path); err == nil && st.Size() > maxLogBytes {
		if b, err := os.ReadFile(path); err == nil {
			b = b[len(b)/2:]
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[i+1:]
			}
			_ = os.WriteFile(path, b, 0o600)
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", c.env.Now().UTC().Format(time.RFC3339), logSecret.ReplaceAllString(line, "${1}<hidden>"))
}

// logSecret is a token or sign-in code, wherever it appears in a log line
// (an error message may quote a mistyped argument).
var logSecret = regexp.MustCompile(`(dp[tc]_)[A-Za-z0-9]+`)

func (c *cli) logRequest(method, path string, status int, took time.Duration, err error) {
	line := fmt.Sprintf("request %s %s status=%d took=%s", method, path, status, took.Round(time.Millisecond))
	if err != nil {
		line += " error=" + strconv.Quote(err.Error())
	}
	c.appendLog(line)
}

func (c *cli) logInvocation(args []string, err error) {
	if len(args) > 0 && strings.HasPrefix(args[0], "__complete") {
		return
	}
	// Never log a token given on the command line.
	shown := make([]string, 0, len(args))
	hide := false
	for _, a := range args {
		switch {
		case hide:
			shown = append(shown, "<hidden>")
			hide = false
		case a == "--token":
			shown = append(shown, a)
			hide = true
		case strings.HasPrefix(a, "--token="):
			shown = append(shown, "--token=<hidden>")
		default:
			shown = append(shown, a)
		}
	}
	line := "command devport " + strings.Join(shown, " ")
	if err != nil {
		line += " error=" + strconv.Quote(err.Error())
	}
	c.appendLog(line)
}
