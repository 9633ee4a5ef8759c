package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/syncbuf"
	"github.com/authd/authd/mail"
	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
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
// is under way; nor does it tell of a retry (a log line, a metric) that
// is not its to tell.
func TestLapsedSenderCannotReleaseMail(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		first := newGate()
		e := newEnv(t, open(t), withMailer(first))
		ctx := context.Background()
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "lapse@example.org", "password": goodPassword, "consent": true}), 202, "")
		var told sync.Map // the first sender's outcomes, as its metrics see them
		firstSvc := authd.NewService(e.cfg, authd.Deps{Store: e.store, Clock: e.clock, Mailer: first,
			Hooks: authd.Hooks{Mail: func(_ authd.MailKind, ev authd.MailEvent) { told.Store(ev, true) }}})

		var wg sync.WaitGroup
		firstDone := make(chan struct{})
		go func() {
			defer close(firstDone)
			if _, err := firstSvc.DeliverMail(ctx); err != nil {
				t.Errorf("first sender: %v", err)
			}
		}()
		<-first.started
		e.clock.Advance(4 * time.Minute) // the first sender stalls past its lease

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
		if _, ok := told.Load(authd.MailRetried); ok {
			t.Error("the lapsed sender counted a retry of a mail another sender holds")
		}
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

// pausingStore is a store on which a sender stalls once, right after it
// has claimed a mail (a paused VM, a long garbage collection): pause runs
// then.
type pausingStore struct {
	authd.Store
	pause func()
}

func (p *pausingStore) ClaimMail(ctx context.Context, claim uuid.UUID, now time.Time, lease time.Duration) (*authd.OutboxMail, error) {
	m, err := p.Store.ClaimMail(ctx, claim, now, lease)
	if m != nil && p.pause != nil {
		pause := p.pause
		p.pause = nil
		pause()
	}
	return m, err
}

// TestStalledSenderSendsNothingAfterItsLease: a sender that stalls past
// its lease between claiming a mail and sending it, while a second sender
// claims the mail and is sending it, sends nothing when it wakes up: no
// second copy, and for a verification mail no new link that would void
// the one the second sender mails.
func TestStalledSenderSendsNothingAfterItsLease(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		for _, kind := range []authd.MailKind{authd.MailVerifyEmail, authd.MailPasswordChanged} {
			t.Run(string(kind), func(t *testing.T) {
				e := newEnv(t, open(t))
				ctx := context.Background()
				address := "stalled-" + strings.ReplaceAll(string(kind), "_", "-") + "@example.org"
				want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": address,
					"password": goodPassword, "consent": true}), 202, "")
				if kind != authd.MailVerifyEmail {
					e.mail.flush() // the verification mail goes out; the notice below is the one under test
					u, err := e.store.UserByEmail(ctx, address)
					if err != nil {
						t.Fatal(err)
					}
					now := e.clock.Now()
					if err := e.store.EnqueueMail(ctx, &authd.OutboxMail{ID: authd.NewID(), Kind: kind, UserID: u.ID,
						To: u.Email, CreatedAt: now, NextAttemptAt: now}); err != nil {
						t.Fatal(err)
					}
				}

				first := &recorder{}
				paused := &pausingStore{Store: e.store}
				firstSvc := authd.NewService(e.cfg, authd.Deps{Store: paused, Clock: e.clock, Mailer: first})
				second := newGate()
				secondSvc := authd.NewService(e.cfg, authd.Deps{Store: e.store, Clock: e.clock, Mailer: second})
				secondDone := make(chan struct{})
				var secondMail authd.Mail
				paused.pause = func() {
					e.clock.Advance(4 * time.Minute) // past the first sender's lease
					go func() {
						defer close(secondDone)
						if _, err := secondSvc.DeliverMail(ctx); err != nil {
							t.Errorf("second sender: %v", err)
						}
					}()
					secondMail = <-second.started // the second sender holds the mail and is sending it
				}
				if n, err := firstSvc.DeliverMail(ctx); err != nil || n != 0 {
					t.Errorf("the stalled sender: sent %d, %v; want 0", n, err)
				}
				second.release <- nil
				<-secondDone

				if got := first.mails(); len(got) != 0 {
					t.Errorf("the stalled sender sent %d mails after its lease; want 0", len(got))
				}
				if secondMail.Kind != kind || secondMail.To != address {
					t.Fatalf("the second sender sent %+v; want the %s mail to %s", secondMail, kind, address)
				}
				if kind == authd.MailVerifyEmail {
					want(t, "verify with the link the second sender mailed", e.do("POST", "/v1/auth/verify-email",
						map[string]string{"token": tokenOf(t, secondMail)}), 200, "")
				}
				if st, _ := e.store.OutboxStats(ctx); st.Pending != 0 || st.Dead != 0 {
					t.Errorf("outbox after the second sender: %+v, want empty", st)
				}
			})
		}
	})
}

