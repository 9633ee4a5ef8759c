package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/password"
	"github.com/authd/authd/storetest"
	"github.com/authd/authd/token"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// roundTrips counts what a connection sends: each batch, and each query
// sent alone, is one round trip to the server. sent holds each round
// trip's statements.
type roundTrips struct {
	n    atomic.Int64
	mu   sync.Mutex
	sent [][]string
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	r.record(d.SQL)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	var sqls []string
	for _, q := range d.Batch.QueuedQueries {
		sqls = append(sqls, q.SQL)
	}
	r.record(sqls...)
	return ctx
}

func (r *roundTrips) record(sqls ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sqls)
}

// reset forgets what was sent.
func (r *roundTrips) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n.Store(0)
	r.sent = nil
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// tracedStore opens a fresh, migrated database twice: as s, and as traced,
// whose one connection counts its round trips in trips.
func tracedStore(t *testing.T) (s, traced *Store, trips *roundTrips) {
	t.Helper()
	ctx := context.Background()
	url := storetest.PostgresURL(t)
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	trips = &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	cfg.MaxConns = 1 // one connection: its statement cache warms up
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return s, &Store{queries: queries{db: pool}, pool: pool}, trips
}

// TestRefreshInTwoRoundTrips: a refresh's transaction — BEGIN, the locking
// read, the rotation, the new token, the audit row and COMMIT — reaches the
// server in two round trips: BEGIN with the read, the writes with COMMIT.
func TestRefreshInTwoRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, traced, trips := tracedStore(t)
	pool := traced.pool

	now := time.Now().UTC().Truncate(time.Microsecond)
	u := storetest.NewUser("trips@example.org")
	sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}
	token := func(digest string) *authd.Token {
		return &authd.Token{ID: authd.NewID(), JTI: uuid.NewString(), UserID: u.ID, SessionID: sess.ID,
			TokenType: authd.TokenRefresh, TokenValue: digest, IssuedAt: now, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, token("trip-0")); err != nil {
		t.Fatal(err)
	}
	refresh := func(from, to string) error {
		return traced.InTx(ctx, func(q authd.Queries) error {
			tok, sess, _, err := q.RefreshSession(ctx, from)
			if err != nil {
				return err
			}
			tok.Revoked, tok.RevokedAt, tok.RotatedAt, sess.LastUsedAt = true, now, now, now
			if err := q.SaveRotation(ctx, tok, sess); err != nil {
				return err
			}
			if err := q.CreateToken(ctx, token(to)); err != nil {
				return err
			}
			return q.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventTokenRefreshed, authd.ResultSuccess, u.ID, "", "", "", nil))
		})
	}
	if err := refresh("trip-0", "trip-1"); err != nil { // warms the statement cache
		t.Fatal(err)
	}
	trips.n.Store(0)
	if err := refresh("trip-1", "trip-2"); err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 2 {
		t.Errorf("a refresh transaction took %d round trips, want 2", n)
	}
	if rotated, err := s.RefreshToken(ctx, "trip-1"); err != nil || !rotated.Revoked {
		t.Errorf("after the refresh: %+v, %v; want trip-1 rotated (committed)", rotated, err)
	}

	// A failure among the queued writes rolls the whole transaction back.
	trips.n.Store(0)
	err := traced.InTx(ctx, func(q authd.Queries) error {
		if _, _, _, err := q.RefreshSession(ctx, "trip-2"); err != nil {
			return err
		}
		return q.CreateToken(ctx, token("trip-1")) // a digest taken: unique violation at COMMIT's round trip
	})
	if err == nil {
		t.Fatal("a transaction whose queued write fails committed")
	}
	if tok, err := s.RefreshToken(ctx, "trip-2"); err != nil || tok.Revoked {
		t.Errorf("trip-2 after the failed transaction: %+v, %v", tok, err)
	}
	if stat := pool.Stat(); stat.AcquiredConns() != 0 {
		t.Errorf("%d connections still acquired after the failed transaction", stat.AcquiredConns())
	}
	if err := refresh("trip-2", "trip-3"); err != nil {
		t.Errorf("the pool after a failed transaction: %v", err)
	}
}

