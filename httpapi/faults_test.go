package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	netmail "net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/mail"
	"github.com/authd/authd/storetest"
	"github.com/emersion/go-smtp"
)

// smtpInbox is an in-process SMTP server that refuses every message while
// down is set.
type smtpInbox struct {
	mu       sync.Mutex
	down     bool
	received []string
	refused  int
}

func (b *smtpInbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{b: b}, nil }

type smtpSession struct{ b *smtpInbox }

func (s *smtpSession) Mail(string, *smtp.MailOptions) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.b.down {
		s.b.refused++
		return &smtp.SMTPError{Code: 421, Message: "service not available, try later"}
	}
	return nil
}
func (s *smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.received = append(s.b.received, string(b))
	return err
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

func (b *smtpInbox) state() (received, refused int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.received), b.refused
}

// TestMailSurvivesSMTPOutage: the SMTP server refuses for a while; the
// outbox retries with backoff and the mail arrives once it recovers.
func TestMailSurvivesSMTPOutage(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		box := &smtpInbox{down: true}
		srv := smtp.NewServer(box)
		srv.Domain, srv.AllowInsecureAuth = "localhost", true
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		defer srv.Close()
		renderer, _ := mail.NewRenderer("https://auth.example.org", "")
		smtpMailer, err := mail.NewSMTP("smtp://"+ln.Addr().String(), "authd <no-reply@example.org>", renderer)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, open(t), withMailer(smtpMailer))
		ctx := context.Background()
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "o@example.org", "password": goodPassword, "consent": true}), 202, "")

		for attempt := 1; attempt <= 3; attempt++ {
			if n, err := e.svc.DeliverMail(ctx); err != nil || n != 0 {
				t.Fatalf("attempt %d while SMTP is down: sent %d, %v", attempt, n, err)
			}
			e.clock.Advance(time.Hour) // past any backoff
		}
		if _, refused := box.state(); refused != 3 {
			t.Errorf("the server refused %d times, want 3", refused)
		}
		st, _ := e.store.OutboxStats(ctx)
		if st.Pending != 1 {
			t.Fatalf("outbox after the outage: %+v, want the mail still pending", st)
		}
		box.mu.Lock()
		box.down = false
		box.mu.Unlock()
		if n, err := e.svc.DeliverMail(ctx); err != nil || n != 1 {
			t.Fatalf("after recovery: sent %d, %v", n, err)
		}
		received, _ := box.state()
		if received != 1 || !strings.Contains(box.received[0], "verify-email?token=") {
			t.Fatalf("received %d mails", received)
		}
		// The link in the delivered mail works.
		tok := linkToken(t, box.received[0])
		want(t, "verify with the delivered link", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tok}), 200, "")
		if st, _ := e.store.OutboxStats(ctx); st.Pending != 0 || st.Dead != 0 {
			t.Errorf("outbox after delivery: %+v", st)
		}
	})
}

// failingMailer always fails.
type failingMailer struct{}

func (failingMailer) Send(context.Context, authd.Mail) error {
	return errors.New("550 mailbox unavailable")
}

func TestMailDiesAfterLastAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withMailer(failingMailer{}))
	e.registerVerifiedVia(t)
	ctx := context.Background()
	for range authd.MaxMailAttempts + 2 {
		e.svc.DeliverMail(ctx)
		e.clock.Advance(2 * time.Hour)
	}
	st, err := e.store.OutboxStats(ctx)
	if err != nil || st.Dead != 1 || st.Pending != 0 {
		t.Errorf("outbox after %d failures: %+v, %v; want one dead mail", authd.MaxMailAttempts, st, err)
	}
	if !strings.Contains(e.logs.String(), "mail dead after its last attempt") {
		t.Error("a dead mail was not logged")
	}
}

// countingFailMailer fails every send, counting them.
type countingFailMailer struct {
	mu    sync.Mutex
	sends int
}

func (c *countingFailMailer) Send(context.Context, authd.Mail) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sends++
	return errors.New("451 try again later")
}

func (c *countingFailMailer) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.sends }

