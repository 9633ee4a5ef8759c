package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// TestLiveSessionsReadByTheirIndex: the reads of a user's live sessions —
// the session limit every login applies, the list, ending every other
// session — use ix_sessions_user_id_live, so that a user with many ended
// sessions (kept a day after they end) does not make each of them read
// every one.
func TestLiveSessionsReadByTheirIndex(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	now := storetest.Epoch
	u := storetest.NewUser("many-sessions@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	// 3,000 ended sessions and 3 live ones, in one statement.
	if _, err := s.pool.Exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at)
		SELECT gen_random_uuid(), $1, $2, $2, $3, CASE WHEN i > 3 THEN $2::timestamptz END
		FROM generate_series(1, 3003) AS i`, u.ID, now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE sessions`); err != nil {
		t.Fatal(err)
	}
	reads := []struct {
		name string
		run  func(*queries) (int, error)
	}{
		{"Sessions", func(q *queries) (int, error) {
			l, err := q.Sessions(ctx, u.ID, now)
			return len(l), err
		}},
		{"ExcessSessions", func(q *queries) (int, error) {
			st, err := q.SignInState(ctx, u.ID, 1, now)
			if err != nil {
				return 0, err
			}
			return len(st.Excess), nil
		}},
		{"RevokeUserSessions", func(q *queries) (int, error) {
			ids, err := q.RevokeUserSessions(ctx, u.ID, uuid.Nil, now)
			return len(ids), err
		}},
	}
	wants := []int{3, 2, 3}
	for i, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			err := s.inTx(ctx, func(q *queries) error {
				n, err := r.run(q)
				if err != nil {
					return err
				}
				if n != wants[i] {
					t.Errorf("%s found %d live sessions, want %d", r.name, n, wants[i])
				}
				// This transaction's scans of the index (the statement
				// above ran: a read sends the writes queued before it).
				var scans int64
				if err := q.row(ctx, `SELECT pg_stat_get_xact_numscans('ix_sessions_user_id_live'::regclass)`).Scan(&scans); err != nil {
					return err
				}
				if scans == 0 {
					t.Errorf("%s did not read ix_sessions_user_id_live", r.name)
				}
				return errRollback
			})
			if err != errRollback {
				t.Fatal(err)
			}
		})
	}
}

// errRollback ends a test's transaction without its effects.
var errRollback = &authd.Error{Code: authd.EInternal, Message: "rolled back by the test"}

// signInLocks makes a user with two sessions, sessions[1] the more
// recently used, for the lock-order tests below.
func signInLocks(t *testing.T, s *Store, email string) (*authd.User, []*authd.Session) {
	t.Helper()
	ctx := context.Background()
	u := storetest.NewUser(email)
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	var sessions []*authd.Session
	for i := range 2 {
		sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: storetest.Epoch,
			LastUsedAt: storetest.Epoch.Add(time.Duration(i) * time.Minute), ExpiresAt: storetest.Epoch.Add(time.Hour)}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess)
	}
	return u, sessions
}

// sessionFirst runs a transaction that locks sess, as a flow acting on a
// session does first, pauses until goOn closes (locked closes once it
// holds the session), and then runs rest.
func sessionFirst(s *Store, sess *authd.Session, locked, goOn chan struct{}, rest func(authd.Queries) error) <-chan error {
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		done <- s.InTx(ctx, func(q authd.Queries) error {
			if _, err := q.Session(ctx, sess.ID); err != nil {
				return err
			}
			close(locked)
			<-goOn
			return rest(q)
		})
	}()
	return done
}

// logoutInSteps runs a logout of sess as its flow does — the session
// locked, then ended and its audit row written — pausing after the lock.
func logoutInSteps(s *Store, u *authd.User, sess *authd.Session, locked, goOn chan struct{}) <-chan error {
	ctx := context.Background()
	return sessionFirst(s, sess, locked, goOn, func(q authd.Queries) error {
		if err := q.RevokeSession(ctx, sess.ID, storetest.Epoch); err != nil {
			return err
		}
		return q.CreateSecurityLog(ctx, authd.NewSecurityLog(storetest.Epoch, authd.EventLogout, authd.ResultSuccess,
			u.ID, "", "", "", nil))
	})
}

