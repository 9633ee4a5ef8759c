package authd_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/password"
	"github.com/authd/authd/ratelimit"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/token"
)

// loginEnv is a service on a fresh SQLite store, with lockouts of
// addresses without an account, an account at known@example.org with the
// password pass, and padding that is recorded, not slept.
func loginEnv(t *testing.T, threshold int) (*authd.Service, *[]time.Duration, authd.Store) {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := token.OpenKeyring(t.TempDir(), "EdDSA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := authd.Config{PublicURL: "https://auth.example.org", AccessTokenTTL: 15 * time.Minute,
		RefreshTokenTTL: time.Hour, SessionMaxAge: time.Hour, MaxSessions: 10,
		LockoutThreshold: threshold, LockoutDuration: time.Minute}
	var slept []time.Duration
	s := authd.NewService(cfg, authd.Deps{Store: store, Mailer: discardMailer{},
		Passwords: password.NewHasher(password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, password.Policy{MinLength: 12}),
		Tokens:    token.NewIssuer(keys, cfg.PublicURL, "authd"), Lockouts: ratelimit.NewMemoryLockouts(authd.SystemClock{}),
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

// TestWrongPasswordsAnswerTogether: what follows a wrong password's check
// (an account's row updated in a transaction; an unknown address's count
// in the lockout store and a log row) is padded to one deadline, learned
// from accounts' failures, so that it does not tell which addresses have
// accounts; a lock set by that failure is answered alike; a right password
// is not padded; guesses at unknown addresses do not teach the deadline.
func TestWrongPasswordsAnswerTogether(t *testing.T) {
	ctx, c := context.Background(), authd.Client{IP: "192.0.2.1"}
	s, slept, _ := loginEnv(t, 3)
	login := func(email, pw string) error {
		_, err := s.Login(ctx, c, email, pw, "")
		return err
	}
	for _, r := range []struct {
		name, email, pw string
		want            authd.Code
		padded          bool
	}{
		{"wrong password", "known@example.org", "not the password at all", authd.EInvalidCredentials, true},
		{"unknown address", "nobody@example.org", "not the password at all", authd.EInvalidCredentials, true},
		{"right password", "known@example.org", pass, "", false},
		{"unknown address", "nobody@example.org", "not the password at all", authd.EInvalidCredentials, true},
		{"unknown address, locking", "nobody@example.org", "not the password at all", authd.EInvalidCredentials, true},
		{"unknown address, locked (no check)", "nobody@example.org", "not the password at all", authd.EAccountLocked, false},
		{"wrong password", "known@example.org", "not the password at all", authd.EInvalidCredentials, true},
		{"wrong password", "known@example.org", "not the password at all", authd.EInvalidCredentials, true},
		{"wrong password, locking", "known@example.org", "not the password at all", authd.EInvalidCredentials, true},
		{"account locked (no check)", "known@example.org", pass, authd.EAccountLocked, false},
	} {
		authd.SetFailPace(s, 400*time.Millisecond, 0) // longer than any recording here
		*slept = nil
		if err := login(r.email, r.pw); authd.ErrorCode(err) != r.want {
			t.Fatalf("%s: %v; want %q", r.name, err, r.want)
		}
		switch {
		case !r.padded && len(*slept) != 0:
			t.Errorf("%s: padded %v; want answered at once", r.name, *slept)
		case r.padded && (len(*slept) != 1 || (*slept)[0] < 200*time.Millisecond || (*slept)[0] > 400*time.Millisecond):
			t.Errorf("%s: padded %v; want to the deadline of 400ms as it stood before the request", r.name, *slept)
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
	authd.SetFailPace(s, 400*time.Millisecond, 0)
	*slept = nil
	if err := login("known@example.org", "not the password at all"); authd.ErrorCode(err) != authd.EInvalidCredentials ||
		len(*slept) != 1 || (*slept)[0] < 200*time.Millisecond {
		t.Errorf("wrong password, administrator's lock: %v, padded %v; want 401 at the deadline", err, *slept)
	}

	// Accounts' wrong passwords, recorded in far less than 400ms, bring
	// the deadline down to them; unknown addresses' do not move it.
	s, _, _ = loginEnv(t, 1000)
	authd.SetFailPace(s, 400*time.Millisecond, 0)
	for range 20 {
		if err := login("nobody@example.org", "not the password at all"); authd.ErrorCode(err) != authd.EInvalidCredentials {
			t.Fatal(err)
		}
	}
	if got := authd.FailPace(s); got != 400*time.Millisecond {
		t.Errorf("after guesses at an unknown address the deadline's average is %v; want it unmoved at 400ms", got)
	}
	for range 20 {
		if err := login("known@example.org", "not the password at all"); authd.ErrorCode(err) != authd.EInvalidCredentials {
			t.Fatal(err)
		}
	}
	if got := authd.FailPace(s); got > 200*time.Millisecond {
		t.Errorf("after an account's wrong passwords the deadline's average is %v; want it down to them", got)
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
