package httpapi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// userPausingStore pauses, once armed, the first transaction that reads
// user (User or UserByEmail), or session when that is set (Session), just
// after the read, which locks the row, until resume closes; paused closes
// then. Only that one pauses: the reads after it go on (and wait, if at
// all, for PostgreSQL's locks, which the tests can see).
type userPausingStore struct {
	authd.Store
	user, session  uuid.UUID
	armed          atomic.Bool
	paused, resume chan struct{}
}

func (s *userPausingStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(&userPausingQueries{Queries: q, s: s}) })
}

type userPausingQueries struct {
	authd.Queries
	s *userPausingStore
}

func (q *userPausingQueries) pause(u *authd.User) {
	if u != nil && u.ID == q.s.user {
		q.pauseOnce()
	}
}

func (q *userPausingQueries) pauseOnce() {
	if q.s.armed.CompareAndSwap(true, false) {
		close(q.s.paused)
		<-q.s.resume
	}
}

func (q *userPausingQueries) Session(ctx context.Context, id uuid.UUID) (*authd.Session, error) {
	sess, err := q.Queries.Session(ctx, id)
	if q.s.session != uuid.Nil && id == q.s.session {
		q.pauseOnce()
	}
	return sess, err
}

func (q *userPausingQueries) User(ctx context.Context, id uuid.UUID) (*authd.User, error) {
	u, err := q.Queries.User(ctx, id)
	q.pause(u)
	return u, err
}

func (q *userPausingQueries) UserByEmail(ctx context.Context, email string) (*authd.User, error) {
	u, err := q.Queries.UserByEmail(ctx, email)
	q.pause(u)
	return u, err
}

