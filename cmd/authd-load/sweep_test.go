package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/password"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/ratelimit"
	"github.com/authd/authd/storetest"
	"github.com/authd/authd/token"
)

// discardMailer drops mail: the sweep never reads any.
type discardMailer struct{}

func (discardMailer) Send(context.Context, authd.Mail) error { return nil }

// realAuthd serves the real API on store over loopback, with cheap hashing
// and one account that can log in, and returns its URL.
func realAuthd(t *testing.T, store authd.Store, email, pass string) string {
	t.Helper()
	ctx := context.Background()
	keys, err := token.OpenKeyring(t.TempDir(), "EdDSA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := authd.Config{
		PublicURL: "https://auth.example.org", AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: 168 * time.Hour,
		SessionMaxAge: 720 * time.Hour, RefreshReuseGrace: 10 * time.Second,
		LockoutThreshold: 5, LockoutDuration: 15 * time.Minute, MaxSessions: 100,
	}
	svc := authd.NewService(cfg, authd.Deps{
		Store: store, Passwords: password.NewHasher(password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, password.Policy{MinLength: 12}),
		Tokens: token.NewIssuer(keys, cfg.PublicURL, "authd"), Mailer: discardMailer{},
		Lockouts: ratelimit.NewMemoryLockouts(authd.SystemClock{}),
	})
	if err := svc.LoadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.Register(ctx, authd.Client{}, email, pass, true); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc, Ready: store.Ready, PasswordMinLength: 12}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSweep runs two scenarios at two client counts against the real
// server on PostgreSQL and checks that -json holds one result per
// scenario and count, in order, each with requests that succeeded.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	store, err := postgres.Open(ctx, storetest.PostgresURL(t))
	if err == nil {
		t.Cleanup(func() { store.Close() })
		_, err = store.Migrator().Up(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	const email, pass, label = "sweep@example.org", "correct horse battery staple 9", "postgres"
	url := realAuthd(t, store, email, pass)
	file := filepath.Join(t.TempDir(), "run.json")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-url", url, "-email", email, "-password", pass, "-label", label,
		"-scenarios", "me,refresh", "-clients", "1,4", "-duration", "300ms", "-json", file}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	rep := readReport(t, file)
	if rep.Label != label || rep.URL != url || rep.DurationS != 0.3 || rep.Cores < 1 || !strings.HasPrefix(rep.GoVersion, "go") {
		t.Errorf("metadata: %+v", rep)
	}
	if _, err := time.Parse(time.RFC3339, rep.Started); err != nil {
		t.Errorf("started %q is not RFC 3339: %v", rep.Started, err)
	}
	want := []struct {
		scenario string
		clients  int
	}{{"me", 1}, {"me", 4}, {"refresh", 1}, {"refresh", 4}}
	if len(rep.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(rep.Results), len(want), rep.Results)
	}
	for i, w := range want {
		r := rep.Results[i]
		if r.Scenario != w.scenario || r.Clients != w.clients {
			t.Errorf("result %d is %s at %d clients, want %s at %d", i, r.Scenario, r.Clients, w.scenario, w.clients)
		}
		if r.OK == 0 || r.Rate <= 0 || r.Errors != 0 || r.P50Ms <= 0 || r.P50Ms > r.P90Ms || r.P90Ms > r.P99Ms || r.P99Ms > r.MaxMs {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	// Away from the bars' own count (32) no verdict is printed.
	if strings.Contains(out.String(), "bar:") || !strings.Contains(out.String(), "refresh       4 clients") {
		t.Errorf("report:\n%s", out.String())
	}
}