// archiveTee is the dev mailer that also records what it sends, so that
// the env's helpers find the links.
type archiveTee struct {
	*mail.Dev
	rec authd.Mailer
}

func (a *archiveTee) Send(ctx context.Context, m authd.Mail) error {
	if err := a.Dev.Send(ctx, m); err != nil {
		return err
	}
	return a.rec.Send(ctx, m)
}

// newDevMailerEnv is an env whose mail goes through the dev mailer into
// its returned directory.
func newDevMailerEnv(t *testing.T, store authd.Store) (*env, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "outbox")
	renderer, err := mail.NewRenderer("https://auth.example.org", "")
	if err != nil {
		t.Fatal(err)
	}
	tee := &archiveTee{Dev: &mail.Dev{Dir: dir, From: "authd <no-reply@localhost>", Renderer: renderer,
		Logger: slog.New(slog.DiscardHandler)}}
	e := newEnv(t, store, withMailer(tee))
	tee.rec = e.mail
	return e, dir
}

// emlHolding counts the .eml files in dir that contain address.
func emlHolding(t *testing.T, dir, address string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToLower(string(b)), strings.ToLower(address)) {
			n++
		}
	}
	return n
}

// TestErasureRemovesDevMailerFiles: after a self-service or an
// administrator's erasure no .eml file of the dev mailer holds the erased
// address, nor the address a pending change was to move it to, neither at
// once nor once the deletion notice has gone out; other people's files
// stay.
func TestErasureRemovesDevMailerFiles(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e, dir := newDevMailerEnv(t, open(t))
		mailed := func(address string) {
			e.registerVerified(address, goodPassword)
			e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": address})
			e.do("POST", "/v1/auth/register", map[string]any{"email": address, "password": goodPassword, "consent": true})
			e.mail.flush()
			if n := emlHolding(t, dir, address); n < 3 {
				t.Fatalf("%d .eml files hold %s before the erasure, want its verification, reset and notice", n, address)
			}
		}
		mailed("stay@example.org")

		mailed("self@example.org")
		access, _ := e.login("self@example.org", goodPassword)
		want(t, "ask to move", e.do("POST", "/v1/users/me/email", map[string]string{"new_email": "self-new@example.org",
			"password": goodPassword}, bearer(access)...), 202, "")
		e.mail.flush()
		if n := emlHolding(t, dir, "self-new@example.org"); n != 1 {
			t.Fatalf("%d .eml files hold self-new@example.org, want the change's link", n)
		}
		want(t, "erase myself", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(access)...), 204, "")
		for _, address := range []string{"self@example.org", "self-new@example.org"} {
			if n := emlHolding(t, dir, address); n != 0 {
				t.Errorf("%d .eml files hold %s after the erasure", n, address)
			}
		}

		mailed("erased@example.org")
		r := e.admin("GET", "/v1/admin/users?email=erased@example.org", nil)
		want(t, "find the user", r, 200, "")
		id := r.body["items"].([]any)[0].(map[string]any)["id"].(string)
		want(t, "admin erasure", e.admin("DELETE", "/v1/admin/users/"+id, nil), 204, "")
		if n := emlHolding(t, dir, "erased@example.org"); n != 0 {
			t.Errorf("%d .eml files hold erased@example.org after its erasure", n)
		}

		e.mail.flush() // the deletion notices go out
		for _, address := range []string{"self@example.org", "erased@example.org"} {
			if n := emlHolding(t, dir, address); n != 0 {
				t.Errorf("%d .eml files hold %s once the deletion notice was sent", n, address)
			}
		}
		if n := emlHolding(t, dir, "stay@example.org"); n < 3 {
			t.Errorf("%d .eml files hold stay@example.org, whom no one erased; want its 3", n)
		}
	})
}

