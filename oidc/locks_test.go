package oidc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/postgres"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// pausingStore pauses the first transaction that reads session, just after
// the read (which locks it), until resume closes; paused closes then.
type pausingStore struct {
	authd.Store
	session        uuid.UUID
	paused, resume chan struct{}
	once           sync.Once
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
		q.s.once.Do(func() {
			close(q.s.paused)
			<-q.s.resume
		})
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
	store := &pausingStore{Store: openPostgres(t), paused: make(chan struct{}), resume: make(chan struct{})}
	release := sync.OnceFunc(func() { close(store.resume) })
	defer release()
	e := newEnvConfig(t, store, func(c *authd.Config) { c.MaxSessions = 1 })
	const email = "limit@example.org"
	u := e.user(email)
	c, secret := e.client("app", authd.ClientConfidential, true)
	r := e.rp(c, secret)
	verifier := oauth2.GenerateVerifier()
	code := r.login(t, e.browser(), email, "st-1", "n-1", verifier)
	live, err := store.Sessions(context.Background(), u.ID, e.clock.Now())
	if err != nil || len(live) != 1 {
		t.Fatalf("the browser session: %v, %v; want one", live, err)
	}
	store.session = live[0].ID

	redeemed := make(chan error, 1)
	go func() {
		_, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
		redeemed <- err
	}()
	<-store.paused // the redemption holds the browser session
	loggedIn := make(chan error, 1)
	go func() {
		_, err := e.svc.Login(context.Background(), authd.Client{}, email, goodPassword, "")
		loggedIn <- err
	}()
	pool := store.Store.(*postgres.Store).Pool()
	for waiting := 0; waiting == 0; time.Sleep(10 * time.Millisecond) { // the login waits for a lock
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if err := <-redeemed; err != nil {
		t.Errorf("the redemption: %v", err)
	}
	if err := <-loggedIn; err != nil {
		t.Errorf("the login: %v", err)
	}
}
