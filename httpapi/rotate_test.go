package httpapi_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/teststores"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// withoutRotator hides a store's Rotator: the service then decides every
// refresh in its own transaction.
type withoutRotator struct{ authd.Store }

// countedRotations counts the rotations its store made at once.
type countedRotations struct {
	*postgres.Store
	made atomic.Int32
}

func (c *countedRotations) Rotate(ctx context.Context, r func() *authd.Rotation, admit func(*authd.Session) error) (*authd.Session, error) {
	sess, err := c.Store.Rotate(ctx, r, admit)
	if err == nil {
		c.made.Add(1)
	}
	return sess, err
}

// refreshView is what a refresh answered and wrote, with every id replaced
// by its role and every time by its distance from the refresh.
type refreshView struct {
	Answer               map[string]any
	Claims               map[string]any
	Parent, Child        map[string]any
	SessionLastUsed      time.Duration
	Event, IP, UserAgent string
	Context              map[string]any
}

// refreshOnce logs email in, refreshes after a minute and returns what the
// refresh answered and wrote.
func refreshOnce(t *testing.T, e *env, email string) refreshView {
	t.Helper()
	ctx := context.Background()
	e.registerVerified(email, goodPassword)
	_, refresh := e.login(email, goodPassword)
	e.clock.Advance(time.Minute)
	now := e.clock.Now()
	r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}, "User-Agent", "agent/1")
	want(t, "refresh", r, 200, "")
	u := e.user(email)
	sid := r.str("session_id")
	role := func(id string) string {
		switch id {
		case u.ID.String():
			return "user"
		case sid:
			return "session"
		}
		return id
	}
	token := func(raw string) (map[string]any, *authd.Token) {
		tok, err := e.store.RefreshToken(ctx, authd.Digest(raw))
		if err != nil {
			t.Fatal(err)
		}
		at := func(x time.Time) any {
			if x.IsZero() {
				return nil
			}
			return x.Sub(now)
		}
		return map[string]any{"user": role(tok.UserID.String()), "session": role(tok.SessionID.String()),
			"type": tok.TokenType, "issued": at(tok.IssuedAt), "expires": at(tok.ExpiresAt), "revoked": tok.Revoked,
			"revoked_at": at(tok.RevokedAt), "rotated_at": at(tok.RotatedAt), "device": tok.DeviceInfo,
			"created": at(tok.CreatedAt)}, tok
	}
	parent, parentRow := token(refresh)
	child, childRow := token(r.str("refresh_token"))
	if childRow.ParentID != parentRow.ID {
		t.Errorf("the child's parent is %s, want the rotated token %s", childRow.ParentID, parentRow.ID)
	}
	sess, err := e.store.Session(ctx, childRow.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := e.store.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: u.ID, EventType: authd.EventTokenRefreshed})
	if err != nil || len(logs) != 1 {
		t.Fatalf("token_refreshed rows %v, %v; want one", logs, err)
	}
	l := logs[0]
	logContext := map[string]any{}
	for k, v := range l.AdditionalContext {
		if s, ok := v.(string); ok {
			v = role(s)
		}
		logContext[k] = v
	}
	answer := map[string]any{}
	for k, v := range r.body {
		switch k {
		case "access_token", "refresh_token":
			v = fmt.Sprintf("%T", v)
		case "session_id":
			v = role(v.(string))
		}
		answer[k] = v
	}
	claims := jwtClaims(t, r.str("access_token"))
	for _, k := range []string{"jti", "iat", "exp", "nbf"} {
		if _, ok := claims[k]; ok {
			claims[k] = "present"
		}
	}
	claims["sub"], claims["sid"] = role(fmt.Sprint(claims["sub"])), role(fmt.Sprint(claims["sid"]))
	return refreshView{Answer: answer, Claims: claims, Parent: parent, Child: child,
		SessionLastUsed: sess.LastUsedAt.Sub(now), Event: string(l.EventType) + "/" + string(l.Result),
		IP: l.IPAddress, UserAgent: l.UserAgent, Context: logContext}
}