// TestSignInLocksOnlyWhatItEnds: a sign-in's read locks the user and the
// sessions it would end, not the ones it keeps; and its lock on the user
// lets a logout write its audit row. A logout of a kept session in flight
// neither holds the sign-in up nor waits for it (each waited for the
// other: a deadlock).
func TestSignInLocksOnlyWhatItEnds(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	u, sessions := signInLocks(t, s, "keeps@example.org")
	locked, goOn := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(goOn) })
	defer release()                                          // on failure too: the pool closes only once the logout ends
	logout := logoutInSteps(s, u, sessions[1], locked, goOn) // the most recently used: kept
	<-locked
	bounded, cancel := context.WithTimeout(ctx, 30*time.Second) // a guard: waiting is the failure
	defer cancel()
	err := s.InTx(bounded, func(q authd.Queries) error {
		st, err := q.SignInState(bounded, u.ID, 1, storetest.Epoch)
		if err != nil {
			return fmt.Errorf("the sign-in's read, with a kept session locked by a logout: %w", err)
		}
		if len(st.Excess) != 1 || st.Excess[0] != sessions[0].ID {
			t.Errorf("excess %v, want the least recently used %v", st.Excess, sessions[0].ID)
		}
		// The user stays locked by this sign-in while the logout goes on.
		release()
		select {
		case err := <-logout:
			if err != nil {
				return fmt.Errorf("the logout while a sign-in holds the user: %w", err)
			}
		case <-bounded.Done():
			return errors.New("the logout waited for the sign-in's lock on the user")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSignInAndLogoutOfTheSessionItEnds: a logout of the session a sign-in
// would end, in flight, makes the sign-in wait; the logout then finishes
// (its audit row needs no lock the sign-in holds) and the sign-in finds
// the session already ended and ends nothing.
func TestSignInAndLogoutOfTheSessionItEnds(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	u, sessions := signInLocks(t, s, "ends@example.org")
	locked, goOn := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(goOn) })
	defer release()
	logout := logoutInSteps(s, u, sessions[0], locked, goOn) // the least recently used: the one to end
	<-locked
	var excess []uuid.UUID
	signIn := waiting(t, s, "FROM sessions WHERE id IN", func() error {
		return s.InTx(ctx, func(q authd.Queries) error {
			st, err := q.SignInState(ctx, u.ID, 1, storetest.Epoch)
			if err == nil {
				excess = st.Excess
			}
			return err
		})
	})
	release()
	if err := <-logout; err != nil {
		t.Errorf("logout: %v", err)
	}
	if err := <-signIn; err != nil {
		t.Errorf("sign-in: %v", err)
	}
	if len(excess) != 0 {
		t.Errorf("the sign-in would end %v, which the logout ended first", excess)
	}
}

// TestSignInsHoldingKeptSessionsDoNotDeadlock: two transactions of one
// user that each hold a session of theirs and then read a sign-in's state
// — with nothing to end — do not deadlock: the read locks no session it
// keeps, so the second waits only for the user.
func TestSignInsHoldingKeptSessionsDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	u, sessions := signInLocks(t, s, "redeems@example.org")
	redeem := func(sess *authd.Session, locked, goOn chan struct{}) <-chan error {
		return sessionFirst(s, sess, locked, goOn, func(q authd.Queries) error {
			_, err := q.SignInState(ctx, u.ID, 9, storetest.Epoch)
			return err
		})
	}
	lockedA, goA, lockedB, goB := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	releaseA, releaseB := sync.OnceFunc(func() { close(goA) }), sync.OnceFunc(func() { close(goB) })
	defer releaseA()
	defer releaseB()
	a, b := redeem(sessions[0], lockedA, goA), redeem(sessions[1], lockedB, goB)
	<-lockedA
	<-lockedB
	releaseB()
	// B holds the user and reads the sessions to end: it finishes, or (as
	// when that read locked A's session too) waits; then A goes on.
	var errB error
	finishedB := false
	for !finishedB {
		select {
		case errB = <-b:
			finishedB = true
			continue
		default:
		}
		var n int
		if err := s.pool.QueryRow(ctx, storetest.LockWaits, "").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	releaseA()
	if !finishedB {
		errB = <-b
	}
	if errA := <-a; errA != nil || errB != nil {
		t.Errorf("two sign-ins of one user, each holding a session: %v, %v", errA, errB)
	}
}

// TestUserChangeAndLogoutOfASessionItEnds: a flow that changes a user and
// ends their sessions (a password change or reset, an administrator's lock,
// an erasure) reads the user first, locked; a logout of one of those
// sessions in flight meanwhile locks its session and writes its audit row,
// under the key-share lock the row's foreign key takes. That lock must not
// wait for the user's: the flow then waits for the session, and each would
// wait for the other (PostgreSQL ends one as a deadlock, a 503).
func TestUserChangeAndLogoutOfASessionItEnds(t *testing.T) {
	for _, read := range []struct {
		name string
		run  func(context.Context, authd.Queries, *authd.User) error
	}{
		{"User", func(ctx context.Context, q authd.Queries, u *authd.User) error {
			_, err := q.User(ctx, u.ID)
			return err
		}},
		{"UserByEmail", func(ctx context.Context, q authd.Queries, u *authd.User) error {
			_, err := q.UserByEmail(ctx, u.Email)
			return err
		}},
	} {
		t.Run(read.name, func(t *testing.T) {
			ctx := context.Background()
			s, _, _ := tracedStore(t)
			u, sessions := signInLocks(t, s, "changes@example.org")
			err := s.InTx(ctx, func(q authd.Queries) error {
				if err := read.run(ctx, q, u); err != nil {
					return err
				}
				locked, goOn := make(chan struct{}), make(chan struct{})
				close(goOn)
				logout := logoutInSteps(s, u, sessions[0], locked, goOn)
				if err := finishesUnblocked(t, s, logout, "INSERT INTO security_logs"); err != nil {
					return fmt.Errorf("the logout while a flow holds its user: %w", err)
				}
				ended, err := q.RevokeUserSessions(ctx, u.ID, uuid.Nil, storetest.Epoch)
				if err != nil {
					return err
				}
				if len(ended) != 1 || ended[0] != sessions[1].ID {
					t.Errorf("the flow ended %v, want only %v (the logout ended the other)", ended, sessions[1].ID)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// finishesUnblocked returns work's result, failing the test as soon as a
// statement containing marker waits for a lock instead.
func finishesUnblocked(t *testing.T, s *Store, work <-chan error, marker string) error {
	t.Helper()
	for {
		select {
		case err := <-work:
			return err
		case <-time.After(10 * time.Millisecond):
		}
		var n int
		if err := s.pool.QueryRow(context.Background(), storetest.LockWaits, marker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Fatalf("%q waits for a lock the other transaction holds", marker)
		}
	}
}

// TestErasureHoldsAuditRowsBack: an audit row about a user keeps no IP
// address or user agent if its transaction commits after the user's
// erasure has begun (SPEC 6.8). The erasure read the user with the lock
// every flow that changes a user takes, which lets such rows through;
// ErasePersonalData then locks the user harder before it clears anything.
func TestErasureHoldsAuditRowsBack(t *testing.T) {
	ctx := context.Background()
	// erase is the erasure as the service runs it, calling cleared once
	// ErasePersonalData's writes have run in its transaction: the
	// security-log rows are cleared after the commit (FinishErasure).
	erase := func(s *Store, id uuid.UUID, cleared func()) error {
		err := s.InTx(ctx, func(q authd.Queries) error {
			u, err := q.User(ctx, id)
			if err != nil {
				return err
			}
			if _, err := q.RevokeUserSessions(ctx, u.ID, uuid.Nil, storetest.Epoch); err != nil {
				return err
			}
			if err := q.ErasePersonalData(ctx, u.ID); err != nil {
				return err
			}
			if _, err := q.Sessions(ctx, u.ID, storetest.Epoch); err != nil { // a read sends the queued writes
				return err
			}
			cleared()
			u.AccountStatus, u.Email = authd.StatusDeleted, authd.Tombstone(u.ID)
			return q.UpdateUser(ctx, u)
		})
		if err != nil {
			return err
		}
		return s.FinishErasure(ctx, id)
	}
	keepsNoClient := func(t *testing.T, s *Store, logged *authd.SecurityLog) {
		t.Helper()
		logs, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: logged.UserID})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			if l.ID == logged.ID && (l.IPAddress != "" || l.UserAgent != "") {
				t.Errorf("the audit row keeps %q, %q", l.IPAddress, l.UserAgent)
			}
		}
	}
	newLog := func(u *authd.User) *authd.SecurityLog {
		return authd.NewSecurityLog(storetest.Epoch, authd.EventLoginSuccess, authd.ResultSuccess, u.ID,
			"192.0.2.7", "Browser/1.0", "", nil)
	}

	// Written before the erasure and committed while it runs: the
	// erasure waits for it before clearing, and clears it.
	t.Run("in flight before", func(t *testing.T) {
		s, _, _ := tracedStore(t)
		u, _ := signInLocks(t, s, "before@example.org")
		logged := newLog(u)
		written, commit := make(chan struct{}), make(chan struct{})
		release := sync.OnceFunc(func() { close(commit) })
		defer release()
		audit := make(chan error, 1)
		go func() {
			audit <- s.InTx(ctx, func(q authd.Queries) error {
				if err := q.CreateSecurityLog(ctx, logged); err != nil {
					return err
				}
				if _, err := q.Sessions(ctx, u.ID, storetest.Epoch); err != nil { // sends the insert
					return err
				}
				close(written)
				<-commit
				return nil
			})
		}()
		select {
		case <-written:
		case err := <-audit:
			t.Fatalf("the audit row's transaction: %v", err)
		}
		erasure := waiting(t, s, "FOR UPDATE", func() error { return erase(s, u.ID, func() {}) })
		release()
		if err := <-audit; err != nil {
			t.Fatal(err)
		}
		if err := <-erasure; err != nil {
			t.Fatal(err)
		}
		keepsNoClient(t, s, logged)
	})

	// Written once the erasure has cleared the rows it found: it waits
	// for the erasure to end and reads the user as erased.
	t.Run("written during", func(t *testing.T) {
		s, _, _ := tracedStore(t)
		u, _ := signInLocks(t, s, "during@example.org")
		cleared, goOn := make(chan struct{}), make(chan struct{})
		release := sync.OnceFunc(func() { close(goOn) })
		defer release()
		erasure := make(chan error, 1)
		go func() {
			erasure <- erase(s, u.ID, func() {
				close(cleared)
				<-goOn
			})
		}()
		select {
		case <-cleared:
		case err := <-erasure:
			t.Fatalf("the erasure, before its pause: %v", err)
		}
		logged := newLog(u)
		audit := waiting(t, s, "INSERT INTO security_logs", func() error { return s.CreateSecurityLog(ctx, logged) })
		release()
		if err := <-erasure; err != nil {
			t.Fatal(err)
		}
		if err := <-audit; err != nil {
			t.Fatal(err)
		}
		keepsNoClient(t, s, logged)
	})
}

// TestOwnedRowsLockTheirUserFirst: the reads of a user's token, challenge
// or code by its digest lock the user before the row, as the flows that
// hold the user and then change the user's rows do (here an erasure, which
// deletes them). Such a read made while the erasure holds the user waits
// for it without holding the row the erasure deletes, and then finds the
// row gone; in the other order each waited for the other.
func TestOwnedRowsLockTheirUserFirst(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		read func(authd.Queries) error
	}{
		{"VerificationToken", func(q authd.Queries) error { _, err := q.VerificationToken(ctx, "verify-digest"); return err }},
		{"MFAChallenge", func(q authd.Queries) error { _, err := q.MFAChallenge(ctx, "mfa-digest"); return err }},
		{"AuthCode", func(q authd.Queries) error { _, err := q.AuthCode(ctx, "code-digest"); return err }},
		{"WebAuthnChallenge", func(q authd.Queries) error { _, err := q.WebAuthnChallenge(ctx, "register-digest"); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _, _ := tracedStore(t)
			u, sessions := signInLocks(t, s, "owner@example.org")
			client := &authd.OAuthClient{ID: "app", Name: "App", Type: authd.ClientPublic,
				RedirectURIs: []string{"https://app.example.org/cb"}, PostLogoutRedirectURIs: []string{},
				CreatedAt: storetest.Epoch, UpdatedAt: storetest.Epoch}
			expires := storetest.Epoch.Add(time.Hour)
			for _, err := range []error{
				s.CreateVerificationToken(ctx, &authd.VerificationToken{ID: authd.NewID(), Token: "verify-digest",
					UserID: u.ID, TokenType: authd.PasswordReset, CreatedAt: storetest.Epoch, ExpiresAt: expires}),
				s.CreateMFAChallenge(ctx, &authd.MFAChallenge{ID: authd.NewID(), Token: "mfa-digest", UserID: u.ID,
					CreatedAt: storetest.Epoch, ExpiresAt: expires}),
				s.CreateClient(ctx, client),
				s.CreateAuthCode(ctx, &authd.AuthCode{ID: authd.NewID(), Digest: "code-digest", ClientID: client.ID,
					UserID: u.ID, SessionID: sessions[0].ID, RedirectURI: client.RedirectURIs[0], Scopes: []string{"openid"},
					AuthTime: storetest.Epoch, AMR: []string{authd.AMRPassword}, CreatedAt: storetest.Epoch, ExpiresAt: expires}),
				s.CreateWebAuthnChallenge(ctx, &authd.WebAuthnChallenge{ID: authd.NewID(), Challenge: "register-digest",
					UserID: u.ID, Purpose: authd.PurposeRegister, SessionData: "{}", CreatedAt: storetest.Epoch, ExpiresAt: expires}),
				s.CreateWebAuthnChallenge(ctx, &authd.WebAuthnChallenge{ID: authd.NewID(), Challenge: "login-digest",
					Purpose: authd.PurposeLogin, SessionData: "{}", CreatedAt: storetest.Epoch, ExpiresAt: expires}),
			} {
				if err != nil {
					t.Fatal(err)
				}
			}
			held, goOn := make(chan struct{}), make(chan struct{})
			release := sync.OnceFunc(func() { close(goOn) })
			defer release()
			erasure := make(chan error, 1)
			go func() {
				erasure <- s.InTx(ctx, func(q authd.Queries) error {
					if _, err := q.User(ctx, u.ID); err != nil {
						return err
					}
					close(held)
					<-goOn
					return q.ErasePersonalData(ctx, u.ID)
				})
			}()
			select {
			case <-held:
			case err := <-erasure:
				t.Fatalf("the erasure, before its pause: %v", err)
			}
			// A passwordless sign-in's ceremony has no user: its read
			// waits for no one.
			if err := s.InTx(ctx, func(q authd.Queries) error {
				_, err := q.WebAuthnChallenge(ctx, "login-digest")
				return err
			}); err != nil {
				t.Fatalf("a ceremony of no user, read while the erasure holds the user: %v", err)
			}
			read := waiting(t, s, "FROM users u WHERE u.id = r.user_id", func() error { return s.InTx(ctx, c.read) })
			release()
			if err := <-erasure; err != nil {
				t.Fatalf("the erasure: %v", err)
			}
			if err := <-read; authd.ErrorCode(err) != authd.ENotFound {
				t.Errorf("the read after the erasure deleted the row: %v, want ENotFound", err)
			}
		})
	}
}

// TestSignOutOfAnExpiredSessionDuringErasure: a sign-out of an expired
// session (never ended: the erasure ends only live ones) holds that
// session while the user's erasure runs. The erasure waits for it before
// it locks the user against audit rows, so the sign-out writes its audit
// row and finishes; when the erasure took that lock first, it then waited
// for the session while the sign-out's audit row waited for the user.
func TestSignOutOfAnExpiredSessionDuringErasure(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	u, sessions := signInLocks(t, s, "expired@example.org")
	later := sessions[0].ExpiresAt.Add(time.Minute) // both sessions expired, neither ended
	locked, goOn := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(goOn) })
	defer release()
	logout := logoutInSteps(s, u, sessions[0], locked, goOn)
	<-locked
	erasure := waiting(t, s, "UPDATE sessions SET device_info", func() error {
		return s.InTx(ctx, func(q authd.Queries) error {
			if _, err := q.User(ctx, u.ID); err != nil {
				return err
			}
			if ended, err := q.RevokeUserSessions(ctx, u.ID, uuid.Nil, later); err != nil || len(ended) != 0 {
				return fmt.Errorf("the erasure ended %v, %v; want none (both expired)", ended, err)
			}
			return q.ErasePersonalData(ctx, u.ID)
		})
	})
	release()
	if err := <-logout; err != nil {
		t.Errorf("the sign-out: %v", err)
	}
	if err := <-erasure; err != nil {
		t.Errorf("the erasure: %v", err)
	}
}

// TestUsersListedByTheirIndex: the administrator's listing of users, first
// page and one after a cursor, reads ix_users_created_at rather than
// reading and sorting the whole table (a probe: 463 ms a page at 200,000
// users, 9 ms with the index).
func TestUsersListedByTheirIndex(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	if _, err := s.pool.Exec(ctx, `INSERT INTO users (id, email, password_hash, account_status, email_verified,
		consent_status, consent_timestamp, registration_timestamp, last_password_change, created_at, updated_at)
		SELECT gen_random_uuid(), 'user' || i || '@example.org', 'x', 'active', true, true, $1, $1, $1,
			$1::timestamptz + i * interval '1 second', $1
		FROM generate_series(1, 5000) AS i`, storetest.Epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE users`); err != nil {
		t.Fatal(err)
	}
	first, err := s.Users(ctx, authd.UserFilter{Limit: 50})
	if err != nil || len(first) != 50 {
		t.Fatalf("first page: %d users, %v", len(first), err)
	}
	last := first[len(first)-1]
	for name, f := range map[string]authd.UserFilter{"the first page": {Limit: 51},
		"a page after a cursor": {Limit: 51, After: &authd.Cursor{Time: last.CreatedAt, ID: last.ID}}} {
		sql, args := usersQuery(f)
		if plan := explain(t, s, sql, args); !strings.Contains(plan, "ix_users_created_at") || strings.Contains(plan, "Sort") {
			t.Errorf("%s: plan\n%s\nwant a scan of ix_users_created_at, no sort", name, plan)
		}
	}
}

// explain is PostgreSQL's plan for sql run with args, under the planner
// settings given (as "enable_bitmapscan = off").
func explain(t *testing.T, s *Store, sql string, args []any, settings ...string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, set := range settings {
		if _, err := tx.Exec(ctx, `SET LOCAL `+set); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, `EXPLAIN `+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan += line + "\n"
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestSecurityLogsListedByEvent: a listing of the security log by event
// (and result, or user), first page or after a cursor, can read
// ix_security_logs_event_type in order, with no sort — which the seed's
// one-column index cannot, so the planner had only the walk back along the
// timestamp index past every newer row for a rare event (a probe at
// 2,000,000 rows: 4.6 s for an event and result nothing matched, 0.6 s with
// migration 27's index; 277 ms for a rare event, 3 ms). A forced-plan
// test: with bitmap scans off, what the planner has to choose from shows.
func TestSecurityLogsListedByEvent(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	// 40,000 rows a second apart: one busy user in one row of ten, the 97
	// others in one of a hundred each; one row in a hundred an
	// account_locked (the busy user's), the rest refreshes and logins.
	if _, err := s.pool.Exec(ctx, `INSERT INTO users (id, email, password_hash, account_status, email_verified,
		consent_status, consent_timestamp, registration_timestamp, last_password_change, created_at, updated_at)
		SELECT gen_random_uuid(), 'user' || i || '@example.org', 'x', 'active', true, true, $1, $1, $1, $1, $1
		FROM generate_series(1, 100) AS i`, storetest.Epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO security_logs (id, event_type, user_id, "timestamp", result)
		SELECT gen_random_uuid(),
			(CASE WHEN i % 100 = 0 THEN 'account_locked' WHEN i % 2 = 0 THEN 'token_refreshed' ELSE 'login_success' END)::event_type,
			(SELECT id FROM users WHERE email = 'user' || (CASE WHEN i % 10 = 0 THEN 1 ELSE i % 97 + 2 END) || '@example.org'),
			$1::timestamptz + i * interval '1 second', 'success'
		FROM generate_series(1, 40000) AS i`, storetest.Epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE security_logs`); err != nil {
		t.Fatal(err)
	}
	var heavy uuid.UUID
	if err := s.pool.QueryRow(ctx, `SELECT id FROM users WHERE email = 'user1@example.org'`).Scan(&heavy); err != nil {
		t.Fatal(err)
	}
	cursor := &authd.Cursor{Time: storetest.Epoch.Add(30000 * time.Second), ID: uuid.Max}
	for name, f := range map[string]authd.SecurityLogFilter{
		"an event and a result":    {EventType: authd.EventAccountLocked, Result: authd.ResultFailure},
		"an event after a cursor":  {EventType: authd.EventAccountLocked, After: cursor},
		"a busy user and an event": {UserID: heavy, EventType: authd.EventAccountLocked},
	} {
		f.Limit = 51
		sql, args := securityLogsQuery(f)
		// At this table's size a bitmap read of a few hundred matches and
		// their sort is cheapest (as it can be at millions of rows: the
		// planner picks by cost); without it, the index read in order must
		// be there to pick.
		plan := explain(t, s, sql, args, "enable_bitmapscan = off")
		if !strings.Contains(plan, "ix_security_logs_event_type") || strings.Contains(plan, "Sort") {
			t.Errorf("%s: plan\n%s\nwant a scan of ix_security_logs_event_type, no sort", name, plan)
		}
	}
	// And the listing finds what the plan reads: newest first, from the
	// cursor on (the row at its time has an id below uuid.Max).
	logs, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventAccountLocked, After: cursor, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []time.Time
	for _, l := range logs {
		got = append(got, l.Timestamp)
	}
	want := []time.Time{storetest.Epoch.Add(30000 * time.Second), storetest.Epoch.Add(29900 * time.Second), storetest.Epoch.Add(29800 * time.Second)}
	if !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("account_locked rows before the cursor: %v, want %v", got, want)
	}
}

// TestClientSessionsOfOneUserReadByTheirIndex: ending one user's sessions
// of a client (a consent withdrawn) reads that user's live sessions even
// under the generic plan the statement cache turns to after five runs —
// not every session the client ever had ("$3 IS NULL OR user_id = $3"
// could not use a user's index there).
func TestClientSessionsOfOneUserReadByTheirIndex(t *testing.T) {
	ctx := context.Background()
	s, one, _ := tracedStore(t) // one: a pool of one connection
	if _, err := s.pool.Exec(ctx, `INSERT INTO users (id, email, password_hash, account_status, email_verified,
		consent_status, consent_timestamp, registration_timestamp, last_password_change, created_at, updated_at)
		SELECT gen_random_uuid(), 'user' || i || '@example.org', 'x', 'active', true, true, $1, $1, $1, $1, $1
		FROM generate_series(1, 200) AS i`, storetest.Epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO sessions (id, user_id, client_id, created_at, last_used_at, expires_at)
		SELECT gen_random_uuid(), u.id, 'app', $1, $1, $1::timestamptz + interval '1 hour'
		FROM users u, generate_series(1, 50)`, storetest.Epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE sessions`); err != nil {
		t.Fatal(err)
	}
	var user uuid.UUID
	if err := s.pool.QueryRow(ctx, `SELECT id FROM users LIMIT 1`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	// A prepared statement's generic plan, as the statement cache's: its
	// parameters stay parameters.
	if _, err := one.pool.Exec(ctx, `PREPARE revoke_user_client_sessions(timestamptz, text, uuid) AS `+revokeUserClientSessions); err != nil {
		t.Fatal(err)
	}
	plan := explain(t, one, fmt.Sprintf(`EXECUTE revoke_user_client_sessions('%s', 'app', '%s')`,
		storetest.Epoch.Format(time.RFC3339Nano), user), nil, "plan_cache_mode = force_generic_plan")
	if !strings.Contains(plan, "ix_sessions_user_id") || !strings.Contains(plan, "$3") {
		t.Errorf("one user's sessions of a client, generic plan:\n%s\nwant a scan of the user's sessions", plan)
	}
}