// TestSessionEndingFlowsLetALogoutThrough: each flow that changes a user
// and ends their sessions holds the user's row from its first read to its
// commit. A logout of one of those sessions in flight meanwhile — it locks
// its session, then writes rows that refer to the user — must finish
// without waiting for the flow; the flow then finds that session ended.
// When the flow's lock kept the logout's key-share locks out, each waited
// for the other and PostgreSQL ended one of them as a deadlock (a 503).
func TestSessionEndingFlowsLetALogoutThrough(t *testing.T) {
	t.Parallel()
	const email = "busy@example.org"
	for _, flow := range []struct {
		name  string
		setup func(e *env) string // what run needs, made before the pause is armed
		run   func(e *env, u *authd.User, keep, arg string) response
	}{
		{"password change", nil, func(e *env, _ *authd.User, keep, _ string) response {
			return e.do("POST", "/v1/auth/password/change",
				map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"}, bearer(keep)...)
		}},
		{"password reset", func(e *env) string {
			want(e.t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
			return tokenOf(e.t, e.mail.last(e.t, authd.MailPasswordReset, email))
		}, func(e *env, _ *authd.User, _, token string) response {
			return e.do("POST", "/v1/auth/password/reset", map[string]string{"token": token, "new_password": "a reset passphrase"})
		}},
		{"administrator's lock", nil, func(e *env, u *authd.User, _, _ string) response {
			return e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/lock", nil)
		}},
		{"administrator's address move", nil, func(e *env, u *authd.User, _, _ string) response {
			return e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/email", map[string]any{"email": "moved@example.org",
				"verified": true})
		}},
		{"administrator's revocation", nil, func(e *env, u *authd.User, _, _ string) response {
			return e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/revoke-sessions", nil)
		}},
		{"erasure by the user", nil, func(e *env, _ *authd.User, keep, _ string) response {
			return e.do("DELETE", "/v1/users/me", map[string]string{"password": goodPassword}, bearer(keep)...)
		}},
		{"erasure by an administrator", nil, func(e *env, u *authd.User, _, _ string) response {
			return e.admin("DELETE", "/v1/admin/users/"+u.ID.String(), nil)
		}},
		{"email change", func(e *env) string {
			keep, _ := e.login(email, goodPassword)
			want(e.t, "ask to change the address", e.changeEmail(keep, "moved@example.net", goodPassword), 202, "")
			return e.changeLink("moved@example.net")
		}, func(e *env, _ *authd.User, _, token string) response {
			r := e.follow(token, goodPassword)
			if r.status == http.StatusOK {
				r.status = http.StatusNoContent // the one flow here that answers with a body
			}
			return r
		}},
	} {
		t.Run(flow.name, func(t *testing.T) {
			t.Parallel()
			store := &userPausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
			release := sync.OnceFunc(func() { close(store.resume) })
			defer release() // on failure too: the flow's transaction must end
			e := newEnv(t, store)
			e.registerVerified(email, goodPassword)
			keep, _ := e.login(email, goodPassword)
			other, _ := e.login(email, goodPassword)
			u := e.user(email)
			var arg string
			if flow.setup != nil {
				arg = flow.setup(e)
			}
			store.user = u.ID
			store.armed.Store(true)

			ran := make(chan response, 1)
			go func() { ran <- flow.run(e, u, keep, arg) }()
			select {
			case <-store.paused:
			case r := <-ran:
				t.Fatalf("the flow answered %d %s before its transaction read the user", r.status, r.raw)
			}
			loggedOut := make(chan response, 1)
			go func() { loggedOut <- e.do("POST", "/v1/auth/logout", nil, bearer(other)...) }()
			var logout response
			guard := time.Now().Add(30 * time.Second)
			for waited := false; !waited; {
				select {
				case logout = <-loggedOut:
					waited = true
					continue
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(guard) {
					release()
					t.Fatal("the logout neither answered nor waited for a lock")
				}
				if locksAwaited(t, store) > 0 {
					release()
					t.Fatalf("the logout waits for a lock the %s holds", flow.name)
				}
			}
			want(t, "the logout while the flow holds its user", logout, http.StatusNoContent, "")
			release()
			if r := <-ran; r.status != http.StatusNoContent {
				t.Errorf("the %s after the logout: %d %s, want 204", flow.name, r.status, r.raw)
			}
		})
	}
}

// TestLogoutAllDuringASensitiveChange: a sensitive change holds its user,
// then its own session (is it live?), then ends the user's other sessions;
// a logout-all meanwhile, from an older session, must wait for it rather
// than lock the sessions from the other end. It locked them without the
// user: the oldest first, then it waited for the change's session, while
// the change waited for the oldest to end it (a deadlock, a 503).
func TestLogoutAllDuringASensitiveChange(t *testing.T) {
	t.Parallel()
	const email = "everywhere@example.org"
	store := &userPausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	release := sync.OnceFunc(func() { close(store.resume) })
	defer release() // on failure too: the change's transaction must end
	e := newEnv(t, store)
	e.registerVerified(email, goodPassword)
	laptop, _ := e.login(email, goodPassword) // the older session
	phone, _ := e.login(email, goodPassword)
	claims, err := e.svc.Authenticate(t.Context(), phone)
	if err != nil {
		t.Fatal(err)
	}
	store.session = claims.SessionID
	store.armed.Store(true)

	changed := make(chan response, 1)
	go func() {
		changed <- e.do("POST", "/v1/auth/password/change",
			map[string]string{"current_password": goodPassword, "new_password": "a changed passphrase"}, bearer(phone)...)
	}()
	select {
	case <-store.paused:
	case r := <-changed:
		t.Fatalf("the change answered %d %s before it read its session", r.status, r.raw)
	}
	everywhere := make(chan response, 1)
	go func() { everywhere <- e.do("POST", "/v1/auth/logout-all", nil, bearer(laptop)...) }()
	awaitLockWait(t, store.Store.(*postgres.Store)) // the logout-all waits for the change
	release()
	want(t, "the change", <-changed, http.StatusNoContent, "")
	want(t, "the logout-all after it", <-everywhere, http.StatusNoContent, "")
}

// locksAwaited counts the transactions on store's database that wait for
// a lock.
func locksAwaited(t *testing.T, store *userPausingStore) int {
	t.Helper()
	var n int
	if err := store.Store.(*postgres.Store).Pool().QueryRow(context.Background(), storetest.LockWaits, "").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNewLinkWhileTheOldIsRedeemed: a reset link is redeemed while a new
// one is requested, which voids it. The request holds the user and then
// deletes the old link; the redemption locks the user before the link, so
// it waits for the request and then finds its link void (400
// invalid_token). When it locked the link first and the user second, each
// waited for the other (a 503 for one of them).
func TestNewLinkWhileTheOldIsRedeemed(t *testing.T) {
	t.Parallel()
	const email = "twice@example.org"
	store := &userPausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	release := sync.OnceFunc(func() { close(store.resume) })
	defer release()
	e := newEnv(t, store)
	e.registerVerified(email, goodPassword)
	want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
	link := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, email))
	store.user = e.user(email).ID
	store.armed.Store(true)

	requested := make(chan response, 1)
	go func() { requested <- e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}) }()
	select {
	case <-store.paused:
	case r := <-requested:
		t.Fatalf("the new link's request answered %d %s before its transaction read the user", r.status, r.raw)
	}
	redeemed := make(chan response, 1)
	go func() {
		redeemed <- e.do("POST", "/v1/auth/password/reset", map[string]string{"token": link, "new_password": "a reset passphrase"})
	}()
	for guard := time.Now().Add(30 * time.Second); locksAwaited(t, store) == 0; {
		select {
		case r := <-redeemed:
			t.Fatalf("the redemption answered %d %s while the request held its user", r.status, r.raw)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(guard) {
			t.Fatal("the redemption neither answered nor waited for a lock")
		}
	}
	release()
	want(t, "the new link's request", <-requested, http.StatusAccepted, "")
	want(t, "the old link, voided while it was redeemed", <-redeemed, http.StatusBadRequest, "invalid_token")
}