// TestRefreshAtOnceAsInItsTransaction: on PostgreSQL an ordinary refresh is
// one statement (authd.Rotator), alone or, with rate limits, in a
// transaction; it answers and writes exactly what the service's own
// transaction answers and writes.
func TestRefreshAtOnceAsInItsTransaction(t *testing.T) {
	withAndWithoutRateLimits(t, func(t *testing.T, opts ...option) {
		stores := instances(t, 2)
		atOnce := &countedRotations{Store: stores[0]}
		fast := refreshOnce(t, newEnv(t, atOnce, opts...), "at-once@example.org")
		slow := refreshOnce(t, newEnv(t, withoutRotator{stores[1]}, opts...), "in-tx@example.org")
		if n := atOnce.made.Load(); n != 1 {
			t.Fatalf("the store made %d rotations at once, want 1: the refresh did not take the one-statement path", n)
		}
		if diff := cmp.Diff(slow, fast); diff != "" {
			t.Errorf("a refresh at once differs from one in its transaction (-transaction +at once):\n%s", diff)
		}
	})
}

// TestRefreshOutlivesItsClient: a refresh whose client hangs up while it
// waits for a lock still finishes, rotation and answer, rather than
// failing after a commit the client will never learn of (its retry would be
// reuse once the grace window passed).
func TestRefreshOutlivesItsClient(t *testing.T) {
	t.Parallel()
	store := instances(t, 1)[0]
	e := newEnv(t, store)
	e.registerVerified("hangs-up@example.org", goodPassword)
	_, refresh := e.login("hangs-up@example.org", goodPassword)
	ctx := context.Background()
	rt, err := store.RefreshToken(ctx, authd.Digest(refresh))
	if err != nil {
		t.Fatal(err)
	}
	tx := lockSession(t, store, rt.SessionID)
	client, hangUp := context.WithCancel(ctx)
	type outcome struct {
		pair *authd.TokenPair
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		pair, err := e.svc.Refresh(client, authd.Client{IP: "192.0.2.1"}, refresh)
		done <- outcome{pair, err}
	}()
	awaitLockWait(t, store)
	hangUp()
	time.Sleep(50 * time.Millisecond) // a refresh that followed its client would give up now
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil {
		t.Fatalf("the refresh whose client hung up: %v; want it finished", got.err)
	}
	if rotated, err := store.RefreshToken(ctx, authd.Digest(refresh)); err != nil || !rotated.Revoked {
		t.Errorf("the presented token after the refresh: %+v, %v; want it rotated", rotated, err)
	}
	if _, err := store.RefreshToken(ctx, authd.Digest(got.pair.RefreshToken)); err != nil {
		t.Errorf("the child the refresh answered with is not stored: %v", err)
	}
}

