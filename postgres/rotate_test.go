package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// rotateFixture is a user with one session and its refresh token.
type rotateFixture struct {
	user    *authd.User
	session *authd.Session
	token   *authd.Token
}

// newRotateFixture stores a fixture at now, after edit changed it.
func newRotateFixture(t *testing.T, s *Store, now time.Time, edit func(*rotateFixture)) *rotateFixture {
	t.Helper()
	ctx := context.Background()
	u := storetest.NewUser(fmt.Sprintf("rotate-%s@example.org", uuid.NewString()[:8]))
	sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, DeviceInfo: "laptop", CreatedAt: now, LastUsedAt: now.Add(-time.Hour),
		ExpiresAt: now.Add(time.Hour), AMR: []string{"pwd"}}
	tok := &authd.Token{ID: authd.NewID(), JTI: uuid.NewString(), UserID: u.ID, SessionID: sess.ID,
		TokenType: authd.TokenRefresh, TokenValue: "digest-" + uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		DeviceInfo: "laptop", CreatedAt: now}
	f := &rotateFixture{user: u, session: sess, token: tok}
	if edit != nil {
		edit(f)
	}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return f
}

// rotation rotates f's token at now, for client, into a child that would
// outlive the session.
func (f *rotateFixture) rotation(now time.Time, client string) *authd.Rotation {
	return &authd.Rotation{Digest: f.token.TokenValue, ClientID: client, Now: now,
		Child: &authd.Token{ID: authd.NewID(), JTI: uuid.NewString(), TokenType: authd.TokenRefresh,
			TokenValue: "child-" + uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(7 * 24 * time.Hour), CreatedAt: now},
		Log: authd.NewSecurityLog(now, authd.EventTokenRefreshed, authd.ResultSuccess, uuid.Nil, "192.0.2.7", "agent/1", "",
			map[string]any{"retry": false})}
}

// untouched fails t unless f's rows are as stored: the token unrevoked,
// no child, the session unused, no audit row.
func (f *rotateFixture) untouched(t *testing.T, s *Store, r *authd.Rotation) {
	t.Helper()
	ctx := context.Background()
	if tok, err := s.RefreshToken(ctx, f.token.TokenValue); err != nil || tok.Revoked != f.token.Revoked ||
		!tok.RotatedAt.Equal(f.token.RotatedAt) {
		t.Errorf("token after a declined rotation: %+v, %v", tok, err)
	}
	if _, err := s.RefreshToken(ctx, r.Child.TokenValue); authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("a declined rotation inserted its child: %v", err)
	}
	if sess, err := s.Session(ctx, f.session.ID); err != nil || !sess.LastUsedAt.Equal(f.session.LastUsedAt) {
		t.Errorf("session after a declined rotation: %+v, %v", sess, err)
	}
	if logs, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: f.user.ID}); err != nil || len(logs) != 0 {
		t.Errorf("a declined rotation logged %d rows (%v)", len(logs), err)
	}
}

// TestRotate: the one-statement rotation writes what the service's own
// transaction writes, in one round trip (two with an admission check that
// can still roll it back), and declines, changing nothing, every case
// that is not an ordinary rotation.
// fixed is a Rotation made before the store holds a connection.
func fixed(r *authd.Rotation) func() *authd.Rotation { return func() *authd.Rotation { return r } }