// TestRedemptionsDuringAnErasure: an erasure holds its user and then
// deletes the user's links, mail and ceremonies; a flow that redeems one of
// them meanwhile locks the user before it, so it waits for the erasure and
// then finds it gone. In the other order each waited for the other (a 503
// for one of them).
func TestRedemptionsDuringAnErasure(t *testing.T) {
	t.Parallel()
	const email = "leaving@example.org"
	for _, flow := range []struct {
		name string
		// setup makes what run redeems, before the erasure begins.
		setup func(e *env, access string) any
		// run redeems it and says what it answered; want is that answer.
		run  func(e *env, access string, made any) string
		want string
	}{
		{"a reset link", func(e *env, _ string) any {
			want(e.t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
			return tokenOf(e.t, e.mail.last(e.t, authd.MailPasswordReset, email))
		}, func(e *env, _ string, link any) string {
			r := e.do("POST", "/v1/auth/password/reset", map[string]string{"token": link.(string), "new_password": "a reset passphrase"})
			return fmt.Sprint(r.status, " ", r.code())
		}, "400 invalid_token"},
		{"the mail of a reset link", func(e *env, _ string) any {
			want(e.t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": email}), 202, "")
			return nil // queued, not delivered yet
		}, func(e *env, _ string, _ any) string {
			_, err := e.svc.DeliverMail(context.Background())
			return fmt.Sprint(err, ", reset mails sent: ", e.mail.count(authd.MailPasswordReset, email))
		}, "<nil>, reset mails sent: 0"},
		{"a passkey registration", func(e *env, access string) any {
			return newSoftKey(e.t, "auth.example.org", "https://auth.example.org").Create(e.beginRegistration(access))
		}, func(e *env, access string, credential any) string {
			r := e.do("POST", "/v1/users/me/passkeys/finish", map[string]any{"name": "key", "credential": credential}, bearer(access)...)
			return fmt.Sprint(r.status, " ", r.code())
		}, "401 invalid_token"},
	} {
		t.Run(flow.name, func(t *testing.T) {
			t.Parallel()
			store := &userPausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
			release := sync.OnceFunc(func() { close(store.resume) })
			defer release()
			e := newEnv(t, store)
			e.registerVerified(email, goodPassword)
			access, _ := e.login(email, goodPassword)
			made := flow.setup(e, access)
			u := e.user(email)
			store.user = u.ID
			store.armed.Store(true)

			erased := make(chan response, 1)
			go func() { erased <- e.admin("DELETE", "/v1/admin/users/"+u.ID.String(), nil) }()
			select {
			case <-store.paused:
			case r := <-erased:
				t.Fatalf("the erasure answered %d %s before its transaction read the user", r.status, r.raw)
			}
			ran := make(chan string, 1)
			go func() { ran <- flow.run(e, access, made) }()
			var got string
			waited := false
			for guard := time.Now().Add(30 * time.Second); !waited && got == ""; {
				select {
				case got = <-ran:
				case <-time.After(10 * time.Millisecond):
					waited = locksAwaited(t, store) > 0
				}
				if time.Now().After(guard) {
					t.Fatalf("%s neither answered nor waited for a lock", flow.name)
				}
			}
			release()
			want(t, "the erasure", <-erased, http.StatusNoContent, "")
			if !waited {
				t.Fatalf("%s answered %s without waiting for the erasure", flow.name, got)
			}
			got = <-ran
			if got != flow.want {
				t.Errorf("%s during the erasure: %s, want %s", flow.name, got, flow.want)
			}
		})
	}
}

// errSkip is a step with nothing to do (no token to use yet).
var errSkip = &authd.Error{Code: "skip"}

// TestConcurrentFlowsOfOneUserNeverDeadlock runs every flow that locks a
// user or their rows at once on one account — logins past the session
// limit, logouts (of one session or all), refreshes, password changes,
// reset links requested, mailed and redeemed, an administrator's
// revocations (now and then: a change from a session ended meanwhile is
// refused, so ending every session at full speed would let none through),
// locks and reads, consent changes — until the logins have
// run 200 times each (with the account erased, until 20 more each after
// the erasure: what follows it is refusals alone).
// Refusals are expected (tokens revoked meanwhile, the account locked, a
// password changed under a login); a 503 or a 500 is not: with one lock
// order (a user before any row of theirs) no two of them can deadlock.
// The tests above pin each interleaving that did; this one looks for the
// ones nobody thought of, and once more with the account erased by an
// administrator midway (a third through the logins).
// SQLite, whose writers queue, must hold to it as well: no write may give
// up waiting for another.
func TestConcurrentFlowsOfOneUserNeverDeadlock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		t.Run("all flows", func(t *testing.T) { t.Parallel(); concurrentFlows(t, open(t), false) })
		t.Run("erased midway", func(t *testing.T) { t.Parallel(); concurrentFlows(t, open(t), true) })
	})
}