// TestMailRetriesBackOffUntilTheLastAttempt: a mail the relay refuses is
// tried again after 10 s, 40 s, 2m40s, … (at most an hour, with at most a
// tenth more of jitter), each failure told to the metrics hook as a retry;
// the MaxMailAttempts-th failure makes it dead (told once), and a dead mail
// is tried no more.
func TestMailRetriesBackOffUntilTheLastAttempt(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var mu sync.Mutex
		told := map[authd.MailEvent]int{}
		relay := &countingFailMailer{}
		e := newEnv(t, open(t), withMailer(relay), withHooks(authd.Hooks{Mail: func(_ authd.MailKind, ev authd.MailEvent) {
			mu.Lock()
			defer mu.Unlock()
			told[ev]++
		}}))
		e.registerVerifiedVia(t)
		ctx := context.Background()
		for n := 1; n <= authd.MaxMailAttempts; n++ {
			if _, err := e.svc.DeliverMail(ctx); err != nil {
				t.Fatal(err)
			}
			if got := relay.count(); got != n {
				t.Fatalf("attempt %d: %d sends", n, got)
			}
			pending, err := e.store.Mails(ctx, authd.MailFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if n == authd.MaxMailAttempts {
				if len(pending) != 0 {
					t.Fatalf("after the last attempt: %d mails pending, want none", len(pending))
				}
				break
			}
			if len(pending) != 1 {
				t.Fatalf("after attempt %d: %d mails pending, want the one", n, len(pending))
			}
			backoff := min(10*time.Second<<(2*min(n-1, 6)), time.Hour)
			wait := pending[0].NextAttemptAt.Sub(e.clock.Now())
			if wait < backoff-time.Millisecond || wait > backoff+backoff/10+time.Millisecond {
				t.Errorf("after attempt %d: retried in %v, want %v and at most a tenth more", n, wait, backoff)
			}
			e.clock.Advance(wait + time.Millisecond)
		}
		if st, err := e.store.OutboxStats(ctx); err != nil || st.Dead != 1 || st.Pending != 0 {
			t.Errorf("outbox after %d failures: %+v, %v; want one dead mail", authd.MaxMailAttempts, st, err)
		}
		e.clock.Advance(2 * time.Hour)
		if _, err := e.svc.DeliverMail(ctx); err != nil {
			t.Fatal(err)
		}
		if got := relay.count(); got != authd.MaxMailAttempts {
			t.Errorf("%d sends, want %d: a dead mail was tried again", got, authd.MaxMailAttempts)
		}
		mu.Lock()
		defer mu.Unlock()
		if told[authd.MailRetried] != authd.MaxMailAttempts-1 || told[authd.MailDead] != 1 || told[authd.MailSent] != 0 {
			t.Errorf("told the hook %v; want %d retries and one dead mail", told, authd.MaxMailAttempts-1)
		}
	})
}

// registerVerifiedVia registers an address, which queues one mail.
func (e *env) registerVerifiedVia(t *testing.T) {
	want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "dead@example.org", "password": goodPassword, "consent": true}), 202, "")
}

// countingMailer counts deliveries per recipient.
type countingMailer struct {
	mu   sync.Mutex
	sent map[string]int
}

func (c *countingMailer) Send(_ context.Context, m authd.Mail) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[m.To]++
	return nil
}

// TestTwoSendersNeverDoubleSend runs the outbox senders of two instances on
// one PostgreSQL database at once: every mail is delivered exactly once.
func TestTwoSendersNeverDoubleSend(t *testing.T) {
	t.Parallel()
	pg := instances(t, 2)
	storeA, storeB := pg[0], pg[1]
	counter := &countingMailer{sent: map[string]int{}}
	a := newEnv(t, storeA, withMailer(counter))
	b := newEnv(t, storeB, withMailer(counter))
	ctx := context.Background()
	u := storetest.NewUser("owner@example.org")
	if err := storeA.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		m := &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordChanged, UserID: u.ID,
			To: fmt.Sprintf("r%d@example.org", i), CreatedAt: a.clock.Now(), NextAttemptAt: a.clock.Now()}
		if err := storeA.EnqueueMail(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, e := range []*env{a, b, a, b} {
		wg.Go(func() {
			if _, err := e.svc.DeliverMail(ctx); err != nil {
				t.Errorf("DeliverMail: %v", err)
			}
		})
	}
	wg.Wait()
	if len(counter.sent) != n {
		t.Errorf("%d of %d mails delivered", len(counter.sent), n)
	}
	for to, c := range counter.sent {
		if c != 1 {
			t.Errorf("%s received %d copies", to, c)
		}
	}
}

