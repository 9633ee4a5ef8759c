package oidc_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/postgres"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// pausingStore pauses the first transaction that reads session, ends
// every session of user ended, or erases the personal data of user erased,
// just after (it holds those rows then), until resume closes; paused
// closes then.
type pausingStore struct {
	authd.Store
	session, ended, erased uuid.UUID
	paused, resume         chan struct{}
	once                   sync.Once
}

func (s *pausingStore) pause() {
	s.once.Do(func() {
		close(s.paused)
		<-s.resume
	})
}

func (s *pausingStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(&pausingQueries{Queries: q, s: s}) })
}

type pausingQueries struct {
	authd.Queries
	s *pausingStore
}

func (q *pausingQueries) Session(ctx context.Context, id uuid.UUID) (*authd.Session, error) {
	sess, err := q.Queries.Session(ctx, id)
	if id == q.s.session {
		q.s.pause()
	}
	return sess, err
}

// TestRedemptionWhileALoginEndsItsBrowserSession: a code is redeemed
// while a login of its user would end the browser session the code came
// from (the session limit reached). Both lock the user before that
// session, so the later waits for the earlier; in the other order the
// redemption held the session, the login the user, and PostgreSQL ended
// one of them as a deadlock (a 503).
func TestRedemptionWhileALoginEndsItsBrowserSession(t *testing.T) {
	t.Parallel()
	const email = "limit@example.org"
	p := pausedCode(t, email, func(c *authd.Config) { c.MaxSessions = 1 })
	defer p.release()
	e, store := p.e, p.store

	redeemed := make(chan redemption, 1)
	go func() { redeemed <- p.redeem() }()
	<-store.paused // the redemption holds the browser session
	loggedIn := make(chan error, 1)
	go func() {
		_, err := e.svc.Login(context.Background(), authd.Client{}, email, goodPassword, "")
		loggedIn <- err
	}()
	waitForLock(t, store.Store) // the login's
	p.release()
	if got := <-redeemed; got.status != http.StatusOK {
		t.Errorf("the redemption: %d %s, want 200", got.status, got.code)
	}
	if err := <-loggedIn; err != nil {
		t.Errorf("the login: %v", err)
	}
}

// TestSignOutWhileItsCodeIsRedeemed: the browser session a code came from
// is signed out while the code is redeemed. The sign-out locks the session
// and then writes its audit row, under a key-share lock on the user that
// the redemption's lock on the user lets through: the sign-out finishes,
// and the redemption, which waited for the session, finds it ended and
// refuses the code (invalid_grant). A redemption that locked the user
// FOR UPDATE waited for the session while the sign-out waited for the
// user: a deadlock.
func TestSignOutWhileItsCodeIsRedeemed(t *testing.T) {
	t.Parallel()
	p := pausedCode(t, "sign-out@example.org", func(*authd.Config) {})
	defer p.release()
	e, store := p.e, p.store

	signedOut := make(chan error, 1)
	go func() {
		signedOut <- e.svc.EndUserSession(context.Background(), authd.Client{}, store.session, p.user.ID)
	}()
	<-store.paused // the sign-out holds the browser session
	redeemed := make(chan redemption, 1)
	go func() { redeemed <- p.redeem() }()
	waitForLock(t, store.Store)
	p.release()
	if err := <-signedOut; err != nil {
		t.Errorf("the sign-out: %v", err)
	}
	if got := <-redeemed; got.status != http.StatusBadRequest || got.code != "invalid_grant" {
		t.Errorf("the redemption of a signed-out session's code: %d %s, want 400 invalid_grant", got.status, got.code)
	}
}

// pausedCodeFlow is a code, not yet redeemed, of a browser sign-in on an
// env over PostgreSQL whose store pauses the first transaction that reads
// that browser's session until release.
type pausedCodeFlow struct {
	e            *env
	store        *pausingStore
	user         *authd.User
	client       *authd.OAuthClient
	secret, code string
	verifier     string
	release      func()
}

