package httpapi_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// lockWaitStore is a store on which, once waiting is on, every read of a
// user in a transaction (which locks the user's row, alone, with their
// sign-in state or before a login challenge) takes a second of the clock,
// as when another flow holds the row.
type lockWaitStore struct {
	authd.Store
	clock   atomic.Pointer[clock]
	waiting atomic.Bool
}

func (s *lockWaitStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(lockWaitQueries{q, s}) })
}

type lockWaitQueries struct {
	authd.Queries
	s *lockWaitStore
}

func (q lockWaitQueries) User(ctx context.Context, id uuid.UUID) (*authd.User, error) {
	u, err := q.Queries.User(ctx, id)
	q.s.wait()
	return u, err
}

func (q lockWaitQueries) SignInState(ctx context.Context, id uuid.UUID, keep int, now time.Time) (*authd.SignInState, error) {
	st, err := q.Queries.SignInState(ctx, id, keep, now)
	q.s.wait()
	return st, err
}

func (q lockWaitQueries) MFAChallenge(ctx context.Context, digest string) (*authd.MFAChallenge, error) {
	ch, err := q.Queries.MFAChallenge(ctx, digest)
	q.s.wait()
	return ch, err
}

func (s *lockWaitStore) wait() {
	if s.waiting.Load() {
		s.clock.Load().Advance(time.Second)
	}
}

// TestFlowsTimedOnceTheUserIsHeld: a flow that waited for its user's lock
// stamps what it does (the audit row, a session's end) with the time it
// got the lock, not the time it began to wait: stamped earlier, an
// administrator's lock that waited for logins ended sessions "before" they
// began, and its audit row came before theirs.
func TestFlowsTimedOnceTheUserIsHeld(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		store := &lockWaitStore{Store: open(t)}
		e := newEnv(t, store)
		store.clock.Store(e.clock)
		const email = "held@example.org"
		e.registerVerified(email, goodPassword)
		id := e.user(email).ID
		stamped := func(name string, event authd.EventType, do func()) {
			t.Helper()
			store.waiting.Store(true)
			defer store.waiting.Store(false)
			began := e.clock.Now()
			do()
			logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: event, Limit: 1})
			if err != nil || len(logs) != 1 {
				t.Fatalf("%s: %v, %v", name, logs, err)
			}
			if !logs[0].Timestamp.After(began) {
				t.Errorf("%s stamped %v, when it began to wait for the user's lock; want the time it got it", name, logs[0].Timestamp)
			}
		}
		var access string
		stamped("login", authd.EventLoginSuccess, func() { access, _ = e.login(email, goodPassword) })
		stamped("password change", authd.EventPasswordChanged, func() {
			want(t, "change", e.do("POST", "/v1/auth/password/change", map[string]string{"current_password": goodPassword,
				"new_password": "another good passphrase"}, bearer(access)...), 204, "")
		})
		access, _ = e.login(email, "another good passphrase")
		stamped("logout-all", authd.EventLogoutAll, func() {
			want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(access)...), 204, "")
		})
		stamped("admin lock", authd.EventAdminAction, func() {
			want(t, "lock", e.admin("POST", "/v1/admin/users/"+id.String()+"/lock", map[string]string{}), 204, "")
		})
		want(t, "unlock", e.admin("POST", "/v1/admin/users/"+id.String()+"/unlock", nil), 204, "")
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
		link := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
		stamped("password reset", authd.EventPasswordResetCompleted, func() {
			want(t, "reset", e.do("POST", "/v1/auth/password/reset", map[string]string{"token": link,
				"new_password": "a third good passphrase"}), 204, "")
		})

		const second = "second@example.org"
		_, secret, _ := e.mfaUser(second)
		mfaToken := e.mfaLogin(second)
		stamped("second factor", authd.EventMFAChallengePassed, func() {
			want(t, "verify", e.verify(mfaToken, "totp", totpAt(t, secret, e.clock.Now())), 200, "")
		})

		// A challenge that expired while its redemption waited is over.
		mfaToken = e.mfaLogin(second)
		e.clock.Advance(authd.MFAChallengeTTL - 500*time.Millisecond)
		store.waiting.Store(true)
		want(t, "a code that waited past the challenge's end", e.verify(mfaToken, "totp", totpAt(t, secret, e.clock.Now())),
			400, "invalid_token")
		store.waiting.Store(false)

		_, key, _ := e.passkeyUser("third@example.org")
		stamped("passkey sign-in", authd.EventPasskeyUsed, func() { want(t, "sign in", e.signIn(key), 200, "") })
	})
}