// TestErasureNoticeForgetsCopiesWithoutItsAccount: sending a deletion
// notice removes the dev mailer's copies the erasure could not reach (one
// sent beside it by another sender, or an erasure by a process without the
// archive), by address alone when retention has deleted the erased
// account's tombstone first, so that the notice names no account.
func TestErasureNoticeForgetsCopiesWithoutItsAccount(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e, dir := newDevMailerEnv(t, open(t))
		ctx := context.Background()
		const email = "late.notice@example.org"
		e.registerVerified(email, goodPassword)
		files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
		if err != nil || len(files) != 1 {
			t.Fatalf("dev mailer files before the erasure: %v, %v; want the verification mail", files, err)
		}
		missed, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		access, _ := e.login(email, goodPassword)
		want(t, "erase myself", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword},
			bearer(access)...), 204, "")
		if err := os.WriteFile(files[0], missed, 0o600); err != nil { // the copy the erasure missed
			t.Fatal(err)
		}

		e.clock.Advance(91 * 24 * time.Hour) // the notice waits while retention runs
		res, err := e.svc.Purge(ctx, 90*24*time.Hour, false)
		if err != nil || res.ErasedAccounts != 1 {
			t.Fatalf("purge: %+v, %v; want the tombstone deleted", res, err)
		}
		if n := emlHolding(t, dir, email); n != 1 {
			t.Fatalf("%d .eml files hold %s before its notice is sent, want the one the erasure missed", n, email)
		}
		if n := e.mail.count(authd.MailAccountDeleted, email); n != 1 {
			t.Fatalf("%d deletion notices sent to %s, want 1", n, email)
		}
		if n := emlHolding(t, dir, email); n != 0 {
			t.Errorf("%d .eml files hold %s once its notice, which names no account, was sent", n, email)
		}
	})
}

// TestRetentionPrunesDevMailerFiles: a purge removes the dev mailer's files
// older than the security-log retention, and a dry run removes nothing.
func TestRetentionPrunesDevMailerFiles(t *testing.T) {
	t.Parallel()
	e, dir := newDevMailerEnv(t, openSQLite(t))
	const retention = 90 * 24 * time.Hour
	e.registerVerified("old@example.org", goodPassword)
	e.registerVerified("new@example.org", goodPassword)
	// The files carry the wall clock's time; date them by the fake one.
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	for _, f := range files {
		at := e.clock.Now().Add(-time.Hour)
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "old@example.org") {
			at = e.clock.Now().Add(-retention - time.Hour)
		}
		if err := os.Chtimes(f, at, at); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if _, err := e.svc.Purge(ctx, retention, true); err != nil || emlHolding(t, dir, "old@example.org") != 1 {
		t.Fatalf("dry run: %v; want the old file kept", err)
	}
	if _, err := e.svc.Purge(ctx, retention, false); err != nil {
		t.Fatal(err)
	}
	if old, recent := emlHolding(t, dir, "old@example.org"), emlHolding(t, dir, "new@example.org"); old != 0 || recent != 1 {
		t.Errorf("after the purge %d old and %d recent files; want 0 and 1", old, recent)
	}
}

// failingPurge is a store whose retention purge fails after some work, as
// one with an erasure it cannot finish does.
type failingPurge struct{ authd.Store }

var errPurgeStuck = errors.New("an erasure is stuck")

func (f failingPurge) Purge(ctx context.Context, req authd.PurgeRequest) (authd.PurgeResult, error) {
	res, err := f.Store.Purge(ctx, req)
	return res, errors.Join(err, errPurgeStuck)
}

// TestRetentionPrunesDevMailerFilesWhenTheStoreFails: the mailer's copies
// are this instance's own, and their retention does not wait on the
// database's: a purge whose store fails still removes the old files, and
// answers the store's error.
func TestRetentionPrunesDevMailerFilesWhenTheStoreFails(t *testing.T) {
	t.Parallel()
	e, dir := newDevMailerEnv(t, failingPurge{openSQLite(t)})
	const retention = 90 * 24 * time.Hour
	e.registerVerified("old@example.org", goodPassword)
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	for _, f := range files {
		at := e.clock.Now().Add(-retention - time.Hour)
		if err := os.Chtimes(f, at, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Purge(context.Background(), retention, false); !errors.Is(err, errPurgeStuck) {
		t.Errorf("purge: %v; want the store's error", err)
	}
	if n := emlHolding(t, dir, "old@example.org"); n != 0 {
		t.Errorf("%d old files left after a purge whose store failed; want 0", n)
	}
}

// TestRetentionLogsWhatAFailingPurgeDid: serve's hourly purge that fails
// past some steps (an erasure it cannot finish fails every run) logs what
// it deleted with the error, not the error alone.
func TestRetentionLogsWhatAFailingPurgeDid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, failingPurge{openSQLite(t)})
	const retention = 90 * 24 * time.Hour
	e.registerVerified("old@example.org", goodPassword)
	e.clock.Advance(retention + time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.svc.RunRetention(ctx, retention, time.Hour)
	}()
	defer func() { cancel(); <-done }()
	for !strings.Contains(e.logs.String(), "retention purge failed") {
		select {
		case <-done:
			t.Fatal("RunRetention returned before its context ended")
		case <-time.After(10 * time.Millisecond):
		}
	}
	line := e.logs.String()[strings.Index(e.logs.String(), "retention purge failed"):]
	line = line[:strings.IndexByte(line, '\n')]
	if !regexp.MustCompile(`security_logs=[1-9]`).MatchString(line) || !strings.Contains(line, errPurgeStuck.Error()) {
		t.Errorf("a failing purge logged %q; want the rows it deleted and its error", line)
	}
}

