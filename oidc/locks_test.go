package oidc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// pausingStore pauses the first transaction that reads session, ends
// every session of user ended, erases the personal data of user erased, or
// reads a consent of user consenting, just after (it holds those rows
// then), until resume closes; paused closes then.
type pausingStore struct {
	authd.Store
	session, ended, erased, consenting uuid.UUID
	paused, resume                     chan struct{}
	spent                              atomic.Bool
}

// pause holds the first transaction that gets here; the later ones go on
// (and wait, if at all, for PostgreSQL's locks, which the tests can see).
func (s *pausingStore) pause() {
	if s.spent.CompareAndSwap(false, true) {
		close(s.paused)
		<-s.resume
	}
}

// pausingEnv is an env over PostgreSQL whose store pauses as the test
// sets it; release lets the paused transaction go on, at the test's end at
// the latest (before the env closes: its server waits for the requests).
func pausingEnv(t *testing.T, config func(*authd.Config)) (e *env, store *pausingStore, release func()) {
	t.Helper()
	store = &pausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	release = sync.OnceFunc(func() { close(store.resume) })
	e = newEnvConfig(t, store, config)
	t.Cleanup(release)
	return e, store, release
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

// TestClientDeletedWhileItsCodeIsRedeemed: a client is deleted while one
// of its codes is redeemed. The redemption holds the client against
// deletion from its start, so the deletion waits for it and then ends the
// session it started, as it ends every session of the client. Before, the
// deletion's revocation ran before the redemption's session was written:
// that session outlived its client, its tokens working on, and a client
// made again under the same id took them over.
func TestClientDeletedWhileItsCodeIsRedeemed(t *testing.T) {
	t.Parallel()
	p := pausedCode(t, "deleted-client@example.org", func(*authd.Config) {})
	defer p.release()
	e, store := p.e, p.store

	redeemed := make(chan redemption, 1)
	go func() { redeemed <- p.redeem() }()
	<-store.paused // the redemption holds the code and the user
	deleted := make(chan error, 1)
	go func() { deleted <- e.svc.DeleteClient(context.Background(), authd.Client{}, p.client.ID) }()
	waitForLock(t, store.Store) // the deletion's
	p.release()
	if got := <-redeemed; got.status != http.StatusOK {
		t.Errorf("the redemption: %d %s, want 200", got.status, got.code)
	}
	if err := <-deleted; err != nil {
		t.Fatalf("the deletion: %v", err)
	}
	live, err := store.Sessions(context.Background(), p.user.ID, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range live {
		if s.ClientID == p.client.ID {
			t.Errorf("session %s of the deleted client is live", s.ID)
		}
	}
}

// TestClientDeletedWhileACodeIsIssued: a client is deleted while a signed-in
// browser is given one of its codes. The issue holds the client from its
// start, so the deletion waits for it (and then deletes the code with the
// client) rather than delete the request the issue is about to take: in
// that order the issue held the request and waited for the client's
// key-share lock its code needs while the deletion's cascade waited for
// the request, and PostgreSQL ended one of them.
func TestClientDeletedWhileACodeIsIssued(t *testing.T) {
	t.Parallel()
	p := pausedCode(t, "issue@example.org", func(*authd.Config) {})
	defer p.release()
	e, store := p.e, p.store

	issued := make(chan url.Values, 1)
	go func() {
		p.browser.get(p.rp.cfg.AuthCodeURL("st-2", oauth2.S256ChallengeOption(p.verifier)))
		issued <- p.browser.callback()
	}()
	<-store.paused // the issue holds the user and the browser session
	deleted := make(chan error, 1)
	go func() { deleted <- e.svc.DeleteClient(context.Background(), authd.Client{}, p.client.ID) }()
	waitForLock(t, store.Store) // the deletion's, on the client
	p.release()
	if cb := <-issued; cb == nil || cb.Get("code") == "" {
		t.Errorf("the issue: %v; want a code", cb)
	}
	if err := <-deleted; err != nil {
		t.Fatalf("the deletion: %v", err)
	}
	if _, err := e.svc.OAuthClient(context.Background(), p.client.ID); authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("the client after its deletion: %v; want ENotFound", err)
	}
}

// TestClientDeletedWhileAConsentIsGiven: a client is deleted while a user
// consents to it. The consent holds the client from its start, so the
// deletion waits for it, then deletes the consent with the client; read
// without it, the deletion went first and the consent's insert then named
// a client gone.
func TestClientDeletedWhileAConsentIsGiven(t *testing.T) {
	t.Parallel()
	e, store, release := pausingEnv(t, func(*authd.Config) {})
	defer release()
	const email = "consenting@example.org"
	_, f := e.consentPage(email)
	req, sess := e.decision(email, f)
	store.consenting = sess.UserID
	ctx := context.Background()
	granted := make(chan error, 1)
	go func() {
		_, _, err := e.svc.AllowConsent(ctx, authd.Client{}, req.ID, sess)
		granted <- err
	}()
	<-store.paused // the consent holds the user
	deleted := make(chan error, 1)
	go func() { deleted <- e.svc.DeleteClient(ctx, authd.Client{}, req.ClientID) }()
	waitForLock(t, store.Store) // the deletion's, on the client
	release()
	if err := <-granted; err != nil {
		t.Errorf("the consent: %v", err)
	}
	if err := <-deleted; err != nil {
		t.Fatalf("the deletion: %v", err)
	}
	if _, err := store.Consent(ctx, sess.UserID, req.ClientID); authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("the consent to the deleted client: %v; want ENotFound", err)
	}
}