// pausedCode signs email in through a relying party and returns its code,
// the store set to pause on the browser session.
func pausedCode(t *testing.T, email string, config func(*authd.Config)) *pausedCodeFlow {
	t.Helper()
	store := &pausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	p := &pausedCodeFlow{store: store, release: sync.OnceFunc(func() { close(store.resume) })}
	p.e = newEnvConfig(t, store, config)
	p.user = p.e.user(email)
	p.client, p.secret = p.e.client("app", authd.ClientConfidential, true)
	p.verifier = oauth2.GenerateVerifier()
	p.code = p.e.rp(p.client, p.secret).login(t, p.e.browser(), email, "st-1", "n-1", p.verifier)
	live, err := store.Sessions(context.Background(), p.user.ID, p.e.clock.Now())
	if err != nil || len(live) != 1 {
		t.Fatalf("the browser session: %v, %v; want one", live, err)
	}
	store.session = live[0].ID
	return p
}

// redeem redeems the code in one request: x/oauth2's Exchange tries again
// with the credentials in the body after a failure, which would hide a 503.
func (p *pausedCodeFlow) redeem() redemption {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {p.code}, "redirect_uri": {rpCallback},
		"code_verifier": {p.verifier}, "client_id": {p.client.ID}, "client_secret": {p.secret}}
	resp, errCode, _ := p.e.tokenRequestWith(strings.NewReader(form.Encode()), nil)
	return redemption{status: resp.StatusCode, code: errCode}
}

// redemption is the token endpoint's answer to one code redemption.
type redemption struct {
	status int
	code   string // the OAuth error code, if any
}

// waitForLock returns once a transaction on store's database waits for a
// lock.
func waitForLock(t *testing.T, store authd.Store) {
	t.Helper()
	pool := store.(*postgres.Store).Pool()
	deadline := time.Now().Add(30 * time.Second) // a guard: never waiting is the failure
	for waiting := 0; waiting == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no transaction waited for a lock")
		}
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
}

func (q *pausingQueries) RevokeUserSessions(ctx context.Context, userID, except uuid.UUID, at time.Time) ([]uuid.UUID, error) {
	ids, err := q.Queries.RevokeUserSessions(ctx, userID, except, at)
	if userID == q.s.ended {
		q.s.pause()
	}
	return ids, err
}

func (q *pausingQueries) ErasePersonalData(ctx context.Context, userID uuid.UUID) error {
	err := q.Queries.ErasePersonalData(ctx, userID)
	if userID == q.s.erased && err == nil {
		// A read sends the writes PostgreSQL's store queues, so that the
		// pause comes once they ran (and hold their locks).
		if _, err := q.Queries.Factors(ctx, userID); err != nil {
			return err
		}
		q.s.pause()
	}
	return err
}

// TestConsentWithdrawnDuringAnErasure: a user withdraws their consent to
// a client, which ends the client's sessions, while an administrator
// erases them, which holds the user, ends every session and then deletes
// the consent. The withdrawal locks the user first, so it waits for the
// erasure and then finds no consent (ENotFound). When it deleted the
// consent first, it then waited for the client's session, which the
// erasure held, while the erasure waited for the consent: a deadlock.
func TestConsentWithdrawnDuringAnErasure(t *testing.T) {
	t.Parallel()
	const email = "withdraws@example.org"
	ctx := context.Background()
	store := &pausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	release := sync.OnceFunc(func() { close(store.resume) })
	defer release()
	e := newEnvConfig(t, store, func(*authd.Config) {})
	u := e.user(email)
	c, secret := e.client("third", authd.ClientConfidential, false)
	r := e.rp(c, secret)
	b := e.browser()
	verifier := oauth2.GenerateVerifier()
	b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))).signIn(email, goodPassword)
	f := b.form()
	f.Set("decision", "allow")
	cb := b.post(oidc.ConsentPath, f).callback()
	if cb == nil || cb.Get("code") == "" {
		t.Fatalf("allow: %d %s", b.last.StatusCode, b.body)
	}
	r.exchange(t, cb.Get("code"), verifier) // the client's session
	_, claims := e.login(email)
	store.ended = u.ID

	erased := make(chan error, 1)
	go func() { erased <- e.svc.DeleteUser(ctx, authd.Client{}, u.ID) }()
	select {
	case <-store.paused:
	case err := <-erased:
		t.Fatalf("the erasure ended before it ended the sessions: %v", err)
	}
	withdrawn := make(chan error, 1)
	go func() { withdrawn <- e.svc.RevokeConsent(ctx, authd.Client{}, claims, c.ID) }()
	waitForLock(t, store.Store)
	release()
	if err := <-erased; err != nil {
		t.Errorf("the erasure: %v", err)
	}
	if err := <-withdrawn; authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("the withdrawal during the erasure: %v, want ENotFound (the erasure deleted the consent)", err)
	}
}