// TestSwallowedErrorNeverCommits: a flow that swallows a statement's error
// and returns nil does not report a commit the server turned into a
// rollback.
func TestSwallowedErrorNeverCommits(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	good := storetest.NewUser("kept@example.org")
	err = s.InTx(ctx, func(q authd.Queries) error {
		if err := q.CreateUser(ctx, good); err != nil {
			return err
		}
		q.CreateUser(ctx, storetest.NewUser("Upper@Example.org")) // a CHECK violation, swallowed: the transaction is aborted
		return nil
	})
	if err == nil {
		t.Fatal("InTx reported success for a transaction the server rolled back")
	}
	if _, err := s.User(ctx, good.ID); authd.ErrorCode(err) != authd.ENotFound {
		t.Errorf("a write of the rolled-back transaction is there: %v", err)
	}
}

// discardMailer drops mail: logins send none.
type discardMailer struct{}

func (discardMailer) Send(context.Context, authd.Mail) error { return nil }

// TestLoginInTwoRoundTrips: a password login's transaction reaches the
// server in two round trips, even when it ends a session over the limit:
// BEGIN with the locking reads of the user, their second factors and the
// sessions a new one ends; then every write with COMMIT. (The account's
// lookup before hashing is one more, outside it.) The account's row is
// locked for the logins of that account that wait behind it, so its
// round trips are what they queue for.
func TestLoginInTwoRoundTrips(t *testing.T) {
	ctx := context.Background()
	_, traced, trips := tracedStore(t)
	keys, err := token.OpenKeyring(t.TempDir(), "EdDSA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := authd.Config{PublicURL: "https://auth.example.org", AccessTokenTTL: 15 * time.Minute,
		RefreshTokenTTL: time.Hour, SessionMaxAge: time.Hour, LockoutThreshold: 5, LockoutDuration: time.Minute,
		MaxSessions: 2}
	svc := authd.NewService(cfg, authd.Deps{Store: traced, Mailer: discardMailer{},
		Passwords: password.NewHasher(password.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, password.Policy{MinLength: 12}),
		Tokens:    token.NewIssuer(keys, cfg.PublicURL, "authd")})
	if err := svc.LoadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	const email, pass = "trips@example.org", "correct horse battery staple"
	if err := svc.Register(ctx, authd.Client{}, email, pass, true); err != nil {
		t.Fatal(err)
	}
	var first *authd.TokenPair
	for i := range 2 { // at the limit; the statement cache warms up
		pair, err := svc.Login(ctx, authd.Client{}, email, pass, "")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = pair
		}
	}

	trips.reset()
	if _, err := svc.Login(ctx, authd.Client{}, email, pass, ""); err != nil {
		t.Fatal(err)
	}
	trips.mu.Lock()
	sent := trips.sent
	trips.mu.Unlock()
	if len(sent) != 3 {
		t.Fatalf("a login took %d round trips, want 3 (the lookup, then two in its transaction):\n%s", len(sent), showTrips(sent))
	}
	if !strings.Contains(sent[0][0], "WHERE email") {
		t.Errorf("the first round trip is not the account's lookup:\n%s", showTrips(sent))
	}
	if sent[1][0] != "BEGIN" || sent[2][len(sent[2])-1] != "COMMIT" {
		t.Errorf("the transaction is not BEGIN with the reads, the writes with COMMIT:\n%s", showTrips(sent))
	}
	// The least recently used session ended with it: its refresh token is dead.
	if _, err := svc.Refresh(ctx, authd.Client{}, first.RefreshToken); authd.ErrorCode(err) != authd.EInvalidToken {
		t.Errorf("refresh of the session the login ended: %v, want EInvalidToken", err)
	}
}

// showTrips prints each round trip's statements, one trip a line.
func showTrips(sent [][]string) string {
	var b strings.Builder
	for i, sqls := range sent {
		fmt.Fprintf(&b, "%d:", i+1)
		for _, q := range sqls {
			fmt.Fprintf(&b, " [%.60s]", strings.Join(strings.Fields(q), " "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
