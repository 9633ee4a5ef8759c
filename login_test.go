package authd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/teststores"
	"github.com/authd/authd/password"
	"github.com/authd/authd/ratelimit"
	"github.com/authd/authd/token"
	"github.com/google/uuid"
)

// loginEnv is a service on a fresh SQLite store, with lockouts of
// addresses without an account, an account at known@example.org with the
// password pass, and padding that is recorded, not slept.
func loginEnv(t *testing.T, threshold int, wrap ...func(authd.Lockouts) authd.Lockouts) (*authd.Service, *[]time.Duration, authd.Store) {
	t.Helper()
	return loginEnvHashing(t, threshold, func(p authd.Passwords) authd.Passwords { return p }, wrap...)
}

// loginEnvHashing is loginEnv with the password hasher wrapped by hashing.
func loginEnvHashing(t *testing.T, threshold int, hashing func(authd.Passwords) authd.Passwords,
	wrap ...func(authd.Lockouts) authd.Lockouts) (*authd.Service, *[]time.Duration, authd.Store) {
	t.Helper()
	ctx := context.Background()
	store := teststores.SQLite(t)
	keys, err := token.OpenKeyring(t.TempDir(), "EdDSA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := authd.Config{PublicURL: "https://auth.example.org", AccessTokenTTL: 15 * time.Minute,
		RefreshTokenTTL: time.Hour, SessionMaxAge: time.Hour, MaxSessions: 10,
		LockoutThreshold: threshold, LockoutDuration: time.Minute}
	var slept []time.Duration
	var lockouts authd.Lockouts = ratelimit.NewMemoryLockouts(authd.SystemClock{})
	for _, w := range wrap {
		lockouts = w(lockouts)
	}
	s := authd.NewService(cfg, authd.Deps{Store: store, Mailer: discardMailer{},
		Passwords: hashing(password.NewHasher(password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, password.Policy{MinLength: 12})),
		Tokens:    token.NewIssuer(keys, cfg.PublicURL, "authd"), Lockouts: lockouts,
		Sleep: func(_ context.Context, d time.Duration) { slept = append(slept, d) }})
	if err := s.LoadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(ctx, authd.Client{}, "known@example.org", pass, true); err != nil {
		t.Fatal(err)
	}
	slept = nil
	return s, &slept, store
}

const pass = "correct horse battery staple"

// discardMailer drops mail.
type discardMailer struct{}

func (discardMailer) Send(context.Context, authd.Mail) error { return nil }

// slowLockouts is a lockout store whose lock reads take a while, as a
// Redis round trip does.
type slowLockouts struct {
	authd.Lockouts
	read time.Duration
}

func (l slowLockouts) LockedFor(ctx context.Context, key string) (time.Duration, error) {
	time.Sleep(l.read)
	return l.Lockouts.LockedFor(ctx, key)
}

// deadline is the refused logins' pace in TestWrongPasswordsAnswerTogether.
const deadline = 400 * time.Millisecond

// padsTo fails t unless a refused login that took took (its padding
// recorded, not slept) was padded once, to the deadline as it stood before
// the request: not beyond it, not short of it.
func padsTo(t *testing.T, name string, slept []time.Duration, took time.Duration) {
	t.Helper()
	paddedTo(t, name, slept, took, deadline)
}

// paddedTo fails t unless a request that took took (its padding recorded,
// not slept) was padded once to the deadline: not beyond it, not short of
// it. Work that alone took the deadline (a loaded machine) has nothing to
// pad, and is not checked.
func paddedTo(t *testing.T, name string, slept []time.Duration, took, deadline time.Duration) {
	t.Helper()
	if took >= deadline {
		t.Logf("%s: the work took %v, the whole deadline: the padding is not checked", name, took)
		return
	}
	if len(slept) != 1 || slept[0] > deadline || slept[0]+took < deadline {
		t.Errorf("%s: padded %v after %v; want to the deadline of %v as it stood before the request", name, slept, took, deadline)
	}
}