// linkToken reads the text part of a raw message and returns the token of
// its link.
func linkToken(t *testing.T, raw string) string {
	t.Helper()
	msg, err := netmail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	parts := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := parts.NextPart() // decodes quoted-printable
		if err != nil {
			t.Fatalf("no text part with a link: %v", err)
		}
		body, _ := io.ReadAll(p)
		if _, after, ok := strings.Cut(string(body), "?token="); ok {
			return strings.Fields(after)[0]
		}
	}
}

// TestDeadMailVisibleAndRetried: a dead mail is listed for operators, and
// a retry sends it once the cause is fixed.
func TestDeadMailVisibleAndRetried(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		switchable := &switchMailer{fail: true}
		e := newEnv(t, open(t), withMailer(switchable))
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "lost@example.org", "password": goodPassword, "consent": true}), 202, "")
		ctx := context.Background()
		for range authd.MaxMailAttempts + 1 {
			e.svc.DeliverMail(ctx)
			e.clock.Advance(2 * time.Hour)
		}
		r := e.admin("GET", "/v1/admin/mail?state=dead", nil)
		want(t, "dead mail", r, 200, "")
		items := r.body["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("dead mails: %s", r.raw)
		}
		m := items[0].(map[string]any)
		if m["recipient"] != "lost@example.org" || m["kind"] != "verify_email" || m["attempts"] != float64(authd.MaxMailAttempts) ||
			!strings.Contains(m["last_error"].(string), "550") {
			t.Errorf("dead mail %v", m)
		}
		if r := e.admin("GET", "/v1/admin/mail", nil); len(r.body["items"].([]any)) != 0 {
			t.Errorf("pending mails: %s", r.raw)
		}
		want(t, "bad state", e.admin("GET", "/v1/admin/mail?state=lost", nil), 400, "validation_failed")
		// Unknown and malformed ids alike: one wording.
		for _, id := range []string{"0197c0de-0000-7000-8000-000000000000", "not-an-id"} {
			r := e.admin("POST", "/v1/admin/mail/"+id+"/retry", nil)
			want(t, "retry unknown", r, 404, "not_found")
			if r.str("detail") != "No such dead mail." {
				t.Errorf("retry of %s: detail %q, want No such dead mail.", id, r.str("detail"))
			}
		}

		switchable.set(false)
		want(t, "retry", e.admin("POST", "/v1/admin/mail/"+m["id"].(string)+"/retry", nil), 204, "")
		want(t, "retry again (no longer dead)", e.admin("POST", "/v1/admin/mail/"+m["id"].(string)+"/retry", nil), 404, "not_found")
		if n, err := e.svc.DeliverMail(ctx); err != nil || n != 1 {
			t.Errorf("delivery after the retry: %d, %v", n, err)
		}
		if st, _ := e.store.OutboxStats(ctx); st.Dead != 0 || st.Pending != 0 {
			t.Errorf("outbox after the retry: %+v", st)
		}
		r = e.admin("GET", "/v1/admin/security-logs?event_type=admin_action", nil)
		if !strings.Contains(r.raw, `"retry_mail"`) {
			t.Errorf("the retry is not in the security log: %s", r.raw)
		}
	})
}

// TestAdminMailListPages: the outbox listing pages as the other listings
// do: a full page says where the next one begins, the last one says none.
func TestAdminMailListPages(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		for i := range 3 {
			want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{
				"email": fmt.Sprintf("queued%d@example.org", i), "password": goodPassword, "consent": true}), 202, "")
			e.clock.Advance(time.Second)
		}
		r := e.admin("GET", "/v1/admin/mail?limit=2", nil)
		want(t, "first page", r, 200, "")
		if items, _ := r.body["items"].([]any); len(items) != 2 || r.str("next_cursor") == "" {
			t.Fatalf("first page: %s; want 2 mails and a next cursor", r.raw)
		}
		r = e.admin("GET", "/v1/admin/mail?limit=2&cursor="+r.str("next_cursor"), nil)
		want(t, "last page", r, 200, "")
		if items, _ := r.body["items"].([]any); len(items) != 1 || r.str("next_cursor") != "" {
			t.Errorf("last page: %s; want the third mail and no cursor", r.raw)
		}
	})
}

// switchMailer fails with a permanent error while fail is set.
type switchMailer struct {
	mu   sync.Mutex
	fail bool
}

func (s *switchMailer) set(fail bool) { s.mu.Lock(); s.fail = fail; s.mu.Unlock() }

func (s *switchMailer) Send(context.Context, authd.Mail) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("550 mailbox unavailable")
	}
	return nil
}