func concurrentFlows(t *testing.T, store authd.Store, erase bool) {
	const email = "stress@example.org"
	const otherPassword = "another horse battery staple 9"
	e := newEnv(t, store, withConfig(func(c *authd.Config) {
		c.MaxSessions = 3
		// A login refused while a change has the other password set
		// must not lock the account for the rest of the run.
		c.LockoutThreshold = 1 << 20
	}))
	e.registerVerified(email, goodPassword)
	u := e.user(email)
	ctx := context.Background()
	var mu sync.Mutex
	var pool []*authd.TokenPair
	put := func(p *authd.TokenPair) { mu.Lock(); pool = append(pool, p); mu.Unlock() }
	take := func() *authd.TokenPair {
		mu.Lock()
		defer mu.Unlock()
		if len(pool) == 0 {
			return nil
		}
		i := rand.IntN(len(pool))
		p := pool[i]
		pool = append(pool[:i], pool[i+1:]...)
		return p
	}
	counts := map[string]map[authd.Code]int{}
	var cmu sync.Mutex
	note := func(op string, err error) {
		cmu.Lock()
		defer cmu.Unlock()
		if counts[op] == nil {
			counts[op] = map[authd.Code]int{}
		}
		counts[op][authd.ErrorCode(err)]++
		if c := authd.ErrorCode(err); c == authd.EUnavailable || c == authd.EInternal {
			t.Errorf("%s: %v", op, err)
		}
	}
	c := authd.Client{IP: "192.0.2.1"}
	const n = 200
	var wg sync.WaitGroup
	var logins sync.WaitGroup
	loginsDone := make(chan struct{})
	var erased atomic.Bool
	work := func(op string, f func() error) {
		wg.Go(func() {
			for {
				select {
				case <-loginsDone:
					return
				default:
				}
				err := f()
				if err == errSkip {
					time.Sleep(time.Millisecond)
					continue
				}
				note(op, err)
			}
		})
	}
	loginWork := func(op string, f func() error) {
		logins.Go(func() {
			after := 0
			for range n {
				note(op, f())
				if erased.Load() {
					if after++; after == 20 {
						return
					}
				}
			}
		})
	}
	login := func() error {
		p, err := e.svc.Login(ctx, c, email, goodPassword, "d")
		if err == nil {
			put(p)
		}
		return err
	}
	loginWork("login", login)
	loginWork("login2", login)
	// signedIn runs step with the claims of a token from the pool, which
	// goes back to it unless it was revoked meanwhile (or step ends it).
	signedIn := func(keep bool, step func(*authd.AccessClaims) error) func() error {
		return func() error {
			p := take()
			if p == nil {
				return errSkip
			}
			a, err := e.svc.Authenticate(ctx, p.AccessToken)
			if err != nil {
				return err // revoked meanwhile: dropped
			}
			if keep {
				defer put(p)
			}
			return step(a)
		}
	}
	work("logout", signedIn(false, func(a *authd.AccessClaims) error { return e.svc.Logout(ctx, c, a) }))
	work("logout-all", signedIn(false, func(a *authd.AccessClaims) error {
		if rand.IntN(10) != 0 { // ending every session starves the others
			return e.svc.RevokeSession(ctx, c, a, a.SessionID)
		}
		return e.svc.LogoutAll(ctx, c, a)
	}))
	work("refresh", func() error {
		p := take()
		if p == nil {
			return errSkip
		}
		q, err := e.svc.Refresh(ctx, c, p.RefreshToken)
		if err == nil {
			put(q)
		}
		return err
	})
	// To another password and back (a change to the same one is refused
	// before it locks anything); a login or a reset in between may find
	// either.
	work("change", signedIn(true, func(a *authd.AccessClaims) error {
		if err := e.svc.ChangePassword(ctx, c, a, goodPassword, otherPassword, authd.StepUp{}); err != nil {
			return err
		}
		return e.svc.ChangePassword(ctx, c, a, otherPassword, goodPassword, authd.StepUp{})
	}))
	work("forgot+deliver", func() error {
		if err := e.svc.ForgotPassword(ctx, c, email); err != nil {
			return err
		}
		_, err := e.svc.DeliverMail(ctx)
		return err
	})
	work("reset", func() error {
		e.mail.mu.Lock()
		var link string
		for i := len(e.mail.mails) - 1; i >= 0; i-- {
			if e.mail.mails[i].Kind == authd.MailPasswordReset {
				link = e.mail.mails[i].Link
				break
			}
		}
		e.mail.mu.Unlock()
		_, tok, ok := strings.Cut(link, "?token=")
		if !ok {
			return errSkip
		}
		return e.svc.ResetPassword(ctx, c, tok, goodPassword)
	})
	work("admin revoke", func() error {
		if rand.IntN(20) != 0 { // ending every session starves the flows that need one
			_, err := e.svc.UserMFA(ctx, c, u.ID)
			return err
		}
		return e.svc.RevokeUserSessions(ctx, c, u.ID)
	})
	work("consent", signedIn(true, func(a *authd.AccessClaims) error {
		_, err := e.svc.UpdateConsent(ctx, c, a, true)
		return err
	}))
	work("lock/unlock", func() error {
		if rand.IntN(20) != 0 {
			_, err := e.svc.UserMFA(ctx, c, u.ID)
			return err
		}
		if err := e.svc.LockUser(ctx, c, u.ID, time.Time{}); err != nil {
			return err
		}
		return e.svc.UnlockUser(ctx, c, u.ID)
	})
	if erase {
		wg.Go(func() {
			// Once the logins are over a third through (answered, whatever
			// the answer: progress, not luck, decides when).
		wait:
			for attempts := 0; attempts < 2*n/3; time.Sleep(5 * time.Millisecond) {
				select {
				case <-loginsDone:
					break wait
				default:
				}
				cmu.Lock()
				attempts = 0
				for _, op := range []string{"login", "login2"} {
					for _, k := range counts[op] {
						attempts += k
					}
				}
				cmu.Unlock()
			}
			note("erasure", e.svc.DeleteUser(ctx, c, u.ID))
			erased.Store(true)
		})
	}
	logins.Wait()
	close(loginsDone)
	wg.Wait()
	t.Logf("answers by flow: %v", counts)
	// Refusals are expected, but not of everything: the flows ran.
	progress := []string{"login", "login2"}
	if !erase {
		progress = append(progress, "change")
	}
	for _, op := range progress {
		if counts[op][""] == 0 {
			t.Errorf("no %s went through: %v", op, counts[op])
		}
	}
}