// erasingFlow is an env over PostgreSQL whose user email's erasure, by an
// administrator, is in flight: past ErasePersonalData (the user locked
// against every other transaction), paused until release.
type erasingFlow struct {
	e       *env
	store   *pausingStore
	user    *authd.User
	erased  chan error
	release func()
}

// erasing starts the erasure once before has run (and made the user).
func erasing(t *testing.T, email string, before func(e *env)) *erasingFlow {
	t.Helper()
	store := &pausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	f := &erasingFlow{store: store, erased: make(chan error, 1), release: sync.OnceFunc(func() { close(store.resume) })}
	t.Cleanup(f.release) // on failure too: the erasure's transaction must end
	f.e = newEnvConfig(t, store, func(*authd.Config) {})
	before(f.e)
	f.user = f.e.userByEmail(email)
	store.erased = f.user.ID
	go func() { f.erased <- f.e.svc.DeleteUser(context.Background(), authd.Client{}, f.user.ID) }()
	select {
	case <-store.paused:
	case err := <-f.erased:
		t.Fatalf("the erasure ended before its pause: %v", err)
	}
	return f
}

// during runs step while the erasure holds its user, waits until step
// waits for a lock, lets the erasure finish and then step.
func (f *erasingFlow) during(t *testing.T, step func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); step() }()
	waitForLock(t, f.store.Store)
	f.release()
	if err := <-f.erased; err != nil {
		t.Fatalf("the erasure: %v", err)
	}
	<-done
}

// TestNoConsentOutlivesAnErasure: a consent given on the consent page
// while the user's erasure is in flight waits for it and is refused ("Request
// expired"): the request died with the account. When the consent's
// transaction did not lock the user first, its row waited only for the
// key-share lock of its foreign key and was written once the erasure
// committed: a consent of an erased account.
func TestNoConsentOutlivesAnErasure(t *testing.T) {
	t.Parallel()
	const email = "consents@example.org"
	var b *browser
	var form url.Values
	f := erasing(t, email, func(e *env) {
		b, form = e.consentPage(email)
		form.Set("decision", "allow")
	})
	f.during(t, func() { b.post(oidc.ConsentPath, form) })
	if b.last.StatusCode != http.StatusBadRequest || !strings.Contains(b.body, "Request expired") || b.callback() != nil {
		t.Errorf("consent during the erasure: %d %s, want the Request expired page", b.last.StatusCode, b.body)
	}
	if consents, err := f.store.Consents(context.Background(), f.user.ID); err != nil || len(consents) != 0 {
		t.Errorf("the erased account's consents: %v, %v; want none", consents, err)
	}
}

// TestNoCodeOutlivesAnErasure: a signed-in browser that comes back to
// authorize a client while the user's erasure is in flight waits for it
// and gets no code ("Request expired"); before the code's transaction
// locked the user, a code of the erased account was written once the
// erasure committed.
func TestNoCodeOutlivesAnErasure(t *testing.T) {
	t.Parallel()
	const email = "codes@example.org"
	var b *browser
	var r *rp
	f := erasing(t, email, func(e *env) {
		e.user(email)
		c, secret := e.client("app", authd.ClientConfidential, true)
		r = e.rp(c, secret)
		b = e.browser()
		verifier := oauth2.GenerateVerifier()
		if cb := b.get(r.cfg.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier))).signIn(email, goodPassword).callback(); cb == nil {
			t.Fatalf("the first sign-in: %d %s", b.last.StatusCode, b.body)
		}
	})
	verifier := oauth2.GenerateVerifier()
	f.during(t, func() { b.get(r.cfg.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier))) })
	if cb := b.callback(); cb != nil || b.last.StatusCode != http.StatusBadRequest || !strings.Contains(b.body, "Request expired") {
		t.Errorf("authorization during the erasure: %d %v %s, want the Request expired page", b.last.StatusCode, cb, b.body)
	}
}