// rcptRefuser is an SMTP server's backend that refuses every recipient
// with its code, quoting the address as relays do.
type rcptRefuser struct{ code smtp.EnhancedCode }

func (r rcptRefuser) NewSession(*smtp.Conn) (smtp.Session, error) { return r, nil }
func (rcptRefuser) Mail(string, *smtp.MailOptions) error          { return nil }
func (r rcptRefuser) Rcpt(to string, _ *smtp.RcptOptions) error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: r.code, Message: "<" + to + ">: Recipient address rejected"}
}
func (rcptRefuser) Data(io.Reader) error { return nil }
func (rcptRefuser) Reset()               {}
func (rcptRefuser) Logout() error        { return nil }

// refusingRelay returns an SMTP mailer whose relay refuses every recipient
// with code.
func refusingRelay(t *testing.T, code smtp.EnhancedCode) *mail.SMTP {
	t.Helper()
	srv := smtp.NewServer(rcptRefuser{code})
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	renderer, _ := mail.NewRenderer("https://auth.example.org", "")
	m, err := mail.NewSMTP("smtp://"+ln.Addr().String(), "authd <no-reply@example.org>", renderer)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMailFailuresLogNoAddress: the log lines of a mail that fails until it
// dies name the mail and the relay's codes, never the address, which an
// erasure could not remove from the log.
func TestMailFailuresLogNoAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withMailer(refusingRelay(t, smtp.EnhancedCode{5, 7, 1})))
	const address = "private.person@example.org"
	want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": address, "password": goodPassword, "consent": true}), 202, "")
	ctx := context.Background()
	for range authd.MaxMailAttempts {
		if _, err := e.svc.DeliverMail(ctx); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Hour)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "will retry") || !strings.Contains(logs, "mail dead after its last attempt") ||
		!strings.Contains(logs, "550 5.7.1") {
		t.Fatalf("the failures were not logged with the relay's codes:\n%s", logs)
	}
	if strings.Contains(logs, "private.person") {
		t.Errorf("the log holds the address:\n%s", logs)
	}
}

// TestMailToANonexistentAddressDiesAtOnce: a relay that refuses the
// recipient for good (550 5.1.1, no such mailbox) is not asked again for
// hours: the mail is dead after one attempt, listed for operators with the
// relay's codes, and logged as such.
func TestMailToANonexistentAddressDiesAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t), withMailer(refusingRelay(t, smtp.EnhancedCode{5, 1, 1})))
	want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "typo@example.org", "password": goodPassword, "consent": true}), 202, "")
	ctx := context.Background()
	if _, err := e.svc.DeliverMail(ctx); err != nil {
		t.Fatal(err)
	}
	dead, err := e.store.Mails(ctx, authd.MailFilter{Dead: true})
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead mails after one attempt: %v, %v; want the verification mail", dead, err)
	}
	if dead[0].Attempts != 1 || !strings.Contains(dead[0].LastError, "550 5.1.1") {
		t.Errorf("dead mail: %d attempts, last error %q; want 1 and the relay's codes", dead[0].Attempts, dead[0].LastError)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "its recipient cannot receive mail") || strings.Contains(logs, "will retry") {
		t.Errorf("the log does not say the mail died for its recipient:\n%s", logs)
	}
}

// hangUpMailer accepts every mail and, as it does, ends the pass that sent
// it, as a shutdown's last pass running out of time does.
type hangUpMailer struct {
	end  context.CancelFunc
	sent int
}

func (m *hangUpMailer) Send(context.Context, authd.Mail) error {
	m.sent++
	m.end()
	return nil
}

// TestSentMailIsSettledWhateverThePass: a mail the relay accepted is
// recorded as sent even when the pass that sent it ends right then, so no
// later pass sends it again (a second verification mail would void the
// first one's link).
func TestSentMailIsSettledWhateverThePass(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		m := &hangUpMailer{}
		e := newEnv(t, open(t), withMailer(m))
		want(t, "register", e.do("POST", "/v1/auth/register",
			map[string]any{"email": "once@example.org", "password": goodPassword, "consent": true}), 202, "")
		pass, end := context.WithCancel(context.Background())
		m.end = end
		e.svc.DeliverMail(pass) //nolint:errcheck // the pass ends after the first mail: its error is the cancellation
		if m.sent != 1 {
			t.Fatalf("%d mails sent, want 1", m.sent)
		}
		if st, err := e.store.OutboxStats(context.Background()); err != nil || st.Pending != 0 || st.Dead != 0 {
			t.Errorf("outbox after the pass: %+v, %v; want the sent mail settled", st, err)
		}
		e.clock.Advance(time.Hour) // past any lease
		m.end = func() {}
		if n, err := e.svc.DeliverMail(context.Background()); err != nil || n != 0 || m.sent != 1 {
			t.Errorf("a later pass sent %d (%v); the relay got %d mails, want 1", n, err, m.sent)
		}
	})
}