// racingStore runs race, once, just before the first transaction that
// creates an account for email does, after its read found none: another
// registration of the address that commits in between.
type racingStore struct {
	authd.Store
	email string
	race  func()
	raced atomic.Bool
}

func (s *racingStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(&racingQueries{Queries: q, s: s}) })
}

type racingQueries struct {
	authd.Queries
	s *racingStore
}

func (q *racingQueries) CreateUser(ctx context.Context, u *authd.User) error {
	if u.Email == q.s.email && q.s.raced.CompareAndSwap(false, true) {
		q.s.race() // its own CreateUser goes on: raced is set
	}
	return q.Queries.CreateUser(ctx, u)
}

// TestRegistrationsOfOneAddressAtOnce: two registrations of a new address
// both read that it has no account, and the second's insert meets the
// first's account (PostgreSQL's unique index; SQLite runs writing
// transactions one at a time). Both answer 202 (SPEC 6.6): the later one
// as for a taken address, with its notice mail and its failure row. It
// answered 409 and logged nothing.
func TestRegistrationsOfOneAddressAtOnce(t *testing.T) {
	t.Parallel()
	const email = "twice@example.org"
	store := &racingStore{Store: openPostgres(t), email: email}
	e := newEnv(t, store)
	body := map[string]any{"email": email, "password": goodPassword, "consent": true}
	var first response
	store.race = func() { first = e.do("POST", "/v1/auth/register", body) }
	want(t, "the registration that meets another", e.do("POST", "/v1/auth/register", body), 202, "")
	want(t, "the registration that commits in between", first, 202, "")
	events := e.events(email)
	if !slices.Equal(events, []string{"registration/success", "email_verification_sent/success", "registration/failure"}) {
		t.Errorf("the address's events: %v, want one registration, its mail, and the second as a taken address's", events)
	}
	e.mail.last(t, authd.MailVerifyEmail, email)
	e.mail.last(t, authd.MailRegisterNotice, email)
}

