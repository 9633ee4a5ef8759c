package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

func TestHooksReachTheScrape(t *testing.T) {
	m := New()
	m.Request("POST /v1/auth/login", 401, 30*time.Millisecond)
	m.Event(authd.EventLoginFailure, authd.ResultFailure)
	m.Event(authd.EventAccountLocked, authd.ResultSuccess)
	m.Hash(20*time.Millisecond, 3)
	m.Mail(authd.MailVerifyEmail, authd.MailRetried)
	m.Outbox(func(context.Context) (authd.OutboxStats, error) { return authd.OutboxStats{Pending: 4, Dead: 1}, nil })
	set := authd.NewRevocationSet(time.Minute)
	set.Apply(authd.Revocation{At: time.Now(), SessionIDs: []uuid.UUID{uuid.New(), uuid.New()}})
	m.Revocations(set)
	m.Pool(func() PoolStats { return PoolStats{InUse: 2, Idle: 5, Max: 16, WaitCount: 7} })
	m.RateLimitFallback(func() bool { return true })
	m.Connections(func() ConnStats { return ConnStats{Open: 9, RefusedFull: 3, RefusedClient: 5, Evicted: 4} })

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`authd_http_requests_total{route="POST /v1/auth/login",status="401"} 1`,
		`authd_http_request_duration_seconds_count{route="POST /v1/auth/login"} 1`,
		`authd_security_events_total{event="login_failure",result="failure"} 1`,
		`authd_security_events_total{event="account_locked",result="success"} 1`,
		`authd_password_hash_seconds_count 1`, `authd_password_hash_queue 3`,
		`authd_mail_deliveries_total{kind="verify_email",outcome="retried"} 1`,
		`authd_mail_outbox_pending 4`, `authd_mail_outbox_dead 1`,
		`authd_db_connections_in_use 2`, `authd_db_connections_max 16`, `authd_db_connection_waits_total 7`,
		`authd_revoked_sessions 2`, `authd_rate_limit_fallback 1`, `go_goroutines`, `process_resident_memory_bytes`,
		`authd_connections_open 9`, `authd_connections_refused_total{reason="full"} 3`,
		`authd_connections_refused_total{reason="client"} 5`, `authd_connections_evicted_total 4`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// TestOutboxReadOnceAScrape: the outbox's two gauges come from one read of
// the store a scrape (one count, one snapshot), not one each.
func TestOutboxReadOnceAScrape(t *testing.T) {
	m := New()
	reads := 0
	m.Outbox(func(context.Context) (authd.OutboxStats, error) {
		reads++
		return authd.OutboxStats{Pending: reads, Dead: reads}, nil
	})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); reads != 1 || !strings.Contains(body, "authd_mail_outbox_pending 1") || !strings.Contains(body, "authd_mail_outbox_dead 1") {
		t.Errorf("%d reads for one scrape (pending and dead from reads 1 and 2?):\n%s", reads, body)
	}
}

func TestOutboxUnknownWhenTheStoreFails(t *testing.T) {
	m := New()
	m.Outbox(func(context.Context) (authd.OutboxStats, error) { return authd.OutboxStats{}, context.DeadlineExceeded })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "authd_mail_outbox_pending -1") || !strings.Contains(rec.Body.String(), "authd_mail_outbox_dead -1") {
		t.Error("a failing outbox read is not reported as -1")
	}
}