// TestQueuedMailWakesTheSender: a flow that queues mail wakes this
// instance's sender, which delivers it at once, not at its next poll (an
// hour away here): a verification link waits for no timer.
func TestQueuedMailWakesTheSender(t *testing.T) {
	t.Parallel()
	m := &heldMailer{started: make(chan struct{}, 8), release: make(chan struct{})}
	close(m.release) // every send goes through at once
	e := newEnv(t, openSQLite(t), withMailer(m))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.RunOutbox(ctx, context.Background(), time.Hour); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	// The first mail may meet the sender's first pass; the second comes
	// after that pass has sent it.
	for i := range 2 {
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{
			"email": fmt.Sprintf("woken%d@example.org", i), "password": goodPassword, "consent": true}), 202, "")
		select {
		case <-m.started:
		case <-time.After(30 * time.Second):
			t.Fatalf("registration %d's mail not sent within 30 s; want it at once, the next poll an hour away", i+1)
		}
	}
}

// TestShutdownClaimsNoMoreMail: once the outbox sender's context ends, the
// mail in hand is still sent, and every later one only within the last
// pass, whose time is bounded (10 s): a backlog behind a relay that times
// out (30 s a mail) would otherwise hold a shutdown for all of it. Told
// by each send's deadline: 30 s ahead in an ordinary pass, at most the
// last pass's in that one.
func TestShutdownClaimsNoMoreMail(t *testing.T) {
	t.Parallel()
	m := &heldMailer{started: make(chan struct{}, 8), release: make(chan struct{})}
	e := newEnv(t, openSQLite(t), withMailer(m))
	for i := range 3 {
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{
			"email": fmt.Sprintf("held%d@example.org", i), "password": goodPassword, "consent": true}), 202, "")
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.RunOutbox(ctx, context.Background(), time.Hour); close(done) }()
	<-m.started // the first mail in hand
	stop()
	close(m.release)
	<-done
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.left) != 3 {
		t.Fatalf("%d mails sent by the shutdown's end, want all 3 (the last pass sends the rest)", len(m.left))
	}
	if m.left[0] <= 10*time.Second {
		t.Errorf("the first mail's send had %v left; want an ordinary pass's 30 s", m.left[0])
	}
	for i, left := range m.left[1:] {
		if left > 10*time.Second {
			t.Errorf("mail %d, claimed after the sender's context ended, had %v to be sent; want the last pass's 10 s at most", i+2, left)
		}
	}
}

// TestStopDeadlineCutsMailInHand: the sender's cut (a stop's deadline)
// ends the send in hand, which its context's end alone does not; the mail
// is queued again, due at once, and no other is claimed after it.
func TestStopDeadlineCutsMailInHand(t *testing.T) {
	t.Parallel()
	m := &heldMailer{started: make(chan struct{}, 8), release: make(chan struct{})}
	e := newEnv(t, openSQLite(t), withMailer(m))
	for i := range 2 {
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{
			"email": fmt.Sprintf("cutoff%d@example.org", i), "password": goodPassword, "consent": true}), 202, "")
	}
	ctx, stop := context.WithCancel(context.Background())
	work, cut := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.RunOutbox(ctx, work, time.Hour); close(done) }()
	<-m.started // the first mail in hand, held for good by the relay
	stop()
	select {
	case <-done:
		t.Fatal("the sender returned as its context ended, with a mail in hand")
	case <-time.After(100 * time.Millisecond):
	}
	cut()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sender did not return once cut, its send held by the relay")
	}
	if n := len(m.started); n != 0 {
		t.Errorf("%d more mails claimed after the cut, want none", n)
	}
	if st, err := e.store.OutboxStats(context.Background()); err != nil || st.Pending != 2 || st.Dead != 0 {
		t.Fatalf("outbox after the cut: %+v, %v; want both mails pending", st, err)
	}
	close(m.release)
	// The fake clock has not moved: only mail due at once goes.
	if n, err := e.svc.DeliverMail(context.Background()); n != 2 || err != nil {
		t.Errorf("the next pass: %d sent, %v; want both, the cut one due at once", n, err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "cut short by the sender's stop") {
		t.Errorf("the cut send was not logged:\n%s", logs)
	}
}

// boundedStore notes whether the sender's calls to claim a mail and to
// extend its lease come with a deadline, and how far off.
type boundedStore struct {
	authd.Store
	mu   sync.Mutex
	left map[string]time.Duration // by call; -1: no deadline
}