// TestEmailChangeLocksNoOtherAccount: an address change that finds its new
// address taken checks that without locking the account that has it, so
// it answers while that account's row is held (here by that account's own
// change, paused after its read of the user); when it locked the row, two
// accounts moving to each other's address deadlocked.
func TestEmailChangeLocksNoOtherAccount(t *testing.T) {
	t.Parallel()
	store := &userPausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	release := sync.OnceFunc(func() { close(store.resume) })
	defer release()
	e := newEnv(t, store)
	e.registerVerified("ann@example.org", goodPassword)
	e.registerVerified("cy@example.org", goodPassword)
	ann, _ := e.login("ann@example.org", goodPassword)
	cy, _ := e.login("cy@example.org", goodPassword)
	link := func(who, to string) string {
		t.Helper()
		want(t, who+" asks for "+to, e.changeEmail(map[string]string{"ann": ann, "cy": cy}[who], to, goodPassword), 202, "")
		return e.changeLink(to)
	}
	cysLink := link("cy", "ann2@example.org") // free when mailed
	want(t, "ann moves to ann2", e.follow(link("ann", "ann2@example.org"), goodPassword), 200, "")
	ann, _ = e.login("ann2@example.org", goodPassword)
	annsLink := link("ann", "ann3@example.org")

	store.user = e.user("ann2@example.org").ID
	store.armed.Store(true)
	ran := make(chan response, 1)
	go func() { ran <- e.follow(annsLink, goodPassword) }()
	<-store.paused // ann's row is held
	done := make(chan response, 1)
	go func() { done <- e.follow(cysLink, goodPassword) }()
	guard := time.Now().Add(30 * time.Second)
	var r response
	for waiting := true; waiting; {
		select {
		case r = <-done:
			waiting = false
			continue
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(guard) || locksAwaited(t, store) > 0 {
			release()
			t.Fatal("cy's change waits for the row of the account that has the address")
		}
	}
	want(t, "cy's link to ann's address", r, 409, "conflict")
	release()
	want(t, "ann's own change", <-ran, 200, "")
}
