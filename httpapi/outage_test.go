package httpapi_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/faultnet"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/storetest"
)

// TestDatabaseOutage stops "PostgreSQL" under a running instance: requests
// answer 503 with Retry-After within two seconds, and the instance recovers
// by itself when the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	// Closing the proxy stops it listening and closes every connection,
	// as a stopped database server does.
	p, dbURL, err := faultnet.ListenURL(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrator().Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, s)
	e.registerVerified("up@example.org", goodPassword)
	e.login("up@example.org", goodPassword)

	p.Close()
	for _, req := range []struct{ method, path string }{{"GET", "/readyz"}, {"POST", "/v1/auth/login"}} {
		start := time.Now()
		r := e.do(req.method, req.path, map[string]string{"email": "up@example.org", "password": goodPassword})
		if elapsed := time.Since(start); r.status != 503 || r.code() != "unavailable" || r.header.Get("Retry-After") == "" || elapsed > 2*time.Second {
			t.Errorf("%s %s with the database down: %d %s after %s; want 503 with Retry-After within 2s",
				req.method, req.path, r.status, r.raw, elapsed)
		}
	}

	// The revocation feed too, as JSON and as a stream (whose first read
	// comes before its answer starts).
	for _, accept := range []string{"application/json", "text/event-stream"} {
		r := e.do("GET", "/v1/auth/revocations?since=1", nil, append(bearer(serviceToken), "Accept", accept)...)
		if r.status != 503 || r.code() != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("revocation feed (%s) with the database down: %d %s; want 503 with Retry-After", accept, r.status, r.raw)
		}
	}

	// Told as an outage, sampled: not an error line per request.
	e.api.FlushLog()
	if logs := e.logs.String(); strings.Contains(logs, "request failed") || !strings.Contains(logs, "requests failed: unavailable") {
		t.Errorf("the log of 503s during the outage:\n%s\nwant them counted (\"requests failed: unavailable\"), no \"request failed\" line each", logs)
	}

	if err := p.Reopen(); err != nil { // the same address again
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "recovery without a restart", func() bool {
		return e.do("GET", "/readyz", nil).status == 200
	})
	e.login("up@example.org", goodPassword)
}

// TestRefusedWritesAreToldSampled: 503s that carry a hint for the operator
// (here: the SQLite file moved away under the server, so that writes would
// be lost) are told at error level with the hint, one line a second with
// the count, not a line each: under load a line a request flooded the log,
// perhaps onto the disk that is full already.
func TestRefusedWritesAreToldSampled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "authd.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, s)
	e.registerVerified("moved@example.org", goodPassword)
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		r := e.do("POST", "/v1/auth/login", map[string]string{"email": "moved@example.org", "password": goodPassword})
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("a login after the file moved: %d %s; want 503 with Retry-After", r.status, r.raw)
		}
	}
	e.api.FlushLog()
	logs := e.logs.String()
	if n := strings.Count(logs, "the database refused them"); n < 1 || n > 2 || strings.Contains(logs, "request failed") ||
		!strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "put the database back") {
		t.Errorf("the log of 20 refused writes (%d lines for them):\n%s\nwant one or two error lines with the count and the hint", n, logs)
	}
}