func TestRotate(t *testing.T) {
	ctx := context.Background()
	s, traced, trips := tracedStore(t)
	now := storetest.Epoch

	f := newRotateFixture(t, s, now, nil)
	warm := newRotateFixture(t, s, now, nil) // warms the traced connection's statement cache
	if _, err := traced.Rotate(ctx, fixed(warm.rotation(now, "")), nil); err != nil {
		t.Fatal(err)
	}
	trips.n.Store(0)
	r := f.rotation(now, "")
	sess, err := traced.Rotate(ctx, fixed(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 1 {
		t.Errorf("a rotation took %d round trips, want 1", n)
	}
	want := *f.session
	want.LastUsedAt = now
	if sess.ID != want.ID || sess.UserID != want.UserID || !sess.LastUsedAt.Equal(now) ||
		!sess.ExpiresAt.Equal(want.ExpiresAt) || sess.DeviceInfo != want.DeviceInfo || len(sess.AMR) != 1 {
		t.Errorf("Rotate returned session %+v, want %+v", sess, want)
	}
	parent, err := s.RefreshToken(ctx, f.token.TokenValue)
	if err != nil || !parent.Revoked || !parent.RevokedAt.Equal(now) || !parent.RotatedAt.Equal(now) {
		t.Errorf("rotated token %+v, %v; want revoked and rotated at %v", parent, err, now)
	}
	child, err := s.RefreshToken(ctx, r.Child.TokenValue)
	if err != nil {
		t.Fatal(err)
	}
	if child.ID != r.Child.ID || child.JTI != r.Child.JTI || child.UserID != f.user.ID || child.SessionID != f.session.ID ||
		child.ParentID != f.token.ID || child.DeviceInfo != "laptop" || child.Revoked || !child.IssuedAt.Equal(now) ||
		!child.CreatedAt.Equal(now) || !child.ExpiresAt.Equal(f.session.ExpiresAt) {
		t.Errorf("child %+v; want the rotation's, in the parent's session, expiring with the session at %v", child, f.session.ExpiresAt)
	}
	if stored, err := s.Session(ctx, f.session.ID); err != nil || !stored.LastUsedAt.Equal(now) {
		t.Errorf("session after the rotation: %+v, %v", stored, err)
	}
	logs, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: f.user.ID})
	if err != nil || len(logs) != 1 {
		t.Fatalf("audit rows %v, %v; want one", logs, err)
	}
	l := logs[0]
	wantContext := map[string]any{"retry": false, "session_id": f.session.ID.String()}
	if l.ID != r.Log.ID || l.EventType != authd.EventTokenRefreshed || l.Result != authd.ResultSuccess ||
		!l.Timestamp.Equal(now) || l.IPAddress != "192.0.2.7" || l.UserAgent != "agent/1" || l.FailureReason != "" ||
		!maps.Equal(l.AdditionalContext, wantContext) {
		t.Errorf("audit row %+v; want the rotation's, for the user, with context %v", l, wantContext)
	}

	t.Run("admitted", func(t *testing.T) {
		f := newRotateFixture(t, s, now, nil)
		var admitted *authd.Session
		trips.n.Store(0)
		sess, err := traced.Rotate(ctx, fixed(f.rotation(now, "")), func(s *authd.Session) error { admitted = s; return nil })
		if err != nil || admitted == nil || admitted.ID != f.session.ID || sess.ID != f.session.ID {
			t.Fatalf("Rotate = %+v, %v; admit saw %+v", sess, err, admitted)
		}
		if n := trips.n.Load(); n != 2 {
			t.Errorf("an admitted rotation took %d round trips, want 2 (BEGIN with the statement, COMMIT)", n)
		}
		if tok, err := s.RefreshToken(ctx, f.token.TokenValue); err != nil || !tok.Revoked {
			t.Errorf("an admitted rotation was not committed: %+v, %v", tok, err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		f := newRotateFixture(t, s, now, nil)
		r := f.rotation(now, "")
		limited := &authd.Error{Code: authd.ERateLimited, Message: "too many"}
		if _, err := traced.Rotate(ctx, fixed(r), func(*authd.Session) error { return limited }); !errors.Is(err, limited) {
			t.Fatalf("Rotate with a refusing admit = %v, want its error", err)
		}
		f.untouched(t, s, r)
		if stat := traced.pool.Stat(); stat.AcquiredConns() != 0 {
			t.Errorf("%d connections still acquired after a refused rotation", stat.AcquiredConns())
		}
	})

	declined := []struct {
		name   string
		client string
		edit   func(*rotateFixture)
	}{
		{"unknown token", "", nil},
		{"revoked token", "", func(f *rotateFixture) { f.token.Revoked, f.token.RevokedAt, f.token.RotatedAt = true, now, now }},
		{"expired token", "", func(f *rotateFixture) { f.token.ExpiresAt = now }},
		{"ended session", "", func(f *rotateFixture) { f.session.RevokedAt = now.Add(-time.Minute) }},
		{"expired session", "", func(f *rotateFixture) { f.session.ExpiresAt = now }},
		{"another client's session", "", func(f *rotateFixture) { f.session.ClientID = "app" }},
		{"a client's token at the JSON API", "app", nil},
		{"locked account", "", func(f *rotateFixture) {
			f.user.AccountStatus, f.user.LockReason = authd.StatusLocked, authd.LockAdmin
		}},
		{"account locked by brute force", "", func(f *rotateFixture) {
			f.user.AccountStatus, f.user.AccountLockedUntil, f.user.LockReason = authd.StatusLocked, now.Add(time.Minute), authd.LockBruteForce
		}},
		{"timed lock", "", func(f *rotateFixture) {
			f.user.AccountLockedUntil, f.user.LockReason = now.Add(time.Minute), authd.LockAdmin
		}},
		{"erased account", "", func(f *rotateFixture) { f.user.AccountStatus = authd.StatusDeleted }},
	}
	for _, c := range declined {
		t.Run(c.name, func(t *testing.T) {
			f := newRotateFixture(t, s, now, c.edit)
			r := f.rotation(now, c.client)
			if c.name == "unknown token" {
				r.Digest = "digest-of-nothing"
			}
			admitted := false
			if _, err := s.Rotate(ctx, fixed(r), func(*authd.Session) error { admitted = true; return nil }); authd.ErrorCode(err) != authd.ENotFound {
				t.Errorf("Rotate = %v, want ENotFound", err)
			}
			if admitted {
				t.Error("admit was asked about a declined rotation")
			}
			if _, err := s.Rotate(ctx, fixed(r), nil); authd.ErrorCode(err) != authd.ENotFound {
				t.Errorf("Rotate without admit = %v, want ENotFound", err)
			}
			f.untouched(t, s, r)
		})
	}

	t.Run("rows held", func(t *testing.T) { testRotateDoesNotWait(t, s, now) })
}

// testRotateDoesNotWait: a rotation that meets a writer holding its rows
// does not wait for it (its times were read before it ran): it changes
// nothing and answers ENotFound while the writer still holds them, for the
// service's transaction to wait and decide (TestRefreshReadWaitsForOtherFlows).
func testRotateDoesNotWait(t *testing.T, s *Store, now time.Time) {
	ctx := context.Background()
	// rotate rotates r; one that waited would run out of this bound.
	rotate := func(r *authd.Rotation, admit func(*authd.Session) error) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.Rotate(ctx, fixed(r), admit)
		return err
	}
	// held runs the statements about f in a transaction of its own and,
	// while that holds their rows, rotates r; it returns the rotation's
	// outcome.
	held := func(t *testing.T, f *rotateFixture, r *authd.Rotation, admit func(*authd.Session) error, statements ...string) error {
		t.Helper()
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // after Commit: a no-op
		for _, sql := range statements {
			if _, err := tx.Exec(ctx, sql, f.user.ID, f.session.ID, now); err != nil {
				t.Fatal(err)
			}
		}
		err = rotate(r, admit)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return err
	}
	// declined fails t unless r changed nothing and said ENotFound.
	declined := func(t *testing.T, f *rotateFixture, r *authd.Rotation, err error) {
		t.Helper()
		if authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the rotation beside the writer = %v, want ENotFound at once", err)
		}
		if _, err := s.RefreshToken(ctx, r.Child.TokenValue); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the declined rotation inserted its child: %v", err)
		}
		if logs, err := s.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: f.user.ID}); err != nil || len(logs) != 0 {
			t.Errorf("the declined rotation logged %d rows (%v)", len(logs), err)
		}
	}
	for _, c := range []struct {
		name       string
		statements []string
	}{
		{"a logout", []string{endSession, revokeChain}},
		{"an administrator's lock", []string{lockUser, markLocked, endSession}},
		{"a change of the user alone", []string{markLocked}},
		{"the user read to be changed", []string{lockUser}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, admitted := range []bool{false, true} {
				f := newRotateFixture(t, s, now, nil)
				r := f.rotation(now, "")
				var admit func(*authd.Session) error
				if admitted {
					admit = func(*authd.Session) error { t.Error("admit was asked beside the writer"); return nil }
				}
				declined(t, f, r, held(t, f, r, admit, c.statements...))
			}
		})
	}
	t.Run("not beside another session's rotation", func(t *testing.T) {
		// Both share-lock the user: the one-statement path must not give
		// way to every refresh of the same account (the user's other tabs
		// and devices).
		f := newRotateFixture(t, s, now, nil)
		other := *f.session
		other.ID = authd.NewID()
		tok := *f.token
		tok.ID, tok.JTI, tok.SessionID, tok.TokenValue = authd.NewID(), uuid.NewString(), other.ID, "digest-"+uuid.NewString()
		if err := s.CreateSession(ctx, &other); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateToken(ctx, &tok); err != nil {
			t.Fatal(err)
		}
		release, admitted := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			g := &rotateFixture{user: f.user, session: &other, token: &tok}
			first <- rotate(g.rotation(now, ""), func(*authd.Session) error {
				close(admitted)
				<-release
				return nil
			})
		}()
		<-admitted
		err := rotate(f.rotation(now, ""), nil)
		close(release)
		if err != nil {
			t.Errorf("a rotation beside another session's of the same user: %v; want it made at once", err)
		}
		if err := <-first; err != nil {
			t.Fatalf("the other session's rotation: %v", err)
		}
	})
	t.Run("another rotation", func(t *testing.T) {
		f := newRotateFixture(t, s, now, nil)
		release, admitted := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- rotate(f.rotation(now, ""), func(*authd.Session) error {
				close(admitted)
				<-release
				return nil
			})
		}()
		<-admitted
		r := f.rotation(now, "")
		second := rotate(r, nil)
		close(release)
		if err := <-first; err != nil {
			t.Fatalf("the first rotation: %v", err)
		}
		if _, err := s.RefreshToken(ctx, r.Child.TokenValue); authd.ErrorCode(second) != authd.ENotFound ||
			authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the second rotation of one token: %v (child: %v); want ENotFound, for the transaction to decide", second, err)
		}
	})
}

