package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
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

// recorder is a mailer that keeps what it sends; each send takes took of
// the fake clock, and during, when set, runs inside the nth send.
type recorder struct {
	mu     sync.Mutex
	clock  *clock
	took   time.Duration
	sent   []authd.Mail
	during func(n int)
}

func (r *recorder) Send(_ context.Context, m authd.Mail) error {
	r.mu.Lock()
	r.sent = append(r.sent, m)
	n := len(r.sent)
	r.mu.Unlock()
	if r.took > 0 {
		r.clock.Advance(r.took)
	}
	if r.during != nil {
		r.during(n)
	}
	return nil
}

func (r *recorder) mails() []authd.Mail {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// TestMailSentOnceAcrossSenders: while one sender works through a queue
// whose every send takes the full send timeout, a second sender on the
// same database sends what the first has not reached, and each mail goes
// out once, with a link that works.
func TestMailSentOnceAcrossSenders(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		const n = 8
		a := &recorder{took: 30 * time.Second} // the send timeout: the slowest a send can be
		e := newEnv(t, open(t), withMailer(a))
		a.clock = e.clock
		ctx := context.Background()
		for i := range n {
			want(t, "register", e.do("POST", "/v1/auth/register",
				map[string]any{"email": fmt.Sprintf("once%d@example.org", i), "password": goodPassword, "consent": true}), 202, "")
		}
		b := &recorder{}
		other := authd.NewService(e.cfg, authd.Deps{Store: e.store, Clock: e.clock, Mailer: b})
		// Two minutes into the first sender's pass, the second one polls.
		a.during = func(sent int) {
			if sent == 5 {
				if _, err := other.DeliverMail(ctx); err != nil {
					t.Errorf("second sender: %v", err)
				}
			}
		}
		if _, err := e.svc.DeliverMail(ctx); err != nil {
			t.Fatalf("first sender: %v", err)
		}
		all := append(a.mails(), b.mails()...)
		got := map[string]int{}
		for _, m := range all {
			got[m.To]++
		}
		for i := range n {
			if to := fmt.Sprintf("once%d@example.org", i); got[to] != 1 {
				t.Errorf("%s received %d mails, want 1", to, got[to])
			}
		}
		if len(b.mails()) == 0 {
			t.Error("the second sender sent nothing: the test no longer runs two senders")
		}
		for _, m := range all {
			want(t, "verify "+m.To+" with its link", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tokenOf(t, m)}), 200, "")
		}
		if st, _ := e.store.OutboxStats(ctx); st.Pending != 0 || st.Dead != 0 {
			t.Errorf("outbox after both senders: %+v, want empty", st)
		}
	})
}

// gate is a mailer whose sends wait for the test: each announces its mail
// on started and returns what the test puts on release.
type gate struct {
	started chan authd.Mail
	release chan error
}

func newGate() *gate { return &gate{started: make(chan authd.Mail, 1), release: make(chan error, 1)} }

func (g *gate) Send(_ context.Context, m authd.Mail) error {
	g.started <- m
	return <-g.release
}

// TestLapsedSenderCannotReleaseMail: a sender that stalls past its lease
// (a paused VM) while another sender has claimed the mail since can no
// longer release it for a retry, so no third send starts while the second
// is under way.
func TestLapsedSenderCannotReleaseMail(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		first := newGate()
		e := newEnv(t, open(t), withMailer(first))
		ctx := context.Background()
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "lapse@example.org", "password": goodPassword, "consent": true}), 202, "")

		var wg sync.WaitGroup
		firstDone := make(chan struct{})
		go func() {
			defer close(firstDone)
			if _, err := e.svc.DeliverMail(ctx); err != nil {
				t.Errorf("first sender: %v", err)
			}
		}()
		<-first.started
		e.clock.Advance(3 * time.Minute) // the first sender stalls past its lease

		second := newGate()
		secondSvc := authd.NewService(e.cfg, authd.Deps{Store: e.store, Clock: e.clock, Mailer: second})
		wg.Go(func() {
			if _, err := secondSvc.DeliverMail(ctx); err != nil {
				t.Errorf("second sender: %v", err)
			}
		})
		<-second.started

		first.release <- errors.New("421 try later") // the first sender wakes up to a failure
		<-firstDone
		e.clock.Advance(20 * time.Second) // past the retry's backoff, within the second's lease
		third := &recorder{}
		thirdSvc := authd.NewService(e.cfg, authd.Deps{Store: e.store, Clock: e.clock, Mailer: third})
		if _, err := thirdSvc.DeliverMail(ctx); err != nil {
			t.Errorf("third sender: %v", err)
		}
		second.release <- nil
		wg.Wait()

		if got := len(third.mails()); got != 0 {
			t.Errorf("a third sender sent %d mails while the second was sending it; want 0", got)
		}
		if st, _ := e.store.OutboxStats(ctx); st.Pending != 0 || st.Dead != 0 {
			t.Errorf("outbox after the second sender: %+v, want empty", st)
		}
	})
}