func (b *boundedStore) note(call string, ctx context.Context) {
	left := time.Duration(-1)
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, seen := b.left[call]; !seen {
		b.left[call] = left
	}
}

func (b *boundedStore) ClaimMail(ctx context.Context, claim uuid.UUID, now time.Time, lease time.Duration) (*authd.OutboxMail, error) {
	b.note("ClaimMail", ctx)
	return b.Store.ClaimMail(ctx, claim, now, lease)
}

func (b *boundedStore) ExtendMailClaim(ctx context.Context, id, claim uuid.UUID, until time.Time) error {
	b.note("ExtendMailClaim", ctx)
	return b.Store.ExtendMailClaim(ctx, id, claim, until)
}

// TestSenderStoreCallsAreBounded: claiming a mail and extending its lease
// have a deadline of their own (10 s) in a pass that has none, so that a
// database that stops answering does not hold the sender, and a stop
// waiting for it, for good.
func TestSenderStoreCallsAreBounded(t *testing.T) {
	t.Parallel()
	store := &boundedStore{Store: openSQLite(t), left: map[string]time.Duration{}}
	e := newEnv(t, store)
	want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{
		"email": "bounded@example.org", "password": goodPassword, "consent": true}), 202, "")
	if n, err := e.svc.DeliverMail(context.Background()); n != 1 || err != nil {
		t.Fatalf("pass: %d sent, %v", n, err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, call := range []string{"ClaimMail", "ExtendMailClaim"} {
		if left, ok := store.left[call]; !ok || left <= 0 || left > 10*time.Second {
			t.Errorf("%s had %v before its deadline (-1: none; called: %v); want 10 s at most", call, left, ok)
		}
	}
}

// cutStore ends the pass (stop) as the sender mints a mail's link (its
// transaction) or extends its lease right before the send, the first time,
// and waits for that end.
type cutStore struct {
	authd.Store
	at   string // "mint" or "extend"
	stop func()
}

func (c *cutStore) cut(ctx context.Context, at string) error {
	if stop := c.stop; stop != nil && c.at == at {
		c.stop = nil
		stop()
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (c *cutStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	if err := c.cut(ctx, "mint"); err != nil {
		return err
	}
	return c.Store.InTx(ctx, fn)
}

func (c *cutStore) ExtendMailClaim(ctx context.Context, id, claim uuid.UUID, until time.Time) error {
	if err := c.cut(ctx, "extend"); err != nil {
		return err
	}
	return c.Store.ExtendMailClaim(ctx, id, claim, until)
}

// TestCutBeforeTheSendRequeues: a pass whose time runs out before the send
// — as it mints the link or extends the lease — queues the mail again, due
// at once, as a cut send does, rather than leave it claimed for its lease.
func TestCutBeforeTheSendRequeues(t *testing.T) {
	t.Parallel()
	for _, at := range []string{"mint", "extend"} {
		t.Run(at, func(t *testing.T) {
			store := &cutStore{Store: openSQLite(t), at: at}
			e := newEnv(t, store)
			want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{
				"email": "cut-early@example.org", "password": goodPassword, "consent": true}), 202, "")
			ctx, stop := context.WithCancel(context.Background())
			store.stop = stop
			if n, err := e.svc.DeliverMail(ctx); n != 0 || !errors.Is(err, context.Canceled) {
				t.Fatalf("a pass cut before its send: %d sent, %v; want none and its context's end", n, err)
			}
			// The fake clock has not moved: only a mail due at once goes.
			if n, err := e.svc.DeliverMail(context.Background()); n != 1 || err != nil {
				t.Errorf("the next pass: %d sent, %v; want the cut mail sent at once", n, err)
			}
		})
	}
}

// heldMailer holds each send until release is closed, and notes how long
// each had left before its context's deadline.
type heldMailer struct {
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	left    []time.Duration
}

func (h *heldMailer) Send(ctx context.Context, _ authd.Mail) error {
	deadline, _ := ctx.Deadline()
	h.mu.Lock()
	h.left = append(h.left, time.Until(deadline))
	h.mu.Unlock()
	h.started <- struct{}{}
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestCutSendIsNotARelayFailure: a send cut short because the pass's own
// time ran out (a stop's last pass) is queued again at once, not backed off
// (nor, at its last attempt, killed) as a failure of the relay would be.
func TestCutSendIsNotARelayFailure(t *testing.T) {
	t.Parallel()
	m := &cuttingMailer{}
	e := newEnv(t, openSQLite(t), withMailer(m))
	want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{
		"email": "cut@example.org", "password": goodPassword, "consent": true}), 202, "")
	ctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	if n, err := e.svc.DeliverMail(ctx); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("a pass stopped during its send: %d sent, %v; want none and its context's end", n, err)
	}
	// The fake clock has not moved: only a mail due at once goes.
	if n, err := e.svc.DeliverMail(context.Background()); n != 1 || err != nil {
		t.Errorf("the next pass: %d sent, %v; want the cut mail sent at once", n, err)
	}
}