// TestUnknownCodeHoldsNoClient: a made-up code, which anyone may send in
// a public client's name, is refused without holding the client (only a
// redemption that can succeed does): it is answered while a deletion of
// the client holds the row, instead of waiting for it.
func TestUnknownCodeHoldsNoClient(t *testing.T) {
	t.Parallel()
	store := openPostgres(t)
	e := newEnvConfig(t, store, func(*authd.Config) {})
	c, _ := e.client("public", authd.ClientPublic, true)
	ctx := context.Background()
	tx, err := store.(*postgres.Store).Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM oauth_clients WHERE id = $1 FOR UPDATE`, c.ID); err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	var status int
	var body map[string]any
	go func() {
		defer close(answered)
		status, body = e.tokenPost(url.Values{"grant_type": {"authorization_code"}, "client_id": {c.ID},
			"code": {"made-up-code-made-up-code-made-up-code-0000"}, "redirect_uri": {rpCallback},
			"code_verifier": {oauth2.GenerateVerifier()}})
	}()
	if lockedOrDone(t, store, answered) {
		tx.Rollback(ctx)
		<-answered
		t.Fatal("a made-up code waited for the client's row")
	}
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("a made-up code: %d %v; want 400 invalid_grant", status, body)
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
	rp           *rp
	browser      *browser // signed in
	release      func()
}

// pausedCode signs email in through a relying party and returns its code,
// the store set to pause on the browser session.
func pausedCode(t *testing.T, email string, config func(*authd.Config)) *pausedCodeFlow {
	t.Helper()
	p := &pausedCodeFlow{}
	p.e, p.store, p.release = pausingEnv(t, config)
	p.user = p.e.user(email)
	p.client, p.secret = p.e.client("app", authd.ClientConfidential, true)
	p.verifier = oauth2.GenerateVerifier()
	p.rp, p.browser = p.e.rp(p.client, p.secret), p.e.browser()
	p.code = p.rp.login(t, p.browser, email, "st-1", "n-1", p.verifier)
	live, err := p.store.Sessions(context.Background(), p.user.ID, p.e.clock.Now())
	if err != nil || len(live) != 1 {
		t.Fatalf("the browser session: %v, %v; want one", live, err)
	}
	p.store.session = live[0].ID
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
	if !lockedOrDone(t, store, nil) {
		panic("unreachable: a nil channel is never done")
	}
}

// lockedOrDone reports true once a transaction on store's database waits
// for a lock, false if done closes first.
func lockedOrDone(t *testing.T, store authd.Store, done <-chan struct{}) bool {
	t.Helper()
	pool := store.(*postgres.Store).Pool()
	deadline := time.Now().Add(30 * time.Second) // a guard: never waiting is the failure
	for waiting := 0; waiting == 0; time.Sleep(10 * time.Millisecond) {
		select {
		case <-done:
			return false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no transaction waited for a lock")
		}
		if err := pool.QueryRow(context.Background(), storetest.LockWaits, "").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	return true
}

func (q *pausingQueries) RevokeUserSessions(ctx context.Context, userID, except uuid.UUID, at time.Time) ([]uuid.UUID, error) {
	ids, err := q.Queries.RevokeUserSessions(ctx, userID, except, at)
	if userID == q.s.ended {
		q.s.pause()
	}
	return ids, err
}

func (q *pausingQueries) Consent(ctx context.Context, userID uuid.UUID, clientID string) (*authd.Consent, error) {
	c, err := q.Queries.Consent(ctx, userID, clientID)
	if userID == q.s.consenting {
		q.s.pause()
	}
	return c, err
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
	e, store, release := pausingEnv(t, func(*authd.Config) {})
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

// barringFlow is an env over PostgreSQL where an administrator's bar on
// the user email (an erasure, a lock) is in flight, paused with the user
// locked until release.
type barringFlow struct {
	e       *env
	store   *pausingStore
	user    *authd.User
	barred  chan error
	release func()
}

// erasing starts an erasure once before has run (and made the user),
// paused past ErasePersonalData (the user locked against every other
// transaction).
func erasing(t *testing.T, email string, before func(e *env)) *barringFlow {
	t.Helper()
	return barring(t, email, before, func(s *pausingStore, id uuid.UUID) { s.erased = id },
		func(e *env, id uuid.UUID) error { return e.svc.DeleteUser(context.Background(), authd.Client{}, id) })
}

// adminLocking starts an administrator's lock once before has run, paused
// once the user is marked locked and their sessions ended.
func adminLocking(t *testing.T, email string, before func(e *env)) *barringFlow {
	t.Helper()
	return barring(t, email, before, func(s *pausingStore, id uuid.UUID) { s.ended = id },
		func(e *env, id uuid.UUID) error {
			return e.svc.LockUser(context.Background(), authd.Client{}, id, time.Time{})
		})
}

func barring(t *testing.T, email string, before func(e *env), pauseOn func(*pausingStore, uuid.UUID),
	bar func(*env, uuid.UUID) error) *barringFlow {
	t.Helper()
	f := &barringFlow{barred: make(chan error, 1)}
	f.e, f.store, f.release = pausingEnv(t, func(*authd.Config) {})
	before(f.e)
	f.user = f.e.userByEmail(email)
	pauseOn(f.store, f.user.ID)
	go func() { f.barred <- bar(f.e, f.user.ID) }()
	select {
	case <-f.store.paused:
	case err := <-f.barred:
		t.Fatalf("the bar ended before its pause: %v", err)
	}
	return f
}

// during runs step while the bar holds its user, waits until step waits
// for a lock, lets the bar finish and then step.
func (f *barringFlow) during(t *testing.T, step func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); step() }()
	waitForLock(t, f.store.Store)
	f.release()
	if err := <-f.barred; err != nil {
		t.Fatalf("the bar: %v", err)
	}
	<-done
}

// TestNoConsentOutlivesABar: a consent given on the consent page while
// an administrator erases or locks the user waits for it and is refused
// ("Request expired"): the request died with the account's access (its
// code could not be redeemed either). When the consent's transaction did
// not lock the user first, its row waited only for the key-share lock of
// its foreign key and was written once the erasure committed; nor did it
// look at an administrator's lock.
func TestNoConsentOutlivesABar(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]func(*testing.T, string, func(*env)) *barringFlow{
		"erasure": erasing, "administrator's lock": adminLocking,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const email = "consents@example.org"
			var b *browser
			var form url.Values
			f := start(t, email, func(e *env) {
				b, form = e.consentPage(email)
				form.Set("decision", "allow")
			})
			f.during(t, func() { b.post(oidc.ConsentPath, form) })
			if b.last.StatusCode != http.StatusBadRequest || !strings.Contains(b.body, "Request expired") || b.callback() != nil {
				t.Errorf("consent during the %s: %d %s, want the Request expired page", name, b.last.StatusCode, b.body)
			}
			if consents, err := f.store.Consents(context.Background(), f.user.ID); err != nil || len(consents) != 0 {
				t.Errorf("the account's consents after the %s: %v, %v; want none", name, consents, err)
			}
		})
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

// TestNoCodeForASignInEndedMeanwhile: a signed-in browser comes back to
// authorize a client while its session is being signed out (another tab,
// a relying party's logout). The code's transaction locks the session
// after the user and waits for the sign-out; it finds the sign-in ended
// and answers as to a browser not signed in: the sign-in page, which then
// continues the request, or login_required to prompt=none. Before, the
// code's transaction trusted the session read before it, and a code and
// an oidc_authorized row were written for a sign-in that had ended.
func TestNoCodeForASignInEndedMeanwhile(t *testing.T) {
	t.Parallel()
	for _, silent := range []bool{false, true} {
		t.Run(fmt.Sprintf("prompt=none %v", silent), func(t *testing.T) {
			t.Parallel()
			const email = "two-tabs@example.org"
			ctx := context.Background()
			p := pausedCode(t, email, func(*authd.Config) {})
			e, store, u, r, b := p.e, p.store, p.user, p.rp, p.browser
			signedOut := make(chan error, 1)
			go func() { signedOut <- e.svc.EndSession(ctx, authd.Client{}, store.session) }()
			<-store.paused // the sign-out holds the browser session
			opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())}
			if silent {
				opts = append(opts, oauth2.SetAuthURLParam("prompt", "none"))
			}
			done := make(chan struct{})
			go func() { defer close(done); b.get(r.cfg.AuthCodeURL("s2", opts...)) }()
			if !lockedOrDone(t, store.Store, done) {
				t.Errorf("the authorization ended before the sign-out: %d %v", b.last.StatusCode, b.callback())
			}
			p.release()
			<-done
			if err := <-signedOut; err != nil {
				t.Fatalf("the sign-out: %v", err)
			}

			cb := b.callback()
			switch {
			case silent && (cb == nil || cb.Get("error") != "login_required" || cb.Get("code") != "" || cb.Get("state") != "s2"):
				t.Errorf("prompt=none as the sign-in ended: %d %v, want login_required", b.last.StatusCode, cb)
			case !silent && (cb != nil || b.form().Get("request") == ""):
				t.Errorf("authorization as the sign-in ended: %d %v %s, want the sign-in page", b.last.StatusCode, cb, b.body)
			case !silent:
				// The request waited for the new sign-in.
				if cb := b.signIn(email, goodPassword).callback(); cb == nil || cb.Get("code") == "" || cb.Get("state") != "s2" {
					t.Errorf("the sign-in that continues the request: %d %v", b.last.StatusCode, cb)
				}
			}
			logs, err := store.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: u.ID, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			authorized := 0
			for _, l := range logs {
				if l.EventType == authd.EventOIDCAuthorized && l.AdditionalContext["session_id"] == store.session.String() {
					authorized++
				}
			}
			if authorized != 1 {
				t.Errorf("oidc_authorized rows of the ended session: %d, want 1 (its first sign-in only)", authorized)
			}
		})
	}
}

// TestConcurrentSignInsOfOneUserNeverDeadlock runs the OpenID flows of one
// account at once: browsers signing in through a first-party and a
// third-party relying party (consent given) or coming back signed in,
// codes redeemed (a fifth of them twice), refresh tokens rotated at the
// token endpoint, sessions signed out as a relying party's logout does,
// the third party's consent withdrawn, password logins past the session
// limit and an administrator's revocations. Refusals are expected (a code
// or token whose session ended); a 503 or a 500 is not: every one of these
// locks the user before the rows of theirs it changes.
func TestConcurrentSignInsOfOneUserNeverDeadlock(t *testing.T) {
	onBothStoresEnv(t, func(t *testing.T, s authd.Store) *env {
		return newEnvConfig(t, s, func(c *authd.Config) { c.MaxSessions = 3 })
	}, func(t *testing.T, e *env) {
		const email = "busy-rp@example.org"
		ctx := context.Background()
		u := e.user(email)
		first, firstSecret := e.client("app", authd.ClientConfidential, true)
		third, thirdSecret := e.client("third", authd.ClientConfidential, false)
		rps := []*rp{e.rp(first, firstSecret, "offline_access"), e.rp(third, thirdSecret, "offline_access")}

		var mu sync.Mutex
		var refreshTokens []url.Values // token-endpoint forms, client and refresh token
		var sessions []uuid.UUID       // the sids of ID tokens issued
		var browsers [2][]*browser     // signed in, each worker's own (a browser is one tab)
		take := func(list *[]url.Values) url.Values {
			mu.Lock()
			defer mu.Unlock()
			if len(*list) == 0 {
				return nil
			}
			i := rand.IntN(len(*list))
			v := (*list)[i]
			*list = append((*list)[:i], (*list)[i+1:]...)
			return v
		}
		var cmu sync.Mutex
		answers := map[string]map[string]int{}
		note := func(op, answer string, bad bool) {
			cmu.Lock()
			defer cmu.Unlock()
			if answers[op] == nil {
				answers[op] = map[string]int{}
			}
			answers[op][answer]++
			if bad {
				t.Errorf("%s: %s", op, answer)
			}
		}
		noteErr := func(op string, err error) {
			code := authd.ErrorCode(err)
			bad := code == authd.EUnavailable || code == authd.EInternal
			answer := string(code)
			if bad {
				answer += " " + err.Error()
			}
			note(op, answer, bad)
		}
		noteStatus := func(op string, status int) { note(op, fmt.Sprint(status), status >= 500) }

		const signIns = 60
		var wg, signing sync.WaitGroup
		done := make(chan struct{})
		until := func(step func() bool) { // step reports whether it did something
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if !step() {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		// withdraw logs in with the password (from an address of its
		// own: the browsers share 127.0.0.1's limit) and withdraws the
		// third party's consent.
		withdraw := func(w int) {
			c := authd.Client{IP: fmt.Sprintf("192.0.2.%d", 1+w)}
			pair, err := e.svc.Login(ctx, c, email, goodPassword, "")
			noteErr("login", err)
			if err != nil {
				return
			}
			claims, err := e.svc.Authenticate(ctx, pair.AccessToken)
			if err != nil {
				noteErr("authenticate", err)
				return
			}
			noteErr("withdraw consent", e.svc.RevokeConsent(ctx, c, claims, third.ID))
		}
		for w := range 2 {
			signing.Go(func() {
				for i := range signIns {
					// Fake time moves with the work, not the wall: 20 s a
					// sign-in, so that one account's 10 logins a minute
					// suffice, and a code (60 s) outlives the other
					// worker's step between its issue and its redemption.
					e.clock.Advance(20 * time.Second)
					switch i % 5 {
					case 2:
						withdraw(w)
					case 4:
						noteErr("admin revoke", e.svc.RevokeUserSessions(ctx, authd.Client{}, u.ID))
					}
					r := rps[(w+i)%2]
					var b *browser
					if mine := browsers[w]; len(mine) > 0 && rand.IntN(2) == 0 {
						b = mine[rand.IntN(len(mine))]
					} else {
						b = e.browser()
					}
					verifier := oauth2.GenerateVerifier()
					code, status := signInCode(b, r, email, verifier)
					if code == "" {
						noteStatus("sign-in", status)
						continue
					}
					browsers[w] = append(browsers[w], b)
					form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rpCallback},
						"code_verifier": {verifier}, "client_id": {r.cfg.ClientID}, "client_secret": {r.cfg.ClientSecret}}
					status, body := e.tokenPost(form)
					noteStatus("redeem", status)
					if status == http.StatusOK {
						mu.Lock()
						refreshTokens = append(refreshTokens, url.Values{"grant_type": {"refresh_token"},
							"refresh_token": {fmt.Sprint(body["refresh_token"])}, "client_id": {r.cfg.ClientID},
							"client_secret": {r.cfg.ClientSecret}})
						if sid, err := sidOf(fmt.Sprint(body["id_token"])); err == nil {
							sessions = append(sessions, sid)
						} else {
							t.Errorf("the ID token's sid: %v", err)
						}
						mu.Unlock()
					}
					if rand.IntN(5) == 0 {
						status, _ := e.tokenPost(form)
						noteStatus("redeem again", status)
					}
				}
			})
		}
		until(func() bool {
			form := take(&refreshTokens)
			if form == nil {
				return false
			}
			status, body := e.tokenPost(form)
			noteStatus("refresh", status)
			if status == http.StatusOK {
				form.Set("refresh_token", fmt.Sprint(body["refresh_token"]))
				mu.Lock()
				refreshTokens = append(refreshTokens, form)
				mu.Unlock()
			}
			return true
		})
		until(func() bool {
			mu.Lock()
			if len(sessions) == 0 {
				mu.Unlock()
				return false
			}
			i := rand.IntN(len(sessions))
			sid := sessions[i]
			sessions = append(sessions[:i], sessions[i+1:]...)
			mu.Unlock()
			noteErr("sign-out", e.svc.EndUserSession(ctx, authd.Client{}, sid, u.ID))
			return true
		})
		signing.Wait()
		close(done)
		wg.Wait()
		if answers["redeem"]["200"] == 0 {
			t.Errorf("no code was redeemed: %v", answers)
		}
		t.Logf("answers: %v", answers)
	})
}

// signInCode runs b through r's authorization to its callback, signing in
// and consenting as asked, and returns the code; "" and the last answer's
// status when it ends anywhere else.
func signInCode(b *browser, r *rp, email, verifier string) (string, int) {
	b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	if b.callback() == nil && strings.Contains(b.body, `name="password"`) {
		f := b.form()
		f.Set("email", email)
		f.Set("password", goodPassword)
		b.post(oidc.SignInPath, f)
	}
	if b.callback() == nil && strings.Contains(b.body, `name="decision"`) {
		f := b.form()
		f.Set("decision", "allow")
		b.post(oidc.ConsentPath, f)
	}
	if cb := b.callback(); cb != nil && cb.Get("code") != "" {
		return cb.Get("code"), 0
	}
	return "", b.last.StatusCode
}

// tokenPost posts form to the token endpoint once and returns the status
// and the JSON answer.
func (e *env) tokenPost(form url.Values) (int, map[string]any) {
	resp, err := http.PostForm(e.srv.URL+oidc.TokenPath, form)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// sidOf reads (without verifying) the sid of an ID token, failing no test
// from the goroutine it runs in.
func sidOf(idToken string) (uuid.UUID, error) {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return uuid.Nil, fmt.Errorf("not a JWT: %q", idToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return uuid.Nil, err
	}
	var claims struct {
		Sid string `json:"sid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return uuid.Nil, err
	}
	return uuid.Parse(claims.Sid)
}
