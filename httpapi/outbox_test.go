package httpapi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authd/authd"
)

// auditDown is a store whose security log cannot be written, inside or
// outside a transaction.
type auditDown struct{ authd.Store }

type auditDownQueries struct{ authd.Queries }

var errAuditDown = errors.New("security log unavailable")

func (auditDown) CreateSecurityLog(context.Context, *authd.SecurityLog) error { return errAuditDown }

func (s auditDown) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(auditDownQueries{q}) })
}

func (auditDownQueries) CreateSecurityLog(context.Context, *authd.SecurityLog) error {
	return errAuditDown
}

// retryRows counts the admin_action rows of mail retries.
func retryRows(t *testing.T, s authd.Store) int {
	t.Helper()
	logs, err := s.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventAdminAction})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range logs {
		if l.AdditionalContext["action"] == "retry_mail" {
			n++
		}
	}
	return n
}

// TestAdminMailRetryAuditedInItsTransaction: reviving a dead mail and its
// admin_action row commit together: a retry whose row cannot be written
// leaves the mail dead, a retry of a mail that is not dead writes no row.
func TestAdminMailRetryAuditedInItsTransaction(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		switchable := &switchMailer{fail: true}
		e := newEnv(t, open(t), withMailer(switchable))
		ctx := context.Background()
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "retry@example.org", "password": goodPassword, "consent": true}), 202, "")
		for range authd.MaxMailAttempts {
			e.svc.DeliverMail(ctx)
			e.clock.Advance(2 * time.Hour)
		}
		dead, err := e.store.Mails(ctx, authd.MailFilter{Dead: true})
		if err != nil || len(dead) != 1 {
			t.Fatalf("dead mails: %v, %v; want one", dead, err)
		}
		id := dead[0].ID.String()

		broken := authd.NewService(e.cfg, authd.Deps{Store: auditDown{e.store}, Clock: e.clock})
		if err := broken.RetryMail(ctx, authd.Client{UserAgent: "test"}, dead[0].ID); err == nil {
			t.Fatal("RetryMail succeeded although its audit row could not be written")
		}
		if st, _ := e.store.OutboxStats(ctx); st.Dead != 1 || st.Pending != 0 {
			t.Errorf("outbox after a retry whose audit row failed: %+v; want the mail still dead", st)
		}

		switchable.set(false)
		want(t, "retry", e.admin("POST", "/v1/admin/mail/"+id+"/retry", nil), 204, "")
		if n := retryRows(t, e.store); n != 1 {
			t.Errorf("%d retry_mail rows after a retry, want 1", n)
		}
		want(t, "retry of a pending mail", e.admin("POST", "/v1/admin/mail/"+id+"/retry", nil), 404, "not_found")
		want(t, "retry of an unknown mail", e.admin("POST", "/v1/admin/mail/"+authd.NewID().String()+"/retry", nil), 404, "not_found")
		if n := retryRows(t, e.store); n != 1 {
			t.Errorf("%d retry_mail rows after retries of mails that were not dead, want 1", n)
		}
		if n, err := e.svc.DeliverMail(ctx); err != nil || n != 1 {
			t.Errorf("delivery after the retry: %d, %v", n, err)
		}
	})
}
