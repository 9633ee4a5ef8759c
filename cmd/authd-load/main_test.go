package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAuthd answers the endpoints the harness uses, counting calls.
func fakeAuthd(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/auth/login", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{"access_token":"a","refresh_token":"r"}`))
	})
	mux.HandleFunc("POST /v1/auth/refresh", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{"access_token":"a","refresh_token":"r2"}`))
	})
	mux.HandleFunc("POST /v1/auth/introspect", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer svc" {
			w.WriteHeader(401)
			return
		}
		w.Write([]byte(`{"active":true}`))
	})
	mux.HandleFunc("GET /v1/users/me", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &calls
}

// fakeAdmin is the admin listener, which alone serves /metrics.
func fakeAdmin(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("# HELP x\nprocess_resident_memory_bytes 1.2582912e+08\n"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestScenariosReport(t *testing.T) {
	srv, calls := fakeAuthd(t)
	admin := fakeAdmin(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-url", srv.URL, "-metrics-url", admin.URL, "-service-token", "svc", "-duration", "200ms",
		"-argon2-memory-kib", "64", "-argon2-iterations", "1"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"introspect   32 clients", "me           32 clients", "refresh      32 clients",
		"login        16 clients", "burst      1000 concurrent logins", "peak server RSS 120 MiB", "errors 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if calls.Load() < 1000 {
		t.Errorf("only %d calls reached the server", calls.Load())
	}
}

func TestFailures(t *testing.T) {
	srv, _ := fakeAuthd(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-url", srv.URL, "-scenarios", "introspect"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "-service-token") {
		t.Errorf("introspect without a service token: exit %d, %q", code, errOut.String())
	}
	out.Reset()
	code := run(context.Background(), []string{"-url", srv.URL, "-service-token", "wrong", "-scenarios", "introspect",
		"-duration", "100ms"}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "401:") {
		t.Errorf("a wrong service token is not counted as errors: %s", out.String())
	}
	if code := run(context.Background(), []string{"-url", "http://127.0.0.1:1"}, &out, &errOut); code != 1 {
		t.Errorf("unreachable server: exit %d", code)
	}
	if code := run(context.Background(), []string{"-no-such-flag"}, &out, &errOut); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
	for _, list := range []string{"1,x", "0", "8,,32", "-4"} {
		errOut.Reset()
		code := run(context.Background(), []string{"-url", srv.URL, "-clients", list}, &out, &errOut)
		if lines := strings.Split(strings.TrimSpace(errOut.String()), "\n"); code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[1], "hint: ") {
			t.Errorf("-clients %q: exit %d, %q; want 2, one line and a hint", list, code, errOut.String())
		}
	}
	errOut.Reset()
	code = run(context.Background(), []string{"-url", srv.URL, "-scenarios", "me", "-json", filepath.Join(t.TempDir(), "no-such-dir", "run.json")}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "hint: -json") {
		t.Errorf("-json into a missing directory: exit %d, %q", code, errOut.String())
	}
}

// TestInterrupted stops a sweep while it runs: the exit is 1, and the JSON
// keeps the runs that finished but not the one cut short.
func TestInterrupted(t *testing.T) {
	srv, _ := fakeAuthd(t)
	file := filepath.Join(t.TempDir(), "run.json")
	ctx, cancel := context.WithTimeout(context.Background(), 450*time.Millisecond) // during the second run
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"-url", srv.URL, "-scenarios", "me", "-clients", "1,4", "-duration", "300ms", "-json", file}, &out, &errOut)
	if code != 1 || !strings.HasPrefix(errOut.String(), "authd-load: interrupted\nhint: ") {
		t.Errorf("exit %d, %q; want 1 and interrupted", code, errOut.String())
	}
	for _, r := range readReport(t, file).Results {
		if r.Clients != 1 || r.Rate <= 0 {
			t.Errorf("kept a run cut short: %+v", r)
		}
	}
}

// readReport reads what -json wrote, or fails.
func readReport(t *testing.T, file string) loadReport {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("-json wrote no report: %v\n%s", err, b)
	}
	return rep
}

// TestOwnAccounts: with -own-accounts each login client registers an
// account and logs in as it, every one of them; a server that refuses a
// new account's login (verification required) stops the run with why.
func TestOwnAccounts(t *testing.T) {
	for _, verified := range []bool{true, false} {
		var mu sync.Mutex
		registered, loggedIn := map[string]bool{}, map[string]bool{}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/auth/register", func(w http.ResponseWriter, r *http.Request) {
			var in struct{ Email string }
			json.NewDecoder(r.Body).Decode(&in)
			mu.Lock()
			registered[in.Email] = true
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
		})
		mux.HandleFunc("POST /v1/auth/login", func(w http.ResponseWriter, r *http.Request) {
			var in struct{ Email string }
			json.NewDecoder(r.Body).Decode(&in)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case in.Email == "active@demo.authd.dev":
			case !registered[in.Email]:
				w.WriteHeader(http.StatusUnauthorized)
				return
			case !verified:
				w.WriteHeader(http.StatusForbidden)
				return
			default:
				loggedIn[in.Email] = true
			}
			w.Write([]byte(`{"access_token":"a","refresh_token":"r"}`))
		})
		srv := httptest.NewServer(mux)
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"-url", srv.URL, "-scenarios", "login", "-own-accounts", "-clients", "3",
			"-duration", "200ms", "-argon2-memory-kib", "64", "-argon2-iterations", "1"}, &out, &errOut)
		srv.Close()
		switch {
		case verified && (code != 0 || len(registered) != 3 || len(loggedIn) != 3 || !strings.Contains(out.String(), "errors 0")):
			t.Errorf("-own-accounts: exit %d, %d registered, %d logged in; want 3 and 3:\n%s%s",
				code, len(registered), len(loggedIn), out.String(), errOut.String())
		case !verified && (code != 1 || !strings.Contains(errOut.String(), "AUTHD_REQUIRE_VERIFIED_EMAIL=false")):
			t.Errorf("-own-accounts, new accounts refused: exit %d, %q; want 1 and the setting to change", code, errOut.String())
		}
	}
}
