package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
)

// TestPanicsAreProblems: a handler that panics answers a problem+json 500
// that shows nothing of the panic, which is logged with its stack; a
// handler that aborts its answer (http.ErrAbortHandler) still gets its log
// line and observation, and the abort reaches net/http, which then cuts the
// connection instead of ending the answer as if it were whole.
func TestPanicsAreProblems(t *testing.T) {
	t.Parallel()
	s, logs, observed := observedServer(
		Mount{Patterns: []string{"GET /boom"}, Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic("secret cause 4711")
		})},
		Mount{Patterns: []string{"GET /cut"}, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			panic(http.ErrAbortHandler)
		})})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != http.StatusInternalServerError ||
		rec.Header().Get("Content-Type") != "application/problem+json" || p.Code != authd.EInternal {
		t.Errorf("a panicking handler: %d %q %s (%v), want a problem+json 500 internal", rec.Code,
			rec.Header().Get("Content-Type"), rec.Body.String(), err)
	}
	if strings.Contains(rec.Body.String(), "4711") {
		t.Errorf("a panicking handler's answer shows the panic: %s", rec.Body.String())
	}
	if !strings.Contains(logs.String(), "msg=panic") || !strings.Contains(logs.String(), "secret cause 4711") {
		t.Errorf("a panic was not logged with its value:\n%s", logs.String())
	}

	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("an aborted handler: recovered %v, want http.ErrAbortHandler passed on to net/http", p)
			}
		}()
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/cut", nil))
	}()
	if !strings.Contains(logs.String(), "route=\"GET /cut\"") || !strings.Contains(logs.String(), "aborted=true") {
		t.Errorf("an aborted handler has no log line saying so:\n%s", logs.String())
	}
	if got := observed(); got != "[GET /boom 500 GET /cut 200]" {
		t.Errorf("observed %q, want the panic's 500 and the aborted answer's 200", got)
	}
}

// observedServer is a server of mounts whose log lines go to logs and
// whose observations observed returns, each "route status".
func observedServer(mounts ...Mount) (s *Server, logs *bytes.Buffer, observed func() string) {
	logs = new(bytes.Buffer)
	var mu sync.Mutex
	var seen []string
	s = New(Options{
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Ready:  func(context.Context) error { return nil },
		Observe: func(route string, status int, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprint(route, " ", status))
		},
		Mounts: mounts,
	})
	return s, logs, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(seen)
	}
}

// TestObservedRoutesArePatterns: metrics and the log line name a request by
// its route's pattern, and every path no route takes by one name: a
// scanner's paths must not each make a metrics series of their own.
func TestObservedRoutesArePatterns(t *testing.T) {
	t.Parallel()
	s, logs, observed := observedServer()
	for _, path := range []string{"/healthz", "/wp-admin/a1", "/wp-admin/b2"} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	if got := observed(); got != "[GET /healthz 200 unmatched 404 unmatched 404]" {
		t.Errorf("observed %q, want the route's pattern and unmatched for the others", got)
	}
	if !strings.Contains(logs.String(), `route="GET /healthz"`) || strings.Count(logs.String(), "route=unmatched") != 2 {
		t.Errorf("the log lines do not name the routes:\n%s", logs.String())
	}
}

// TestUnmappedCodeIs500: an error whose code the status table lacks (a
// bug) answers 500, not a status that would blame the client.
func TestUnmappedCodeIs500(t *testing.T) {
	t.Parallel()
	s := newServer(Options{})
	rec := httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest("GET", "/", nil), &authd.Error{Code: "no_such_code", Message: "x"})
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("an error of an unmapped code: %d, want 500", rec.Code)
	}
}

// TestStoppingIsNoOutage: /readyz of an instance that is stopping answers
// 503 with Retry-After, and logs neither a warning nor an outage: every
// stop would otherwise page someone.
func TestStoppingIsNoOutage(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := New(Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Ready:  func(context.Context) error { return ErrStopping },
	})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	s.FlushLog()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("readyz while stopping: %d Retry-After %q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "msg=request ") {
			t.Errorf("readyz while stopping logged more than its request line: %s", line)
		}
	}
}

// TestValidationFailedAlwaysHasErrors: a validation_failed problem carries
// its errors array even when no field is at fault (SPEC §5), so that a
// client may read it without a check.
func TestValidationFailedAlwaysHasErrors(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	newServer(Options{}).writeError(rec, httptest.NewRequest("GET", "/", nil), authd.Errorf(authd.EInvalid, "The request is invalid."))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"errors":[]`) {
		t.Errorf("validation_failed without fields: %d %s, want 400 with \"errors\":[]", rec.Code, rec.Body.String())
	}
}
