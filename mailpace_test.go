package authd_test

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/teststores"
	"github.com/authd/authd/storetest"
)

// mailPaceEnv is a service on a fresh SQLite store with an account at
// known@example.org and a verified one at verified@example.org, whose
// padding is recorded, not slept (and its context handed to check).
func mailPaceEnv(t *testing.T, check ...func(context.Context)) (*authd.Service, *[]time.Duration, *[]context.Context) {
	t.Helper()
	return mailPaceEnvOn(t, func(s authd.Store) authd.Store { return s }, check...)
}

// mailPaceEnvOn is mailPaceEnv on the store wrap makes of a fresh one.
func mailPaceEnvOn(t *testing.T, wrap func(authd.Store) authd.Store, check ...func(context.Context)) (*authd.Service,
	*[]time.Duration, *[]context.Context) {
	t.Helper()
	ctx := context.Background()
	store := wrap(teststores.SQLite(t))
	for _, email := range []string{"known@example.org", "verified@example.org"} {
		u := storetest.NewUser(email)
		u.EmailVerified = email == "verified@example.org"
		if err := store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	var slept []time.Duration
	var ctxs []context.Context
	s := authd.NewService(authd.Config{PublicURL: "https://auth.example.org"}, authd.Deps{Store: store,
		Sleep: func(ctx context.Context, d time.Duration) {
			for _, f := range check {
				f(ctx)
			}
			slept, ctxs = append(slept, d), append(ctxs, ctx)
		}})
	return s, &slept, &ctxs
}

// TestMailRequestsAnswerTogether: resend and forgot answer every address
// at one deadline, that of the requests that mail (SPEC §6.6: the same
// time), whether the address has an account, has none, or the request
// mails nothing; a request's answer waits for the deadline as it stood
// before the request (what the request teaches must not shape its own
// answer), and requests that mail keep the deadline current.
func TestMailRequestsAnswerTogether(t *testing.T) {
	s, slept, ctxs := mailPaceEnv(t)
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "the request's")
	c := authd.Client{IP: "192.0.2.1"}
	for _, r := range []struct {
		name string
		call func() error
	}{
		{"forgot, unknown address", func() error { return s.ForgotPassword(ctx, c, "nobody@example.org") }},
		{"resend, unknown address", func() error { return s.ResendVerification(ctx, c, "nobody@example.org") }},
		{"resend, verified address (mails nothing)", func() error { return s.ResendVerification(ctx, c, "verified@example.org") }},
		{"forgot, known address", func() error { return s.ForgotPassword(ctx, c, "known@example.org") }},
	} {
		authd.SetMailPace(s, 400*time.Millisecond, 0) // a request that mails: longer than any here
		*slept, *ctxs = nil, nil
		start := time.Now()
		if err := r.call(); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		paddedTo(t, r.name, *slept, time.Since(start), 400*time.Millisecond)
		if len(*ctxs) == 1 && (*ctxs)[0].Value(key{}) != "the request's" {
			t.Errorf("%s: padded under another context than the request's, which would outlive its client", r.name)
		}
	}
	// Requests that mail, in far less than 400ms, bring the deadline down
	// to them.
	for range 40 {
		if err := s.ForgotPassword(ctx, c, "known@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	*slept = nil
	if err := s.ForgotPassword(ctx, c, "nobody@example.org"); err != nil || len(*slept) > 1 || len(*slept) == 1 && (*slept)[0] > 200*time.Millisecond {
		t.Errorf("after requests that mailed quickly: padded %v (%v); want the deadline down to them", *slept, err)
	}
	*slept = nil
	if err := s.ForgotPassword(ctx, c, "not an address"); authd.ErrorCode(err) != authd.EInvalid || len(*slept) != 0 {
		t.Errorf("an invalid address: %v, padded %v; want EInvalid at once", err, *slept)
	}
}

// TestOnlyRequestsThatMailTeachThePace: requests that mail nothing (an
// unknown address, an address already verified), however many and however
// quick, leave the deadline where the requests that mail set it: were they
// to teach it, a flood of them would bring it below the requests that
// mail, whose answers would then come later, telling an account apart.
func TestOnlyRequestsThatMailTeachThePace(t *testing.T) {
	s, _, _ := mailPaceEnv(t)
	ctx, c := context.Background(), authd.Client{IP: "192.0.2.1"}
	authd.SetMailPace(s, 400*time.Millisecond, 0)
	before := authd.MailDeadline(s)
	for range 20 {
		if err := s.ForgotPassword(ctx, c, "nobody@example.org"); err != nil {
			t.Fatal(err)
		}
		if err := s.ResendVerification(ctx, c, "verified@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	if d := authd.MailDeadline(s); d != before {
		t.Errorf("after requests that mailed nothing the deadline is %v, want %v as before them", d, before)
	}
}

// TestMailPaddingFromTheStart: before any request has mailed (a fresh
// start), answers are padded to a conservative first deadline, not given
// as soon as they commit. (Whether one request is padded depends on how
// long it took on a loaded machine: the deadline is what is checked.)
func TestMailPaddingFromTheStart(t *testing.T) {
	s, _, _ := mailPaceEnv(t)
	if d := authd.MailDeadline(s); d < 20*time.Millisecond {
		t.Errorf("the first mail request after start answers at %v; want a conservative deadline (tens of milliseconds)", d)
	}
}

// TestMailPaddingOutlivesAHangUp: a client that half-closes cancels its
// request's context while the answer can still be read; the request still
// completes and waits for the deadline, or its timing would tell again.
func TestMailPaddingOutlivesAHangUp(t *testing.T) {
	s, slept, _ := mailPaceEnv(t, func(ctx context.Context) {
		if ctx.Err() != nil {
			t.Errorf("padding under a context that has ended (%v): it would be cut short", ctx.Err())
		}
	})
	authd.SetMailPace(s, 400*time.Millisecond, 0) // longer than any request here, so each is padded
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	for _, email := range []string{"nobody@example.org", "known@example.org"} {
		*slept = nil
		if err := s.ForgotPassword(gone, authd.Client{IP: "192.0.2.1"}, email); err != nil {
			t.Fatalf("forgot for %s with the client gone: %v", email, err)
		}
		if len(*slept) != 1 {
			t.Errorf("forgot for %s with the client gone: padded %v; want padded", email, *slept)
		}
	}
}

// TestMailPaddingIsBounded: however slow requests that mail once were (a
// burst queued behind a lock), no answer waits more than half a second.
func TestMailPaddingIsBounded(t *testing.T) {
	s, slept, _ := mailPaceEnv(t)
	authd.SetMailPace(s, time.Hour, 10*time.Minute)
	start := time.Now()
	if err := s.ForgotPassword(context.Background(), authd.Client{IP: "192.0.2.1"}, "nobody@example.org"); err != nil {
		t.Fatal(err)
	}
	paddedTo(t, "with a learned deadline of an hour and more", *slept, time.Since(start), 500*time.Millisecond)
}

// slowTx is a store whose transactions take a while to begin.
type slowTx struct {
	authd.Store
	begin time.Duration
}

func (s slowTx) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	time.Sleep(s.begin)
	return s.Store.InTx(ctx, fn)
}

// TestMailPaddingCountsTheWork: the deadline runs from the start of the
// request's work, so slow work is padded less; padded the whole deadline
// after it, an answer's time would tell how much work was done, which
// differs with the address.
func TestMailPaddingCountsTheWork(t *testing.T) {
	s, slept, _ := mailPaceEnvOn(t, func(st authd.Store) authd.Store { return slowTx{st, 150 * time.Millisecond} })
	authd.SetMailPace(s, 400*time.Millisecond, 0)
	start := time.Now()
	if err := s.ForgotPassword(context.Background(), authd.Client{IP: "192.0.2.1"}, "nobody@example.org"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 400*time.Millisecond && (len(*slept) != 1 || (*slept)[0] > 250*time.Millisecond) {
		t.Errorf("a slow transaction: padded %v after %v; want to 400ms from the start (250ms at most)", *slept, took)
	}
}

// TestAdminRetryWakesTheSender: an administrator's retry of a dead mail
// wakes this instance's sender, as a flow that queues mail does, rather
// than leave the mail to the next poll.
func TestAdminRetryWakesTheSender(t *testing.T) {
	ctx := context.Background()
	store := teststores.SQLite(t)
	s := authd.NewService(authd.Config{PublicURL: "https://auth.example.org"}, authd.Deps{Store: store})
	at := time.Now()
	m := &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailVerifyEmail, To: "lost@example.org", CreatedAt: at,
		NextAttemptAt: at}
	if err := store.EnqueueMail(ctx, m); err != nil {
		t.Fatal(err)
	}
	claim := authd.NewID()
	if got, err := store.ClaimMail(ctx, claim, at, time.Minute); err != nil || got == nil || got.ID != m.ID {
		t.Fatalf("claim the mail to kill: %+v, %v", got, err)
	}
	if err := store.KillMail(ctx, m.ID, claim, at, "550 mailbox unavailable"); err != nil {
		t.Fatal(err)
	}
	authd.Woken(s) // nothing before the retry counts
	if err := s.RetryMail(ctx, authd.Client{}, m.ID); err != nil {
		t.Fatal(err)
	}
	if !authd.Woken(s) {
		t.Error("the retry of a dead mail did not wake the sender")
	}
}