// The statements of other flows, about a fixture's user ($1) and session
// ($2) at a time ($3).
const (
	lockUser    = `SELECT 1 FROM users WHERE id = $1 AND $2::uuid IS NOT NULL AND $3::timestamptz IS NOT NULL FOR UPDATE`
	markLocked  = `UPDATE users SET account_status = 'locked', lock_reason = 'admin' WHERE id = $1 AND $2::uuid IS NOT NULL AND $3::timestamptz IS NOT NULL`
	endSession  = `UPDATE sessions SET revoked_at = $3 WHERE id = $2 AND $1::uuid IS NOT NULL`
	revokeChain = `UPDATE jwt_tokens SET revoked = true, revoked_at = $3 WHERE session_id = $2 AND $1::uuid IS NOT NULL`
)

// writeAround runs statements about f at now in a transaction of its own,
// start's work waiting between the first and the rest, commits and returns
// the work's outcome.
func writeAround(t *testing.T, s *Store, f *rotateFixture, now time.Time, start func() <-chan error, first string, rest ...string) error {
	t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit: a no-op
	if _, err := tx.Exec(ctx, first, f.user.ID, f.session.ID, now); err != nil {
		t.Fatal(err)
	}
	done := start()
	for _, sql := range rest {
		if _, err := tx.Exec(ctx, sql, f.user.ID, f.session.ID, now); err != nil {
			t.Fatalf("%s, with another transaction waiting: %v", sql, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return <-done
}

// waiting runs work and returns its outcome once a statement of s's
// database holding marker ("": any) waits for a row lock.
func waiting(t *testing.T, s *Store, marker string, work func() error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- work() }()
	for range 1000 {
		var n int
		if err := s.pool.QueryRow(context.Background(), storetest.LockWaits, marker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return done
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%q never waited for the other transaction's lock", marker)
	return nil
}

// TestRefreshReadWaitsForOtherFlows: refresh's transaction locks the user
// (shared), the session and the token in the order of the other flows
// that change them, so each waits for the other instead of deadlocking,
// and then reads what the other left.
func TestRefreshReadWaitsForOtherFlows(t *testing.T) {
	ctx := context.Background()
	s, _, _ := tracedStore(t)
	now := storetest.Epoch
	for _, c := range []struct {
		name        string
		first       string
		rest        []string
		revoked     bool
		statusAfter authd.AccountStatus
	}{
		{"a logout", endSession, []string{revokeChain}, true, authd.StatusActive},
		{"an administrator's lock", lockUser, []string{markLocked, endSession}, false, authd.StatusLocked},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newRotateFixture(t, s, now, nil)
			var tok *authd.Token
			var u *authd.User
			err := writeAround(t, s, f, now, func() <-chan error {
				return waiting(t, s, "", func() error {
					return s.InTx(ctx, func(q authd.Queries) error {
						var err error
						if tok, _, u, err = q.RefreshSession(ctx, f.token.TokenValue); err != nil {
							return err
						}
						// A refresh's audit row: its foreign key key-shares the user.
						return q.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventTokenRefreshed,
							authd.ResultFailure, f.user.ID, "", "", "session ended", nil))
					})
				})
			}, c.first, c.rest...)
			if err != nil {
				t.Fatalf("the refresh's transaction, waiting: %v", err)
			}
			if tok.Revoked != c.revoked || u.AccountStatus != c.statusAfter {
				t.Errorf("the refresh read token revoked=%v, user %s; want what the flow it waited for left: %v, %s",
					tok.Revoked, u.AccountStatus, c.revoked, c.statusAfter)
			}
		})
	}
}
