package httpapi_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/metrics"
)

// TestMetricsOnTheAdminListenerOnly: the metrics' counters (register
// notices, failed registrations, resets) would tell an outsider whether an
// address has an account, so the public listener never serves them; the
// admin listener does, without a token, whether or not the admin API is on.
func TestMetricsOnTheAdminListenerOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	want(t, "public GET /metrics", e.do("GET", "/metrics", nil), 404, "not_found")
	if r := e.send(e.adminSrv.URL, "GET", "/metrics", nil); r.status != 200 || !strings.Contains(r.raw, "go_goroutines") {
		t.Errorf("admin GET /metrics without a token: %d, want 200 and the metrics", r.status)
	}

	// Without AUTHD_ADMIN_TOKEN the listener still serves /metrics and
	// /healthz, and says why the admin API is missing.
	noToken := httptest.NewServer(httpapi.NewAdmin(httpapi.Options{Service: e.svc, Metrics: metrics.New().Handler()}, ""))
	t.Cleanup(noToken.Close)
	for _, path := range []string{"/metrics", "/healthz"} {
		if r := e.send(noToken.URL, "GET", path, nil); r.status != 200 {
			t.Errorf("GET %s on the admin listener without a token configured: %d, want 200", path, r.status)
		}
	}
	r := e.send(noToken.URL, "GET", "/v1/admin/users", nil, bearer(adminToken)...)
	want(t, "admin API without AUTHD_ADMIN_TOKEN", r, 404, "not_found")
	if !strings.Contains(r.str("detail"), "AUTHD_ADMIN_TOKEN") {
		t.Errorf("admin API without AUTHD_ADMIN_TOKEN: detail %q does not say how to turn it on", r.str("detail"))
	}
	// /v1/admin too is answered so, not redirected to /v1/admin/ (a
	// redirect that API clients do not read).
	resp, err := noRedirects.Get(noToken.URL + "/v1/admin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET /v1/admin without AUTHD_ADMIN_TOKEN: %d %s, want a 404 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestCommittedEventsReachTheHook: the security events a flow's
// transaction commits reach the Event hook (the metrics' counters), those
// of a refused request whose transaction commits (a wrong password, the
// answer asking for the second factor) among them, and so do the rows of a
// failure written outside any transaction (a malformed mfa_token's).
func TestCommittedEventsReachTheHook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	e := newEnv(t, openSQLite(t), withHooks(authd.Hooks{Event: func(ev authd.EventType, res authd.Result) {
		mu.Lock()
		defer mu.Unlock()
		seen[string(ev)+"/"+string(res)]++
	}}))
	_, secret, _ := e.mfaUser("counted@example.org")
	want(t, "a wrong password", e.do("POST", "/v1/auth/login", map[string]string{"email": "counted@example.org",
		"password": "wrong"}), 401, "invalid_credentials")
	want(t, "the code", e.verify(e.mfaLogin("counted@example.org"), "totp", totpAt(t, secret, e.clock.Now())), 200, "")
	want(t, "a malformed mfa_token", e.verify("junk", "totp", "123456"), 400, "invalid_token")
	mu.Lock()
	defer mu.Unlock()
	for _, ev := range []string{"login_failure/failure", "mfa_challenge_issued/success", "mfa_challenge_passed/success",
		"login_success/success", "mfa_enabled/success", "mfa_challenge_failed/failure"} {
		if seen[ev] == 0 {
			t.Errorf("the Event hook was not told of %s: %v", ev, seen)
		}
	}
}

// commitFails is a store whose next transaction, once armed, fails after
// the flow's work succeeded, as a COMMIT lost to an outage does: nothing
// the flow wrote is kept.
type commitFails struct {
	authd.Store
	armed *atomic.Bool
}

func (s commitFails) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error {
		if err := fn(q); err != nil {
			return err
		}
		if s.armed.CompareAndSwap(true, false) {
			return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable"}
		}
		return nil
	})
}

// TestRolledBackFlowReportsAndRevokesNothing: a flow whose transaction
// does not commit has done nothing, so this instance neither applies its
// revocations (the sessions it would have ended stay usable) nor tells the
// Event hook of its rows (the metrics count what the log holds).
func TestRolledBackFlowReportsAndRevokesNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var mu sync.Mutex
		seen := map[string]int{}
		armed := &atomic.Bool{}
		e := newEnv(t, commitFails{open(t), armed}, withHooks(authd.Hooks{Event: func(ev authd.EventType, res authd.Result) {
			mu.Lock()
			defer mu.Unlock()
			seen[string(ev)+"/"+string(res)]++
		}}))
		const email = "rolled.back@example.org"
		e.registerVerified(email, goodPassword)
		access, _ := e.login(email, goodPassword)
		other, _ := e.login(email, goodPassword)
		armed.Store(true)
		want(t, "logout-all whose commit fails", e.do("POST", "/v1/auth/logout-all", nil, bearer(access)...), 503, "unavailable")
		if !e.active(access) || !e.active(other) {
			t.Errorf("a logout-all rolled back ended sessions here: active %v, %v", e.active(access), e.active(other))
		}
		if e.hasEvent(email, "logout_all/success") {
			t.Fatalf("the rolled-back logout-all was logged: %v", e.events(email))
		}
		mu.Lock()
		defer mu.Unlock()
		if n := seen["logout_all/success"]; n != 0 {
			t.Errorf("the Event hook was told %d times of a logout-all that rolled back", n)
		}
	})
}