// cuttingMailer ends the pass that sends through it (stop) during its
// first send, then sends.
type cuttingMailer struct {
	mu   sync.Mutex
	stop context.CancelFunc
	cut  bool
}

func (c *cuttingMailer) Send(ctx context.Context, _ authd.Mail) error {
	c.mu.Lock()
	first := !c.cut
	c.cut = true
	c.mu.Unlock()
	if !first {
		return nil
	}
	c.stop()
	<-ctx.Done()
	return ctx.Err()
}

// TestNewLinkMailWithdrawsTheQueuedOne: a verification or reset mail asked
// for again while the last is still queued (the relay down, say) replaces
// it: once the relay is back one mail goes out, its link the live one.
// All went, each link but the newest dead, and senders racing on their
// due times could deliver the dead one last.
func TestNewLinkMailWithdrawsTheQueuedOne(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "again@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
			"consent": true}), 202, "")
		for range 2 {
			want(t, "resend", e.do("POST", "/v1/auth/verify-email/resend", map[string]string{"email": email}), 202, "")
		}
		if n := e.mail.count(authd.MailVerifyEmail, email); n != 1 {
			t.Errorf("%d verification mails went out; want the newest alone", n)
		}
		want(t, "verify with its link", e.do("POST", "/v1/auth/verify-email",
			map[string]string{"token": tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, email))}), 200, "")

		for range 2 {
			want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		}
		if n := e.mail.count(authd.MailPasswordReset, email); n != 1 {
			t.Errorf("%d reset mails went out; want the newest alone", n)
		}
		want(t, "reset with its link", e.do("POST", "/v1/auth/password/reset", map[string]string{
			"token": tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email)), "new_password": "a fresh passphrase"}), 204, "")
	})
}

// TestMailWithdrawnMidSend: a verification mail asked for again while the
// last is in the relay's hands withdraws it; the sender, told its claim no
// longer holds the mail well within its lease, says it was withdrawn, not
// that a lapsed claim may have it sent twice (an error an operator is paged
// for). The new mail goes out with the live link.
func TestMailWithdrawnMidSend(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email = "midsend@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
			"consent": true}), 202, "")
		g := newGate()
		var logs syncbuf.Buffer
		// The sender is slow to mint the link: its lease, extended since,
		// holds all the same.
		slow := &pausingStore{Store: e.store, pause: func() { e.clock.Advance(2 * time.Minute) }}
		sender := authd.NewService(e.cfg, authd.Deps{Store: slow, Clock: e.clock, Mailer: g,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := sender.DeliverMail(context.Background()); err != nil {
				t.Errorf("sender: %v", err)
			}
		}()
		<-g.started
		want(t, "resend", e.do("POST", "/v1/auth/verify-email/resend", map[string]string{"email": email}), 202, "")
		g.release <- nil
		again := <-g.started // the sender goes on to the new mail
		g.release <- nil
		<-done
		if l := logs.String(); !strings.Contains(l, "mail withdrawn while it was being sent") || strings.Contains(l, "lapsed") {
			t.Errorf("the sender's log does not say the mail was withdrawn:\n%s", l)
		}
		want(t, "verify with the new link", e.do("POST", "/v1/auth/verify-email",
			map[string]string{"token": tokenOf(t, again)}), 200, "")
	})
}

// TestMailTakenOverBySkewedClockIsALapse: an instance whose clock runs
// well ahead re-claims a mail while its first sender is still sending it,
// within the lease as that sender's clock has it: the first sender, its
// record refused, finds the mail still queued under the other claim and
// says a lapsed claim may send it twice (an error an operator must see),
// not that it was withdrawn.
func TestMailTakenOverBySkewedClockIsALapse(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "skew@example.org", "password": goodPassword,
			"consent": true}), 202, "")
		first, second := newGate(), newGate()
		var logs syncbuf.Buffer
		firstSvc := authd.NewService(e.cfg, authd.Deps{Store: e.store, Clock: e.clock, Mailer: first,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		ahead := &clock{now: e.clock.Now().Add(4 * time.Minute)}
		secondSvc := authd.NewService(e.cfg, authd.Deps{Store: e.store, Clock: ahead, Mailer: second})
		ctx := context.Background()
		firstDone, secondDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(firstDone)
			if _, err := firstSvc.DeliverMail(ctx); err != nil {
				t.Errorf("first sender: %v", err)
			}
		}()
		<-first.started
		go func() {
			defer close(secondDone)
			if _, err := secondSvc.DeliverMail(ctx); err != nil {
				t.Errorf("second sender: %v", err)
			}
		}()
		<-second.started
		first.release <- nil
		<-firstDone
		second.release <- nil
		<-secondDone
		if l := logs.String(); !strings.Contains(l, "mail sent after its claim had lapsed") || strings.Contains(l, "withdrawn") {
			t.Errorf("the first sender's log does not tell of the lapse:\n%s", l)
		}
	})
}