// lockSession locks the session's row in a transaction of its own, which the
// caller ends (a rollback when the test ends, too).
func lockSession(t *testing.T, store *postgres.Store, id uuid.UUID) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx) }) //nolint:errcheck // ended before, most often
	if _, err := tx.Exec(ctx, `SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	return tx
}

// awaitLockWait returns once a transaction of the store's database waits
// for a lock another of its transactions holds.
func awaitLockWait(t *testing.T, store *postgres.Store) {
	t.Helper()
	for waiting, tries := 0, 0; waiting == 0; tries++ {
		if tries == 1000 {
			t.Fatal("no transaction ever waited for the lock")
		}
		time.Sleep(10 * time.Millisecond)
		if err := store.Pool().QueryRow(context.Background(), storetest.LockWaits, "").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRefreshAfterALockWaitKeepsItsGrace: a refresh that waited for its
// session's lock longer than the grace window stamps its rotation when the
// wait ended, so that a client that gave up meanwhile and repeats the token
// gets the rotation's child. Stamped when the refresh began (the one
// statement read the clock before it waited), the rotation's grace was
// spent before it committed: the repeat was reuse and ended the session.
func TestRefreshAfterALockWaitKeepsItsGrace(t *testing.T) {
	t.Parallel()
	for name, wrap := range map[string]func(*postgres.Store) authd.Store{
		"at once":            func(s *postgres.Store) authd.Store { return s },
		"in its transaction": func(s *postgres.Store) authd.Store { return withoutRotator{s} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store := instances(t, 1)[0]
			e := newEnv(t, wrap(store))
			e.registerVerified("waits@example.org", goodPassword)
			_, refresh := e.login("waits@example.org", goodPassword)
			rt, err := store.RefreshToken(ctx, authd.Digest(refresh))
			if err != nil {
				t.Fatal(err)
			}
			tx := lockSession(t, store, rt.SessionID)
			done := refreshing(e, refresh)
			awaitLockWait(t, store)
			e.clock.Advance(e.cfg.RefreshReuseGrace + time.Second)
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			repeatGetsTheChild(t, e, refresh, done)
		})
	}
}

// enteringRotations tells when a rotation reaches its store.
type enteringRotations struct {
	*postgres.Store
	entered chan struct{}
}

func (s *enteringRotations) Rotate(ctx context.Context, r func() *authd.Rotation, admit func(*authd.Session) error) (*authd.Session, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	return s.Store.Rotate(ctx, r, admit)
}

// TestRefreshAfterAPoolWaitKeepsItsGrace: the one-statement rotation reads
// the clock once its store holds a database connection, so that one that
// waited for a free connection (a pool spent under load) longer than the
// grace window still grants its client's repeat the child. Read before,
// the rotation's window was spent when it committed: the repeat was reuse.
func TestRefreshAfterAPoolWaitKeepsItsGrace(t *testing.T) {
	// With rate limits the statement runs in a transaction (Rotate's admit).
	withAndWithoutRateLimits(t, func(t *testing.T, opts ...option) {
		ctx := context.Background()
		store := teststores.PostgresAt(t, onePooledConnection(t, teststores.PostgresURL(t)))
		rotations := &enteringRotations{Store: store, entered: make(chan struct{}, 1)}
		e := newEnv(t, rotations, opts...)
		e.registerVerified("pool@example.org", goodPassword)
		_, refresh := e.login("pool@example.org", goodPassword)
		held, err := store.Pool().Acquire(ctx) // the pool's one connection
		if err != nil {
			t.Fatal(err)
		}
		done := refreshing(e, refresh)
		<-rotations.entered // and waits for the connection
		e.clock.Advance(e.cfg.RefreshReuseGrace + time.Second)
		held.Release()
		repeatGetsTheChild(t, e, refresh, done)
	})
}

// refreshOutcome is what a refresh answered.
type refreshOutcome struct {
	pair *authd.TokenPair
	err  error
}

// refreshing starts a refresh of the token and returns where its outcome
// comes.
func refreshing(e *env, refresh string) <-chan refreshOutcome { return refreshingFor(e, "", refresh) }

// refreshingFor is refreshing by the OpenID client clientID ("": the JSON API).
func refreshingFor(e *env, clientID, refresh string) <-chan refreshOutcome {
	done := make(chan refreshOutcome, 1)
	go func() {
		ctx, c := context.Background(), authd.Client{IP: "192.0.2.1"}
		var pair *authd.TokenPair
		var err error
		if clientID == "" {
			pair, err = e.svc.Refresh(ctx, c, refresh)
		} else {
			pair, err = e.svc.RefreshForClient(ctx, c, clientID, refresh, nil)
		}
		done <- refreshOutcome{pair, err}
	}()
	return done
}

// repeatGetsTheChild fails t unless the refresh of done succeeded and a
// repeat of its token (its answer never reached the client) gets the same
// child, its session live.
func repeatGetsTheChild(t *testing.T, e *env, refresh string, done <-chan refreshOutcome) {
	t.Helper()
	first := <-done
	if first.err != nil {
		t.Fatalf("the refresh that waited: %v", first.err)
	}
	ctx := context.Background()
	again, err := e.svc.Refresh(ctx, authd.Client{IP: "192.0.2.1"}, refresh)
	if err != nil {
		t.Fatalf("the repeat just after the rotation: %v; want the rotation's child (grace)", err)
	}
	if again.RefreshToken != first.pair.RefreshToken {
		t.Error("the repeat got another child than the rotation's")
	}
	if _, err := e.svc.Authenticate(ctx, again.AccessToken); err != nil {
		t.Errorf("the session after the repeat: %v; want it live", err)
	}
}

// withAndWithoutRateLimits runs test as two parallel subtests, with the
// env option of rate limits and without.
func withAndWithoutRateLimits(t *testing.T, test func(t *testing.T, opts ...option)) {
	t.Parallel()
	for _, limits := range []bool{false, true} {
		t.Run(fmt.Sprintf("rate limits %v", limits), func(t *testing.T) {
			t.Parallel()
			if limits {
				test(t, withRateLimit())
				return
			}
			test(t)
		})
	}
}

// TestDeadTokensLockNothing: a refresh token of an ended session is refused
// without waiting for its user's row, which the locking read share-locks:
// a flood of such tokens held the row without a break, and the user's
// logins and an administrator's lock, which update it, waited behind them
// (a black-box probe: logins of the flooded user took 30 s).
func TestDeadTokensLockNothing(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, reason string
		kill         func(e *env, access string) // makes the token dead
		clientID     string                      // who presents it: "" the JSON API
		opts         []option
	}{
		{"an ended session's", "session ended", func(e *env, access string) {
			want(e.t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
		}, "", nil},
		// The session lives on (720 h); the token expired long ago (168 h).
		{"a long expired", "refresh token expired", func(e *env, _ string) { e.clock.Advance(170 * time.Hour) }, "", nil},
		// Expired a few minutes ago: no rotation can still be committing.
		{"a lately expired", "refresh token expired", func(e *env, _ string) { e.clock.Advance(168*time.Hour + 3*time.Minute) }, "", nil},
		// The session past its longest life (an hour here) a minute ago, and
		// its token with it: lately expired, but its session never lives again.
		{"an expired session's", "refresh token expired", func(e *env, _ string) { e.clock.Advance(time.Hour + time.Minute) }, "",
			[]option{withConfig(func(c *authd.Config) { c.SessionMaxAge = time.Hour })}},
		// A live token of the JSON API's, presented by an OpenID client.
		{"another client's", "refresh token of another client", func(*env, string) {}, "another-client", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store := instances(t, 1)[0]
			e := newEnv(t, store, c.opts...)
			e.registerVerified("flooded@example.org", goodPassword)
			access, refresh := e.login("flooded@example.org", goodPassword)
			c.kill(e, access)
			release := holdUserRow(t, e, store, "flooded@example.org") // a login of the user, updating their row
			done := refreshingFor(e, c.clientID, refresh)
			select {
			case got := <-done:
				if authd.ErrorCode(got.err) != authd.EInvalidToken {
					t.Errorf("%s token: %v; want invalid_token", c.name, got.err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s token waited for its user's row", c.name)
				release() // lets it finish
				<-done
			}
			logs, err := e.store.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: e.user("flooded@example.org").ID,
				EventType: authd.EventTokenRefreshed})
			if err != nil || len(logs) != 1 || logs[0].FailureReason != c.reason {
				t.Errorf("token_refreshed rows %+v, %v; want one refusal, %s", logs, err, c.reason)
			}
		})
	}
}

// TestRefreshTokenOfAnotherClient: a refresh token is its client's alone:
// the JSON API's presented by an OpenID client (and back) is refused as
// invalid, logged as another client's, and neither rotated nor taken for
// reuse: its own client refreshes with it after. An empty client id names
// no client, and gets none of the JSON API's tokens. On both stores (on
// SQLite this is the only check).
func TestRefreshTokenOfAnotherClient(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		ctx := context.Background()
		e := newEnv(t, open(t))
		e.registerVerified("owner@example.org", goodPassword)
		_, refresh := e.login("owner@example.org", goodPassword)
		got := <-refreshingFor(e, "another-client", refresh)
		if authd.ErrorCode(got.err) != authd.EInvalidToken || got.pair != nil {
			t.Fatalf("the JSON API's refresh token at an OpenID client: %v; want invalid_token", got.err)
		}
		logs, err := e.store.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: e.user("owner@example.org").ID,
			EventType: authd.EventTokenRefreshed})
		if err != nil || len(logs) != 1 || logs[0].FailureReason != "refresh token of another client" {
			t.Errorf("token_refreshed rows %+v, %v; want one refusal, refresh token of another client", logs, err)
		}
		// No client id is no OpenID client: never the JSON API's own.
		if _, err := e.svc.RefreshForClient(ctx, authd.Client{IP: "192.0.2.1"}, "", refresh, nil); authd.ErrorCode(err) != authd.EInvalidToken {
			t.Fatalf("the JSON API's refresh token for an empty client id: %v; want invalid_token", err)
		}
		own := <-refreshingFor(e, "", refresh)
		if own.err != nil {
			t.Fatalf("its own client's refresh after another's try: %v", own.err)
		}
		back := <-refreshingFor(e, "another-client", own.pair.RefreshToken)
		if authd.ErrorCode(back.err) != authd.EInvalidToken {
			t.Errorf("the rotated token at an OpenID client: %v; want invalid_token", back.err)
		}
	})
}

// spendRotations rotates refresh through its session's whole budget of
// rotations a minute and returns the last token, still live.
func spendRotations(e *env, refresh string) string {
	e.t.Helper()
	for range 60 {
		r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
		want(e.t, "a rotation within the budget", r, 200, "")
		refresh = r.str("refresh_token")
	}
	return refresh
}

// TestOverBudgetTokenLocksNothing: a live refresh token refused for its
// session's budget is refused again, until the budget allows it, without
// waiting for its user's row. The refusal came after the locking read, and
// a flood of one such token (a dozen clients) held the row without a
// break: an administrator's lock, a logout-all or a login of the user
// never got it (a probe's: no answer in 20 s).
func TestOverBudgetTokenLocksNothing(t *testing.T) {
	t.Parallel()
	store := instances(t, 1)[0]
	e := newEnv(t, store, withRateLimit())
	e.registerVerified("hammered@example.org", goodPassword)
	_, refresh := e.login("hammered@example.org", goodPassword)
	refresh = spendRotations(e, refresh)
	r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
	want(t, "past the budget", r, 429, "rate_limited")

	release := holdUserRow(t, e, store, "hammered@example.org") // an administrator's lock of the user, updating their row
	done := refreshingFor(e, "", refresh)
	select {
	case got := <-done:
		if authd.ErrorCode(got.err) != authd.ERateLimited || authd.RetryAfterSeconds(got.err) < 1 {
			t.Errorf("the token again: %v; want rate_limited with a wait", got.err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the token over its budget waited for its user's row")
		release() // lets it finish
		<-done
	}
	release() // done with it

	// Once the budget allows it again, the token rotates as ever.
	e.clock.Advance(time.Minute)
	r = e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
	want(t, "a minute on", r, 200, "")
}

// TestOverBudgetTokensOfManySessionsLockNothing: the memory of tokens over
// their budget holds many at once, not one: each of a user's sessions
// flooded over its budget is refused without waiting for the user's row.
func TestOverBudgetTokensOfManySessionsLockNothing(t *testing.T) {
	t.Parallel()
	store := instances(t, 1)[0]
	e := newEnv(t, store, withRateLimit())
	e.registerVerified("hammered@example.org", goodPassword)
	var tokens []string
	for range 3 {
		_, refresh := e.login("hammered@example.org", goodPassword)
		refresh = spendRotations(e, refresh)
		want(t, "past the budget", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 429, "rate_limited")
		tokens = append(tokens, refresh)
	}
	release := holdUserRow(t, e, store, "hammered@example.org") // an update of the user's row
	for i, refresh := range tokens {
		done := refreshingFor(e, "", refresh)
		select {
		case got := <-done:
			if authd.ErrorCode(got.err) != authd.ERateLimited {
				t.Errorf("session %d's token again: %v; want rate_limited", i, got.err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("session %d's token over its budget waited for its user's row", i)
			release() // lets it finish
			<-done
		}
	}
}

// TestRepeatPastTheBudgetKeepsItsGrace: a repeat within the grace window
// (a lost answer) has a budget of its own: a session that spent its
// rotations' budget is not told to wait past the window, after which its
// repeat would be reuse and end it (a probe's: 429 with Retry-After 59,
// then 401 and the session revoked).
func TestRepeatPastTheBudgetKeepsItsGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openPostgres(t), withRateLimit())
	e.registerVerified("tabs@example.org", goodPassword)
	access, refresh := e.login("tabs@example.org", goodPassword)
	for range 59 {
		r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
		want(t, "a rotation", r, 200, "")
		refresh = r.str("refresh_token")
	}
	first := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
	want(t, "the budget's last rotation", first, 200, "")
	e.clock.Advance(time.Second)
	again := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
	want(t, "its repeat within the grace window", again, 200, "")
	if again.str("refresh_token") != first.str("refresh_token") {
		t.Errorf("the repeat got another child: the session forked")
	}
	if !e.active(access) {
		t.Errorf("the session ended")
	}

	// The repeats' own budget, spent, is remembered only until the window
	// closes: a repeat past it is reuse, and ends the session.
	for range 59 {
		want(t, "a repeat", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 200, "")
	}
	want(t, "past the repeats' budget", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 429, "rate_limited")
	e.clock.Advance(10 * time.Second) // the grace window (10 s) has closed
	want(t, "past the window", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 401, "invalid_token")
	if e.active(access) {
		t.Errorf("the token repeated past its window did not end the session")
	}
}

// TestOverBudgetMemoryHidesNoReuse: a token an instance remembers as over
// its session's budget is refused from memory only while it still would
// be. Rotated since on another instance (without Redis each has its own
// budget) and presented past its window, it is reuse and ends the session
// at once; the session ended, it is refused as such; presented as another
// client's, it is another client's token.
func TestOverBudgetMemoryHidesNoReuse(t *testing.T) {
	t.Parallel()
	stores := instances(t, 2)
	dir := t.TempDir()
	a := newEnv(t, stores[0], withRateLimit(), withKeysDir(dir))
	b := newEnv(t, stores[1], withRateLimit(), withKeysDir(dir))
	a.registerVerified("split@example.org", goodPassword)
	_, refresh := a.login("split@example.org", goodPassword)
	refresh = spendRotations(a, refresh)
	want(t, "over its budget on A", a.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 429, "rate_limited")
	if _, err := a.svc.RefreshForClient(context.Background(), authd.Client{IP: "192.0.2.7"}, "another-client", refresh, nil); authd.ErrorCode(err) != authd.EInvalidToken {
		t.Errorf("the remembered token as another client's: %v; want invalid_token", err)
	}
	r := b.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh})
	want(t, "rotated on B", r, 200, "")
	a.clock.Advance(15 * time.Second) // past the grace window
	b.clock.Advance(15 * time.Second)
	want(t, "the rotated token past its window on A", a.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 401, "invalid_token")
	want(t, "the chain rotated on B", b.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r.str("refresh_token")}), 401, "invalid_token")

	// Remembered, then its session ended: refused as a dead token.
	_, refresh = a.login("split@example.org", goodPassword)
	refresh = spendRotations(a, refresh)
	want(t, "over its budget", a.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 429, "rate_limited")
	if err := a.svc.RevokeUserSessions(context.Background(), authd.Client{}, a.user("split@example.org").ID); err != nil {
		t.Fatal(err)
	}
	want(t, "its session ended", a.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 401, "invalid_token")
}

// TestRepeatMemoryEndsWithItsChild: a repeat within the grace window
// remembered as over the repeats' budget is reuse once its child has been
// used, and ends the session at once, not when the window closes.
func TestRepeatMemoryEndsWithItsChild(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openPostgres(t), withRateLimit())
	e.registerVerified("grace@example.org", goodPassword)
	_, parent := e.login("grace@example.org", goodPassword)
	r := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": parent})
	want(t, "rotate", r, 200, "")
	for range 60 {
		want(t, "a repeat", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": parent}), 200, "")
	}
	want(t, "past the repeats' budget", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": parent}), 429, "rate_limited")
	used := e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": r.str("refresh_token")})
	want(t, "the child rotated", used, 200, "")
	e.clock.Advance(2 * time.Second) // within the window
	want(t, "the parent after its child was used", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": parent}), 401, "invalid_token")
	if e.active(used.str("access_token")) {
		t.Errorf("the reuse did not end the session")
	}
}

// TestOverBudgetRepeatLocksNothing: a repeat within the grace window
// refused for the repeats' budget is refused again, while its child is
// unused, without waiting for its user's row, as a token over the
// rotations' budget is (TestOverBudgetTokenLocksNothing).
func TestOverBudgetRepeatLocksNothing(t *testing.T) {
	t.Parallel()
	store := instances(t, 1)[0]
	e := newEnv(t, store, withRateLimit())
	e.registerVerified("repeater@example.org", goodPassword)
	_, parent := e.login("repeater@example.org", goodPassword)
	want(t, "rotate", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": parent}), 200, "")
	for range 60 {
		want(t, "a repeat", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": parent}), 200, "")
	}
	want(t, "past the repeats' budget", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": parent}), 429, "rate_limited")

	release := holdUserRow(t, e, store, "repeater@example.org") // an update of the user's row
	done := refreshingFor(e, "", parent)
	select {
	case got := <-done:
		if authd.ErrorCode(got.err) != authd.ERateLimited || authd.RetryAfterSeconds(got.err) < 1 {
			t.Errorf("the repeat again: %v; want rate_limited with a wait", got.err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the repeat over its budget waited for its user's row")
		release() // lets it finish
		<-done
	}
}

// TestOverBudgetMemoryEndsWithItsToken: a token remembered as over its
// session's budget is refused from memory only while it lives: once it has
// expired (a refresh lifetime under a minute, which SPEC §2 allows) it is
// refused as expired, not told to wait for a budget it can never use.
func TestOverBudgetMemoryEndsWithItsToken(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit(), withConfig(func(c *authd.Config) { c.RefreshTokenTTL = 30 * time.Second }))
		e.registerVerified("brief@example.org", goodPassword)
		_, refresh := e.login("brief@example.org", goodPassword)
		refresh = spendRotations(e, refresh)
		want(t, "past the budget", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 429, "rate_limited")
		e.clock.Advance(31 * time.Second) // the token has expired; the budget's minute has not passed
		want(t, "the expired token", e.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}), 401, "invalid_token")
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: e.user("brief@example.org").ID,
			EventType: authd.EventTokenRefreshed, Result: authd.ResultFailure, Since: e.clock.Now()})
		if err != nil || len(logs) != 1 || logs[0].FailureReason != "refresh token expired" {
			t.Errorf("token_refreshed refusals %+v, %v; want one, refresh token expired", logs, err)
		}
	})
}

// TestClientRevocationsLockNothing: /oauth2/revoke answers a token it
// changes nothing for (another client's session, live or ended) without
// waiting for the user's row, which the transaction's locking read
// share-locks: a flood of such revocations held it without a break, and
// an update of the user waited past 10 s (a review).
func TestClientRevocationsLockNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := instances(t, 1)[0]
	e := newEnv(t, store)
	oc, _, err := e.svc.CreateClient(ctx, authd.Client{}, authd.ClientSpec{ID: "app", Name: "App", Type: authd.ClientConfidential,
		RedirectURIs: []string{"https://rp.example.org/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	e.registerVerified("revoked@example.org", goodPassword)
	_, live := e.login("revoked@example.org", goodPassword)
	access, ended := e.login("revoked@example.org", goodPassword)
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
	release := holdUserRow(t, e, store, "revoked@example.org") // an update of the user's row
	for name, token := range map[string]string{"a live login's": live, "an ended login's": ended} {
		done := make(chan error, 1)
		go func() { done <- e.svc.RevokeClientToken(ctx, authd.Client{IP: "192.0.2.9"}, oc, token) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s token: %v; want nil (200, nothing changed)", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s token waited for its user's row", name)
			release() // lets it finish
			<-done
		}
	}
}

// holdUserRow holds the row of email's user, as a transaction updating it
// does (a login, an administrator's lock), until release is called or the
// test ends.
func holdUserRow(t *testing.T, e *env, store *postgres.Store, email string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release = func() { tx.Rollback(ctx) } //nolint:errcheck // a second rollback is a no-op
	t.Cleanup(release)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, e.user(email).ID); err != nil {
		t.Fatal(err)
	}
	return release
}