// TestWrongPasswordsAnswerTogether: a refused login (401, or 423 before or
// during the check) answers at one deadline from the start of its work,
// whichever path it took (an account's row updated in a transaction; an
// unknown address's reads and counts in the lockout store and a log row),
// so that its time does not tell which addresses have accounts; a right
// password is not padded.
func TestWrongPasswordsAnswerTogether(t *testing.T) {
	ctx, c := context.Background(), authd.Client{IP: "192.0.2.1"}
	s, slept, _ := loginEnv(t, 3)
	login := func(email, pw string) error {
		_, err := s.Login(ctx, c, email, pw, "")
		return err
	}
	const wrong = "not the password at all"
	for _, r := range []struct {
		name, email, pw string
		want            authd.Code
		padded          bool
	}{
		{"wrong password", "known@example.org", wrong, authd.EInvalidCredentials, true},
		{"unknown address", "nobody@example.org", wrong, authd.EInvalidCredentials, true},
		{"right password", "known@example.org", pass, "", false},
		{"unknown address", "nobody@example.org", wrong, authd.EInvalidCredentials, true},
		{"unknown address, locking", "nobody@example.org", wrong, authd.EInvalidCredentials, true},
		{"unknown address, locked (no check)", "nobody@example.org", wrong, authd.EAccountLocked, true},
		{"wrong password", "known@example.org", wrong, authd.EInvalidCredentials, true},
		{"wrong password", "known@example.org", wrong, authd.EInvalidCredentials, true},
		{"wrong password, locking", "known@example.org", wrong, authd.EInvalidCredentials, true},
		{"account locked (no check)", "known@example.org", pass, authd.EAccountLocked, true},
	} {
		authd.SetFailPace(s, deadline, 0) // longer than any login here, unless the machine is loaded
		*slept = nil
		start := time.Now()
		if err := login(r.email, r.pw); authd.ErrorCode(err) != r.want {
			t.Fatalf("%s: %v; want %q", r.name, err, r.want)
		}
		if !r.padded && len(*slept) != 0 {
			t.Errorf("%s: padded %v; want answered at once", r.name, *slept)
		}
		if r.padded {
			padsTo(t, r.name, *slept, time.Since(start))
		}
	}

	// An account an administrator locked answers wrong passwords as any.
	s, slept, store := loginEnv(t, 3)
	u, err := store.UserByEmail(ctx, "known@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LockUser(ctx, c, u.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	authd.SetFailPace(s, deadline, 0)
	*slept = nil
	start := time.Now()
	if err := login("known@example.org", wrong); authd.ErrorCode(err) != authd.EInvalidCredentials {
		t.Errorf("wrong password, administrator's lock: %v; want 401", err)
	}
	padsTo(t, "wrong password, administrator's lock", *slept, time.Since(start))

	// The deadline runs from the start of the work, before the check: an
	// unknown address's read of a slow lockout store (150ms) is inside it.
	s, slept, _ = loginEnv(t, 3, func(l authd.Lockouts) authd.Lockouts { return slowLockouts{l, 150 * time.Millisecond} })
	authd.SetFailPace(s, deadline, 0)
	*slept = nil
	start = time.Now()
	if err := login("nobody@example.org", wrong); authd.ErrorCode(err) != authd.EInvalidCredentials {
		t.Errorf("unknown address, a slow lockout store: %v; want 401", err)
	}
	if took := time.Since(start); took < deadline && (len(*slept) != 1 || (*slept)[0] > 250*time.Millisecond) {
		t.Errorf("unknown address, a slow lockout store: padded %v after %v; want 401 at 400ms from the start (padded 250ms at most)",
			*slept, took)
	}
}

// TestRefusedLoginsPaceApart: each path's wrong passwords teach its own
// pace and the deadline is the later of the two, so that a flood of
// guesses at either path cannot pull the deadline below the other's.
func TestRefusedLoginsPaceApart(t *testing.T) {
	ctx, c := context.Background(), authd.Client{IP: "192.0.2.1"}
	s, _, _ := loginEnv(t, 1000)
	guess := func(email string) {
		t.Helper()
		if _, err := s.Login(ctx, c, email, "not the password at all", ""); authd.ErrorCode(err) != authd.EInvalidCredentials {
			t.Fatal(err)
		}
	}
	authd.SetFailPace(s, 400*time.Millisecond, 0)
	for range 20 {
		guess("nobody@example.org")
	}
	account, unknown := authd.FailPaces(s)
	if account != 400*time.Millisecond || unknown > 200*time.Millisecond || authd.FailDeadline(s) < 400*time.Millisecond {
		t.Errorf("after guesses at an unknown address: paces %v (account), %v (unknown), deadline %v; "+
			"want the unknown one down to them, the account's and the deadline unmoved at 400ms",
			account, unknown, authd.FailDeadline(s))
	}
	authd.SetFailPace(s, 400*time.Millisecond, 0)
	for range 20 {
		guess("known@example.org")
	}
	account, unknown = authd.FailPaces(s)
	if unknown != 400*time.Millisecond || account > 200*time.Millisecond || authd.FailDeadline(s) < 400*time.Millisecond {
		t.Errorf("after an account's wrong passwords: paces %v (account), %v (unknown), deadline %v; "+
			"want the account's down to them, the unknown one and the deadline unmoved at 400ms",
			account, unknown, authd.FailDeadline(s))
	}
}

// TestLoginWithoutAPassword: an empty password is refused as invalid
// before anything is hashed or counted, whichever adapter sends it (the
// hosted sign-in page's form as the JSON API).
func TestLoginWithoutAPassword(t *testing.T) {
	ctx, c := context.Background(), authd.Client{IP: "192.0.2.1"}
	s, slept, store := loginEnv(t, 1)
	for _, email := range []string{"known@example.org", "nobody@example.org"} {
		if _, err := s.Login(ctx, c, email, "", ""); authd.ErrorCode(err) != authd.EInvalid {
			t.Errorf("an empty password for %s: %v; want EInvalid", email, err)
		}
	}
	u, err := store.UserByEmail(ctx, "known@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if u.FailedLoginAttempts != 0 || u.AccountStatus != authd.StatusActive || len(*slept) != 0 {
		t.Errorf("after an empty password (threshold 1): %d failures, %s, padded %v; want nothing counted",
			u.FailedLoginAttempts, u.AccountStatus, *slept)
	}
	if _, err := s.Login(ctx, c, "known@example.org", pass, ""); err != nil {
		t.Errorf("the right password after empty ones: %v", err)
	}
}

// issuedToken returns an issuer and an access token it issued, of a new
// user and session, valid for a minute from now.
func issuedToken(t *testing.T) (*token.Issuer, string) {
	t.Helper()
	keys, err := token.OpenKeyring(t.TempDir(), "EdDSA", now)
	if err != nil {
		t.Fatal(err)
	}
	tokens := token.NewIssuer(keys, "https://auth.example.org", "authd")
	raw, err := tokens.Issue(authd.AccessClaims{JTI: "j", UserID: uuid.New(), SessionID: uuid.New(), IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return tokens, raw
}

// TestAuthenticateWhileRevocationsStale: with RevocationMaxLag, a valid
// token is refused as unavailable (not invalid) while the revocation set
// has not caught up for longer than the lag and cannot catch up now (the
// database gone); once the database answers, Authenticate catches up
// itself rather than wait for the server's next catch-up. Without a lag,
// never refused.
func TestAuthenticateWhileRevocationsStale(t *testing.T) {
	tokens, raw := issuedToken(t)
	ctx := context.Background()
	service := func(lag time.Duration, store *readStore) *authd.Service {
		clock := fixedClock(now)
		return authd.NewService(authd.Config{AccessTokenTTL: time.Minute, RevocationMaxLag: lag},
			authd.Deps{Store: store, Tokens: tokens, Clock: &clock})
	}
	want := func(what string, svc *authd.Service, code authd.Code) {
		t.Helper()
		_, err := svc.Authenticate(ctx, raw)
		if authd.ErrorCode(err) != code {
			t.Errorf("Authenticate %s: %v; want %q", what, err, code)
		}
		if code == authd.EUnavailable && authd.RetryAfterSeconds(err) < 1 {
			t.Errorf("Authenticate %s: %v; want a Retry-After", what, err)
		}
	}
	store := &readStore{down: true}
	svc := service(time.Hour, store)
	want("before the set loaded, the database gone", svc, authd.EUnavailable)
	store.down = false
	want("just after a failed catch-up (the database is not asked again at once)", svc, authd.EUnavailable)
	if len(store.since) != 0 {
		t.Errorf("%d loads within the pause after a failure; want none", len(store.since))
	}
	authd.AgeRevocations(svc, authd.StaleRetryPause) // the pause has passed
	want("once the database answers (it loads the set itself)", svc, "")
	if len(store.since) != 1 {
		t.Errorf("%d loads; want the one Authenticate made", len(store.since))
	}
	want("while the set is current", svc, "")
	if len(store.since) != 1 || len(store.after) != 0 {
		t.Errorf("Authenticate read the database while the set was current: %d loads, %d catch-ups", len(store.since), len(store.after))
	}

	store = &readStore{}
	svc = service(time.Nanosecond, store)
	if err := svc.LoadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	store.down = true
	want("past the lag, the database gone", svc, authd.EUnavailable)
	want("without a lag, the database gone", service(0, &readStore{down: true}), "")

	// A revocation made elsewhere while the set was stale refuses the
	// token in the very request whose catch-up brings it.
	claims, err := tokens.Verify(raw, now)
	if err != nil {
		t.Fatal(err)
	}
	store = &readStore{last: 1}
	svc = service(time.Nanosecond, store)
	if err := svc.LoadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	store.page = []authd.RevocationEvent{{ID: 2, Kind: authd.RevokedSession, Subject: claims.SessionID, CreatedAt: now}}
	store.last = 2
	want("revoked elsewhere while the set was stale", svc, authd.EInvalidToken)
}

// TestCatchUpKeepsTheSetCurrent: each catch-up that succeeds, not only a
// load, counts toward RevocationMaxLag: a set loaded longer than the lag
// ago but caught up since is current, and Authenticate reads nothing.
func TestCatchUpKeepsTheSetCurrent(t *testing.T) {
	tokens, raw := issuedToken(t)
	ctx := context.Background()
	store, clock := &readStore{}, fixedClock(now)
	svc := authd.NewService(authd.Config{AccessTokenTTL: time.Minute, RevocationMaxLag: time.Hour},
		authd.Deps{Store: store, Tokens: tokens, Clock: &clock})
	if err := svc.LoadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	authd.AgeRevocations(svc, 40*time.Minute)
	if err := svc.CatchUpRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	authd.AgeRevocations(svc, 40*time.Minute) // the load 80 minutes ago, the catch-up 40
	reads := len(store.since) + len(store.after)
	if _, err := svc.Authenticate(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if n := len(store.since) + len(store.after) - reads; n != 0 {
		t.Errorf("Authenticate read the database %d times, caught up 40 minutes ago under a lag of an hour; want none", n)
	}
	authd.AgeRevocations(svc, 30*time.Minute) // now past the lag
	if _, err := svc.Authenticate(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if n := len(store.since) + len(store.after) - reads; n != 1 {
		t.Errorf("Authenticate read the database %d times, caught up 70 minutes ago under a lag of an hour; want its catch-up", n)
	}
}

// expiredMany is a store whose sweep finds several accounts whose locks
// ran out.
type expiredMany struct{ authd.Store }

func (expiredMany) ExpiredLocks(context.Context, time.Time, int) ([]uuid.UUID, error) {
	return []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New()}, nil
}

// TestUnlockExpiredGivenUp: a sweep whose context ends (its timeout) stops
// there, and says so once, not once per account left.
func TestUnlockExpiredGivenUp(t *testing.T) {
	_, _, store := loginEnv(t, 5)
	s := authd.NewService(authd.Config{}, authd.Deps{Store: expiredMany{store}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := s.UnlockExpired(ctx)
	if n != 0 || !errors.Is(err, context.Canceled) || strings.Count(err.Error(), "context canceled") != 1 {
		t.Errorf("UnlockExpired given up: %d, %v; want 0 and the end said once", n, err)
	}
}

// slowLists is a store whose listings take as long as their context lets
// them (a filter a large table's indexes serve badly).
type slowLists struct{ authd.Store }

func (slowLists) SecurityLogs(ctx context.Context, _ authd.SecurityLogFilter) ([]*authd.SecurityLog, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (slowLists) Users(ctx context.Context, _ authd.UserFilter) ([]*authd.User, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// heldLists is a store whose administrators' listings each hold on, whatever
// their context, until release closes, telling started as they begin; a
// user's own log answers at once.
type heldLists struct {
	authd.Store
	started chan struct{}
	release chan struct{}
}

func (h heldLists) SecurityLogs(ctx context.Context, f authd.SecurityLogFilter) ([]*authd.SecurityLog, error) {
	if f.UserID == uuid.Nil {
		h.started <- struct{}{}
		<-h.release
	}
	return nil, nil
}

func (h heldLists) Users(ctx context.Context, _ authd.UserFilter) ([]*authd.User, error) {
	h.started <- struct{}{}
	<-h.release
	return nil, nil
}

// TestAdminListingsAtOnce: past AdminListingsAtOnce administrators'
// listings reading at once, the next waits for a slot within its bound
// and then answers busy (503, Retry-After), while a user's own log still
// reads; once the slots free, listings read again. Not parallel: it sets
// the package's bound.
func TestAdminListingsAtOnce(t *testing.T) {
	authd.SetListTimeout(t, 50*time.Millisecond)
	_, _, store := loginEnv(t, 5)
	held := heldLists{Store: store, started: make(chan struct{}, 64), release: make(chan struct{})}
	s := authd.NewService(authd.Config{}, authd.Deps{Store: held})
	ctx := context.Background()
	done := make(chan error, authd.AdminListingsAtOnce)
	for i := range authd.AdminListingsAtOnce {
		go func() {
			var err error
			if i%2 == 0 {
				_, err = s.Users(ctx, authd.Client{}, authd.UserFilter{})
			} else {
				_, err = s.SecurityLogs(ctx, authd.Client{}, authd.SecurityLogFilter{})
			}
			done <- err
		}()
		<-held.started
	}
	answer := func(list func() error) error {
		t.Helper()
		got := make(chan error, 1)
		go func() { got <- list() }()
		select {
		case err := <-got:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("a listing past the bound did not answer")
			return nil
		}
	}
	err := answer(func() error { _, err := s.Users(ctx, authd.Client{}, authd.UserFilter{}); return err })
	if !errors.Is(err, authd.ErrBusy) || authd.ErrorCode(err) != authd.EUnavailable {
		t.Errorf("a listing past %d at once: %v; want busy", authd.AdminListingsAtOnce, err)
	}
	if _, err := s.MySecurityLog(ctx, &authd.AccessClaims{UserID: uuid.New()}, nil, 0); err != nil {
		t.Errorf("a user's own log beside the full slots: %v", err)
	}
	select {
	case <-held.started:
		t.Error("the listing past the bound read")
	default:
	}
	close(held.release)
	for range authd.AdminListingsAtOnce {
		if err := <-done; err != nil {
			t.Errorf("a held listing: %v", err)
		}
	}
	if err := answer(func() error { _, err := s.Users(ctx, authd.Client{}, authd.UserFilter{}); return err }); err != nil {
		t.Errorf("a listing once the slots are free: %v", err)
	}
}

// TestSlowListingIsAnOutage: a listing whose read passes its bound is an
// outage saying to narrow it (a probe: 20–30 s on a large table, cut off
// unsaid by the HTTP server's write timeout); a caller that hangs up is
// no slow listing. Not parallel: it sets the package's bound.
func TestSlowListingIsAnOutage(t *testing.T) {
	authd.SetListTimeout(t, 20*time.Millisecond)
	_, _, store := loginEnv(t, 5)
	s := authd.NewService(authd.Config{}, authd.Deps{Store: slowLists{store}})
	ctx := context.Background()
	slow := func(what string, err error) {
		t.Helper()
		if authd.ErrorCode(err) != authd.EUnavailable || !strings.Contains(authd.ErrorMessage(err), "narrow it") ||
			!strings.Contains(authd.ErrorHint(err), "since/until") {
			t.Errorf("%s past its bound: %v (hint %q); want unavailable, saying to narrow it", what, err, authd.ErrorHint(err))
		}
	}
	_, err := s.SecurityLogs(ctx, authd.Client{}, authd.SecurityLogFilter{EventType: authd.EventLogout, Result: authd.ResultFailure})
	slow("security logs", err)
	_, err = s.Users(ctx, authd.Client{}, authd.UserFilter{Status: authd.StatusLocked})
	slow("users", err)
	_, err = s.MySecurityLog(ctx, &authd.AccessClaims{UserID: uuid.New()}, nil, 0)
	slow("a user's own log", err)

	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.SecurityLogs(gone, authd.Client{}, authd.SecurityLogFilter{}); !errors.Is(err, context.Canceled) ||
		authd.ErrorHint(err) != "" {
		t.Errorf("a listing whose caller hung up: %v; want its cancellation, no hint", err)
	}
}

// TestLoginOfAnAccountWithoutPassword: an account with no password hash
// (none is made so today but by erasure: a row an import or a hand left
// so) takes no password: a login is refused as an unknown address's is,
// logged so without the account, and counts nothing on its row (which
// would tell it from an unknown address).
func TestLoginOfAnAccountWithoutPassword(t *testing.T) {
	s, _, store := loginEnv(t, 5)
	ctx := context.Background()
	u, err := store.UserByEmail(ctx, "known@example.org")
	if err != nil {
		t.Fatal(err)
	}
	u.PasswordHash, u.EmailVerified, u.AccountStatus = "", true, authd.StatusActive
	if err := store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"known@example.org", "nobody@example.org"} {
		if _, err := s.Login(ctx, authd.Client{IP: "192.0.2.1"}, email, pass, ""); authd.ErrorCode(err) != authd.EInvalidCredentials {
			t.Errorf("a login of %s: %v; want invalid credentials", email, err)
		}
	}
	after, err := store.UserByEmail(ctx, "known@example.org")
	if err != nil || after.FailedLoginAttempts != 0 || !after.LastFailedLogin.IsZero() {
		t.Errorf("the account after a login: %+v, %v; want nothing counted", after, err)
	}
	logs, err := store.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventLoginFailure})
	if err != nil || len(logs) != 2 {
		t.Fatalf("login_failure rows %+v, %v; want two", logs, err)
	}
	for _, l := range logs {
		if l.UserID != uuid.Nil || l.FailureReason != "unknown email" {
			t.Errorf("login_failure row %+v; want an unknown email's, no account", l)
		}
	}
}