// TestMailNoLongerWantedIsDropped: a verification mail whose address was
// verified while it waited in the outbox is not sent (no mail with an
// empty link, no link minted for an address already verified): it leaves
// the outbox, counted as dropped, not as sent.
func TestMailNoLongerWantedIsDropped(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		var mu sync.Mutex
		events := map[authd.MailEvent]int{}
		e := newEnv(t, open(t), withHooks(authd.Hooks{Mail: func(_ authd.MailKind, ev authd.MailEvent) {
			mu.Lock()
			defer mu.Unlock()
			events[ev]++
		}}))
		ctx := context.Background()
		const email = "verified-meanwhile@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
			"consent": true}), 202, "")
		u := e.user(email)
		u.EmailVerified = true
		if err := e.store.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if n := e.mail.count(authd.MailVerifyEmail, email); n != 0 {
			t.Errorf("%d verification mails went to an address verified meanwhile; want none", n)
		}
		if st, err := e.store.OutboxStats(ctx); err != nil || st.Pending != 0 || st.Dead != 0 {
			t.Errorf("the outbox after the pass: %+v, %v; want the mail gone", st, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if events[authd.MailDropped] != 1 || events[authd.MailSent] != 0 {
			t.Errorf("mail events %v; want one dropped, none sent", events)
		}
	})
}

// TestMailToAnOldAddressIsDropped: a reset mail queued for an address the
// account no longer has (moved by a path that did not withdraw it, here
// by hand) is dropped by the sender, not sent with a working link to the
// old address.
func TestMailToAnOldAddressIsDropped(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const old = "moved-by-hand@example.org"
		e.registerVerified(old, goodPassword)
		before := e.mail.count(authd.MailPasswordReset, old)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": old}), 202, "")
		u := e.user(old)
		u.Email = "moved-by-hand@example.net"
		if err := e.store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		if n := e.mail.count(authd.MailPasswordReset, old) - before; n != 0 {
			t.Errorf("%d reset mails went to the account's old address; want none", n)
		}
		if st, err := e.store.OutboxStats(context.Background()); err != nil || st.Pending != 0 || st.Dead != 0 {
			t.Errorf("the outbox after the pass: %+v, %v; want the mail gone", st, err)
		}
	})
}

// noticeRefusingMailer keeps every mail but an erasure notice, which it
// refuses as undeliverable (the erased address bounces).
type noticeRefusingMailer struct {
	mu    sync.Mutex
	mails []authd.Mail
}

func (m *noticeRefusingMailer) Send(_ context.Context, mail authd.Mail) error {
	if mail.Kind == authd.MailAccountDeleted {
		return fmt.Errorf("550 5.1.1 no such mailbox: %w", authd.ErrUndeliverable)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mails = append(m.mails, mail)
	return nil
}

// TestUndeliverableErasureNoticeLeavesNoAddress: an erasure notice the
// relay refuses for good does not stay in the outbox as a dead mail: the
// erased address must not outlive the notice (SPEC §6.8), so the mail is
// removed, not kept for an operator to retry.
func TestUndeliverableErasureNoticeLeavesNoAddress(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		m := &noticeRefusingMailer{}
		e := newEnv(t, open(t), withMailer(m))
		ctx := context.Background()
		const email = "bounced.erasure@example.org"
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": email, "password": goodPassword,
			"consent": true}), 202, "")
		if _, err := e.svc.DeliverMail(ctx); err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		if len(m.mails) != 1 || m.mails[0].Kind != authd.MailVerifyEmail {
			m.mu.Unlock()
			t.Fatalf("mails sent: %+v; want the verification mail", m.mails)
		}
		verify := m.mails[0]
		m.mu.Unlock()
		want(t, "verify", e.do("POST", "/v1/auth/verify-email", map[string]string{"token": tokenOf(t, verify)}), 200, "")
		r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword})
		want(t, "login", r, 200, "")
		want(t, "erase", e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword},
			bearer(r.str("access_token"))...), 204, "")
		if _, err := e.svc.DeliverMail(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := e.store.OutboxStats(ctx); err != nil || st.Pending != 0 || st.Dead != 0 {
			t.Errorf("the outbox after the notice bounced: %+v, %v; want it empty, no dead mail", st, err)
		}
		if found := scanText(t, e.store, email); len(found) > 0 {
			t.Errorf("the erased address outlived its bounced notice in %v", found)
		}
	})
}
