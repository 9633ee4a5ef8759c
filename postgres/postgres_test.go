package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/faultnet"
	"github.com/authd/authd/migrate"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// open returns a store on a fresh, migrated database.
func open(t *testing.T) *postgres.Store { return openURL(t, storetest.PostgresURL(t)) }

// openURL returns a store on the database at dbURL, migrated; it closes
// at the end of the test.
func openURL(t *testing.T, dbURL string) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatalf("migrate up: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) authd.Store { return open(t) })
}

func TestSchemaMatchesSeed(t *testing.T) {
	t.Parallel()
	s := open(t)
	got := catalog(t, s)
	want := storetest.SeedSchema
	for i := range want.Columns {
		want.Columns[i].Extra = false // the catalog cannot tell
	}
	// Migration 31 adds a table (SQLite's 29 the same).
	want.Columns = append(slices.Clone(want.Columns), storetest.Column{Table: "erasures_pending", Name: "user_id", Kind: "uuid", PK: true})
	want.ForeignKeys = append(slices.Clone(want.ForeignKeys), storetest.ForeignKey{Table: "erasures_pending", Column: "user_id",
		RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"})
	sortSchema(&want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("live schema differs from the seed's (-want +got):\n%s", diff)
	}
}

func sortSchema(s *storetest.Schema) {
	slices.SortFunc(s.Columns, func(a, b storetest.Column) int {
		return strings.Compare(a.Table+"."+a.Name, b.Table+"."+b.Name)
	})
	slices.SortFunc(s.Indexes, func(a, b storetest.Index) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.ForeignKeys, func(a, b storetest.ForeignKey) int {
		return strings.Compare(a.Table+"."+a.Column, b.Table+"."+b.Column)
	})
}

// catalog reads the schema of the public namespace from pg_catalog.
func catalog(t *testing.T, s *postgres.Store) storetest.Schema {
	t.Helper()
	ctx := context.Background()
	var out storetest.Schema
	rows, err := s.Pool().Query(ctx, `
		SELECT c.table_name, c.column_name, c.data_type, c.udt_name, c.is_nullable = 'YES',
		       EXISTS (SELECT 1 FROM information_schema.table_constraints tc
		               JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)
		               WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_name = c.table_name
		                 AND k.column_name = c.column_name)
		FROM information_schema.columns c
		WHERE c.table_schema = 'public' AND c.table_name <> 'goose_db_version'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c storetest.Column
		var dataType, udt string
		if err := rows.Scan(&c.Table, &c.Name, &dataType, &udt, &c.Nullable, &c.PK); err != nil {
			t.Fatal(err)
		}
		c.Kind = map[string]string{
			"uuid": "uuid", "character varying": "varchar", "boolean": "boolean", "integer": "integer", "bigint": "bigint",
			"timestamp with time zone": "timestamp", "jsonb": "json", "USER-DEFINED": "enum:" + udt,
		}[dataType]
		if c.Kind == "" {
			c.Kind = "unexpected type " + dataType
		}
		out.Columns = append(out.Columns, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	rows, err = s.Pool().Query(ctx, `
		SELECT t.relname, i.relname, ix.indisunique,
		       string_agg(a.attname, ',' ORDER BY k.n)
		FROM pg_index ix
		JOIN pg_class t ON t.oid = ix.indrelid
		JOIN pg_class i ON i.oid = ix.indexrelid
		JOIN pg_namespace ns ON ns.oid = t.relnamespace
		CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n)
		JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
		WHERE ns.nspname = 'public' AND NOT ix.indisprimary AND t.relname <> 'goose_db_version'
		GROUP BY 1, 2, 3`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ix storetest.Index
		if err := rows.Scan(&ix.Table, &ix.Name, &ix.Unique, &ix.Columns); err != nil {
			t.Fatal(err)
		}
		out.Indexes = append(out.Indexes, ix)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	rows, err = s.Pool().Query(ctx, `
		SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text, af.attname,
		       CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
		            WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END
		FROM pg_constraint c
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
		JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
		WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var fk storetest.ForeignKey
		if err := rows.Scan(&fk.Table, &fk.Column, &fk.RefTable, &fk.RefColumn, &fk.OnDelete); err != nil {
			t.Fatal(err)
		}
		out.ForeignKeys = append(out.ForeignKeys, fk)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sortSchema(&out)
	return out
}

// TestEnumLabels checks that the native enum types hold exactly the labels of
// the Go enumerations, in order.
func TestEnumLabels(t *testing.T) {
	t.Parallel()
	s := open(t)
	labels := func(typ string) []string {
		var got []string
		err := s.Pool().QueryRow(context.Background(),
			`SELECT array_agg(enumlabel ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = $1::regtype`,
			typ).Scan(&got)
		if err != nil {
			t.Fatalf("labels of %s: %v", typ, err)
		}
		return got
	}
	tests := []struct {
		typ  string
		want []string
	}{
		{"account_status", strs(authd.AccountStatuses())},
		{"token_type", strs(authd.TokenTypes())},
		{"verification_token_type", strs(authd.VerificationTypes())},
		{"event_result", strs(authd.Results())},
		{"event_type", strs(authd.EventTypes())},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, labels(tt.typ)); diff != "" {
			t.Errorf("enum %s (-go +database):\n%s", tt.typ, diff)
		}
	}
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// TestMigrationsRoundTrip runs up, down to zero, and up again: every down
// migration undoes its up completely.
func TestMigrationsRoundTrip(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	m := s.Migrator()
	// Versions may have gaps (numbers are reserved per branch), so count.
	migrations, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := catalog(t, s)
	if _, err := m.Down(ctx, len(migrations)+5); !errors.As(err, new(*migrate.TooManyError)) {
		t.Fatalf("down by more than are applied: %v, want refused", err)
	}
	down, err := m.Down(ctx, len(migrations))
	if err != nil {
		t.Fatalf("down: %v", err)
	}
	if len(down) != len(migrations) {
		t.Errorf("down rolled back %d migrations, want %d", len(down), len(migrations))
	}
	if cur, _, _ := m.Version(ctx); cur != 0 {
		t.Errorf("version after down to zero = %d", cur)
	}
	empty := catalog(t, s)
	if len(empty.Columns)+len(empty.Indexes)+len(empty.ForeignKeys) != 0 {
		t.Errorf("schema left after down to zero: %+v", empty)
	}
	var types int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = 'public' AND t.typtype = 'e'`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	if types != 0 {
		t.Errorf("%d enum types left after down to zero", types)
	}
	if err := s.Ready(ctx); authd.ErrorCode(err) != authd.EUnavailable {
		t.Errorf("Ready at version 0 = %v, want unavailable (schema behind)", err)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if diff := cmp.Diff(before, catalog(t, s), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("schema after down and up differs (-before +after):\n%s", diff)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready at head: %v", err)
	}
	if _, err := m.Redo(ctx); err != nil {
		t.Errorf("redo: %v", err)
	}
}

func TestOpenTroubleshooting(t *testing.T) {
	t.Parallel()
	base, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	missing := *base
	missing.Path = "/authd_no_such_database"
	unreachable := *base
	unreachable.Host = "127.0.0.1:1" // nothing listens on port 1
	unreachable.RawQuery = ""        // sslmode prefer: pgx tries twice, and its error tells the refusal twice
	// A server that refuses TLS (it answers PostgreSQL's SSLRequest "N").
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			io.ReadFull(c, make([]byte, 8)) // the SSLRequest
			c.Write([]byte("N"))
			c.Close()
		}
	}()
	noTLS := *base
	noTLS.Host = plain.Addr().String()
	noTLS.RawQuery = "sslmode=require"
	stranger := *base
	stranger.User = url.User("authd_no_such_role")
	stranger.RawQuery = "" // sslmode prefer: pgx tries twice, and told the reason twice
	tests := []struct {
		name, url, message, hint string
	}{
		{"database missing", missing.String(), `database "authd_no_such_database" does not exist`, "createdb authd_no_such_database"},
		{"server unreachable", unreachable.String(), "could not connect to PostgreSQL at 127.0.0.1:1", "start PostgreSQL"},
		{"server without TLS", noTLS.String(), "the server does not speak TLS", "ssl = on"},
		{"bad url", "postgres://%zz", "not a valid PostgreSQL URL", "postgres://USER"},
		{"user refused", stranger.String(), `PostgreSQL at ` + base.Host + ` refused user "authd_no_such_role"`, "check the user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.Open(context.Background(), tt.url)
			var e *authd.Error
			if !asError(err, &e) {
				t.Fatalf("Open(%s) = %v, want an *authd.Error", tt.name, err)
			}
			if !strings.Contains(e.Message, tt.message) || !strings.Contains(e.Hint, tt.hint) {
				t.Errorf("Open: message %q hint %q; want them to contain %q and %q", e.Message, e.Hint, tt.message, tt.hint)
			}
			// The server's reason once, not once per address pgx tried.
			if e.Err != nil && (strings.Count(e.Err.Error(), "FATAL") > 1 || strings.Count(e.Err.Error(), "connection refused") > 1) {
				t.Errorf("Open: %q with cause %q tells its reason twice", e.Message, e.Err)
			}
		})
	}
}

func asError(err error, target **authd.Error) bool { return errors.As(err, target) }

// TestMigrationCommandsOneAtATime: a migration command waits for another
// to finish, all of it: goose locks each step, and another command's steps
// between down's count and its steps would roll back what it did not count.
func TestMigrationCommandsOneAtATime(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	release := holdAdvisoryLock(t, s, postgres.MigrationCommandLockID) // as another authd migrate does
	m := s.Migrator()
	var told atomic.Int32 // the notice of a wait for the lock
	m.OnLockWait(func() { told.Add(1) })
	before, _, err := m.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func(context.Context) error{
		"down": func(ctx context.Context) error { _, err := m.Down(ctx, 1); return err },
		"redo": func(ctx context.Context) error { _, err := m.Redo(ctx); return err },
	} {
		wait, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := run(wait)
		cancel()
		if !errors.Is(err, migrate.ErrCommandLock) {
			t.Errorf("%s while another command runs: %v, want it to wait for it", name, err)
		}
		if n := told.Swap(0); n != 1 {
			t.Errorf("%s while another command runs: told of the wait %d times, want once", name, n)
		}
	}
	// Up at head has nothing to do: it takes no lock, and waits for none.
	wait, cancel := context.WithTimeout(ctx, 2*time.Second)
	if res, err := m.Up(wait); err != nil || len(res) != 0 || told.Load() != 0 {
		t.Errorf("up at head while another command runs: %v %v, told of a wait %d times; want nothing, at once", res, err, told.Load())
	}
	cancel()
	if v, _, _ := m.Version(ctx); v != before {
		t.Errorf("version %d after commands that waited, want %d", v, before)
	}
	release()
	if res, err := m.Down(ctx, 1); err != nil || len(res) != 1 {
		t.Errorf("down after the other command ended: %v %v", res, err)
	}
	// With a migration to apply, up waits as the others do.
	release = holdAdvisoryLock(t, s, postgres.MigrationCommandLockID)
	wait, cancel = context.WithTimeout(ctx, 2*time.Second)
	if _, err := m.Up(wait); !errors.Is(err, migrate.ErrCommandLock) || told.Swap(0) != 1 {
		t.Errorf("up with a migration to apply while another command runs: %v; want it to wait, told once", err)
	}
	cancel()
	release()
	if res, err := m.Up(ctx); err != nil || len(res) != 1 {
		t.Errorf("up after the other command ended: %v %v", res, err)
	}
	if n := told.Load(); n != 0 {
		t.Errorf("commands that found the lock free told of a wait %d times", n)
	}
	// The command lock's connection is not the pool's: a pool of one is
	// left for goose's steps.
	u, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	one := openURL(t, u.String())
	guard, cancel := context.WithTimeout(ctx, time.Minute) // never answering is the failure
	defer cancel()
	if res, err := one.Migrator().Redo(guard); err != nil || len(res) != 2 {
		t.Errorf("redo on a pool of one connection: %v %v", res, err)
	}
}

// holdAdvisoryLock takes the session-level advisory lock id on a
// connection of its own, as another instance would, until release.
func holdAdvisoryLock(t *testing.T, s *postgres.Store, id int64) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Release)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, id); err != nil {
		t.Fatal(err)
	}
	return func() { conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, id) }
}

// TestPurgeOneInstanceAtATime holds the purge lock elsewhere: Purge skips.
// TestCommandLockSessionNeverIdlesOut: the migration command lock's
// connection idles while the command runs on others; an
// idle_session_timeout the server or the URL sets (here 100 ms) must not
// end its session, and the lock with it.
func TestCommandLockSessionNeverIdlesOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["idle_session_timeout"] = "100ms"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := postgres.KeepIdleSession(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var timeout string
	if err := conn.QueryRow(ctx, "SHOW idle_session_timeout").Scan(&timeout); err != nil || timeout != "0" {
		t.Errorf("idle_session_timeout on the lock's connection: %q %v, want 0", timeout, err)
	}
}

// TestPurgeOneInstanceAtATime: a purge while another holds the purge's
// lock does nothing (skipped); a dry run counts anyway.
func TestPurgeOneInstanceAtATime(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	release := holdAdvisoryLock(t, s, 0x61757468647075)
	res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: time.Now(), ExpiredBefore: time.Now(), Batch: 10})
	if err != nil || !res.Skipped {
		t.Errorf("Purge while another instance purges = %+v, %v; want skipped", res, err)
	}
	// A dry run deletes nothing, so it counts whoever purges.
	dry, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: time.Now(), ExpiredBefore: time.Now(), Batch: 10, DryRun: true})
	if err != nil || dry.Skipped {
		t.Errorf("a dry run while another instance purges = %+v, %v; want counted", dry, err)
	}
	release()
	if res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: time.Now(), ExpiredBefore: time.Now(), Batch: 10}); err != nil || res.Skipped {
		t.Errorf("Purge after the lock is released = %+v, %v", res, err)
	}
}

// TestLockReasonBackfill: migration 3 gives existing locks their reason.
func TestLockReasonBackfill(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	storetest.LockReasonBackfill(t, s, s.Migrator(), func(sql string) error { _, err := s.Pool().Exec(ctx, sql); return err })
}

// TestConnectionLostInTransaction cuts the connection in the middle of a
// transaction: every later use of it, the commit included, is unavailable
// (503 with Retry-After), never an internal error (500). The fault run of
// authd-load found pgx's "conn closed" answered as a 500.
func TestConnectionLostInTransaction(t *testing.T) {
	t.Parallel()
	p, dbURL, err := faultnet.ListenURL(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx := context.Background()
	s := openURL(t, dbURL)
	var errs []error
	err = s.InTx(ctx, func(q authd.Queries) error {
		if _, err := q.User(ctx, authd.NewID()); authd.ErrorCode(err) != authd.ENotFound {
			t.Fatalf("before the cut: %v", err)
		}
		p.Cut()
		for range 2 { // the first use finds the connection gone, the second finds it closed
			_, err := q.User(ctx, authd.NewID())
			errs = append(errs, err)
		}
		return nil // commit
	})
	errs = append(errs, err)
	for i, err := range errs {
		if authd.ErrorCode(err) != authd.EUnavailable {
			t.Errorf("use %d after the connection was lost: %v (code %q), want unavailable", i+1, err, authd.ErrorCode(err))
		}
	}
}

// TestRefusedConnectionIsUnavailable: a server that refuses new
// connections with an error of its own (here "database is not currently
// accepting connections", SQLSTATE 55000, which no class of the switch
// covers) is an outage (503 with Retry-After), never an internal error: a
// black-box run found logins answered 500 this way.
func TestRefusedConnectionIsUnavailable(t *testing.T) {
	t.Parallel()
	dbURL := storetest.PostgresURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	ctx := context.Background()
	s := openURL(t, dbURL)
	admin, err := pgx.Connect(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
		t.Fatal(err)
	}
	for attempt := range 2 { // the pool may first find a terminated connection; then it must dial
		_, err := s.User(ctx, authd.NewID())
		var e *authd.Error
		if !errors.As(err, &e) || e.Code != authd.EUnavailable || e.RetryAfter <= 0 {
			t.Errorf("attempt %d on a database refusing connections: %v (code %q), want unavailable with Retry-After",
				attempt+1, err, authd.ErrorCode(err))
		}
	}
	err = s.InTx(ctx, func(authd.Queries) error { return nil })
	if authd.ErrorCode(err) != authd.EUnavailable {
		t.Errorf("a transaction on a database refusing connections: %v, want unavailable", err)
	}
}

// TestPublishRevocationOutsideTx: outside a transaction PublishRevocation
// is an error and writes no feed event, since only a transaction's
// advisory lock makes event ids commit in order.
func TestPublishRevocationOutsideTx(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rev := authd.Revocation{At: at, Until: at.Add(time.Hour), SessionIDs: []uuid.UUID{uuid.New()}}
	if err := s.PublishRevocation(ctx, rev); err == nil {
		t.Fatal("PublishRevocation outside a transaction succeeded, want an error")
	}
	if evs, err := s.RevocationEvents(ctx, 0, at, 10); err != nil || len(evs) != 0 {
		t.Errorf("events after the refused publication: %v, %v; want none", evs, err)
	}
	if err := s.InTx(ctx, func(tx authd.Queries) error { return tx.PublishRevocation(ctx, rev) }); err != nil {
		t.Errorf("PublishRevocation in a transaction: %v", err)
	}
}

// TestEmailNFCBackfill: migration 12 composes the addresses stored before.
func TestEmailNFCBackfill(t *testing.T) {
	t.Parallel()
	s := open(t)
	storetest.EmailNFCBackfill(t, s, s.Migrator())
}

// TestEmailNFCBackfillOutsideUTF8: migration 12 upgrades a database whose
// encoding is not UTF8 (where normalize() refuses to run) by doing nothing.
func TestEmailNFCBackfillOutsideUTF8(t *testing.T) {
	t.Parallel()
	s := openURL(t, storetest.PostgresURLWith(t, "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
	ctx := context.Background()
	if _, err := s.Migrator().Down(ctx, 1); err != nil {
		t.Fatal(err)
	}
	u := storetest.NewUser("plain@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatalf("migration 12 on an SQL_ASCII database: %v", err)
	}
	if got, err := s.User(ctx, u.ID); err != nil || got.Email != u.Email {
		t.Errorf("after migration 12: %v, %v", got, err)
	}
}

// TestListenerReplacesAStalledConnection: a listening connection that
// neither delivers nor closes (a failover, a NAT that forgot it) is found
// out by a ping after a silence, replaced and resynced, and the new one
// hears the revocations that follow.
func TestListenerReplacesAStalledConnection(t *testing.T) {
	t.Parallel()
	dbURL := storetest.PostgresURL(t)
	direct := openURL(t, dbURL)
	p, proxied, err := faultnet.ListenURL(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	s := openURL(t, proxied)
	postgres.SetListenCheck(s, 200*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	applied, resyncs := make(chan uuid.UUID, 10), make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Listen(ctx, func(r authd.Revocation) { applied <- r.SessionIDs[0] }, func(context.Context) { resyncs <- struct{}{} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	await := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10 s", what)
		}
	}
	publish := func() uuid.UUID {
		t.Helper()
		id, at := uuid.New(), time.Now()
		rev := authd.Revocation{At: at, Until: at.Add(time.Hour), SessionIDs: []uuid.UUID{id}}
		if err := direct.InTx(ctx, func(tx authd.Queries) error { return tx.PublishRevocation(ctx, rev) }); err != nil {
			t.Fatal(err)
		}
		return id
	}
	heard := func(what string, want uuid.UUID) {
		t.Helper()
		for deadline := time.After(10 * time.Second); ; {
			select {
			case got := <-applied:
				if got == want {
					return
				}
			case <-deadline:
				t.Fatalf("%s: not heard within 10 s", what)
			}
		}
	}

	await("first resync", resyncs)
	heard("a revocation on a healthy connection", publish())
	for len(resyncs) > 0 { // a ping that timed out on a loaded machine reconnected: not the stall's
		<-resyncs
	}
	p.Stall()
	publish() // lost with the stalled connection: the resync is what finds it
	await("resync on a new connection after the stall", resyncs)
	heard("a revocation on the new connection", publish())
}

// TestPurgeSkipsRowsInUse: the purge never waits for a row a flow holds.
// A new password voids the user's open second-factor challenges in the
// order of their index while the purge deleted expired ones in its own, so
// one of each on two expired challenges of one user could deadlock (and
// PostgreSQL abort one of them). The purge now leaves a row in use to its
// next run.
func TestPurgeSkipsRowsInUse(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	u := storetest.NewUser("purge-in-use@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	old := storetest.Epoch.Add(-time.Hour)
	var held, free uuid.UUID
	for i, id := range []*uuid.UUID{&held, &free} {
		*id = authd.NewID()
		if err := s.CreateMFAChallenge(ctx, &authd.MFAChallenge{ID: *id, Token: "purge-digest-" + string(rune('a'+i)),
			UserID: u.ID, CreatedAt: old, ExpiresAt: old.Add(authd.MFAChallengeTTL)}); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM mfa_challenges WHERE id = $1 FOR UPDATE`, held); err != nil {
		t.Fatal(err)
	}
	req := authd.PurgeRequest{LogsBefore: old.Add(-time.Hour), ExpiredBefore: storetest.Epoch, Now: storetest.Epoch, Batch: 10}
	done := make(chan error, 1)
	var res authd.PurgeResult
	go func() {
		var err error
		res, err = s.Purge(ctx, req)
		done <- err
	}()
	for waited := false; !waited; {
		select {
		case err := <-done:
			if err != nil || res.MFAChallenges != 1 || !slices.Equal(res.Deferred, []string{"mfa_challenges"}) {
				t.Fatalf("Purge while a flow holds one of two expired challenges = %+v, %v; want the other deleted, "+
					"and the held one said to be left", res, err)
			}
			waited = true
		case <-time.After(10 * time.Millisecond):
			var n int
			if err := s.Pool().QueryRow(ctx, storetest.LockWaits, "FROM mfa_challenges").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				tx.Rollback(ctx)
				<-done
				t.Fatal("the purge waits for a challenge a flow holds")
			}
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(ctx, req); err != nil || res.MFAChallenges != 1 || res.Deferred != nil {
		t.Errorf("Purge once the flow is done = %+v, %v; want the challenge it held deleted, nothing deferred", res, err)
	}
}

// TestPurgeLeavesACascadeInUse: SKIP LOCKED passes over the rows a flow
// holds, but a session's delete would cascade to its tokens: with one of
// them held, the session is left with it to the next run, rather than
// waited for (and perhaps deadlocked with the flow), or deleted with an
// uncounted token once the flow let it go.
func TestPurgeLeavesACascadeInUse(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	u := storetest.NewUser("purge-cascade@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	old := storetest.Epoch.Add(-48 * time.Hour)
	sess := &authd.Session{ID: authd.NewID(), UserID: u.ID, CreatedAt: old, LastUsedAt: old, ExpiresAt: old.Add(time.Hour)}
	tok := &authd.Token{ID: authd.NewID(), JTI: authd.NewID().String(), UserID: u.ID, SessionID: sess.ID,
		TokenType: authd.TokenRefresh, TokenValue: "cascade-digest", IssuedAt: old, ExpiresAt: old.Add(time.Hour), CreatedAt: old}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM jwt_tokens WHERE id = $1 FOR UPDATE`, tok.ID); err != nil {
		t.Fatal(err)
	}
	req := authd.PurgeRequest{LogsBefore: old.Add(-time.Hour), ExpiredBefore: storetest.Epoch, Now: storetest.Epoch, Batch: 10}
	guard, cancel := context.WithTimeout(ctx, time.Minute) // never answering is the failure
	defer cancel()
	// The session waits for its token, rather than try to delete it and
	// stop at the lock, or cascade to it uncounted once the flow is done.
	if res, err := s.Purge(guard, req); err != nil || res.Tokens != 0 || res.Sessions != 0 ||
		!slices.Equal(res.Deferred, []string{"jwt_tokens"}) {
		t.Fatalf("Purge while a flow holds the session's token = %+v, %v; want both left, the token said to be", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(ctx, req); err != nil || res.Tokens != 1 || res.Sessions != 1 || res.Deferred != nil {
		t.Errorf("Purge once the flow is done = %+v, %v; want the token and the session deleted, nothing deferred", res, err)
	}
}

// TestSchemaChangedUnderTheStore: a statement that meets a schema other than
// the one it was written for (a migration run under a serving instance) is
// an outage with Retry-After and a hint, not an internal error (500).
func TestSchemaChangedUnderTheStore(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	u := storetest.NewUser("moved@example.org")
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, u.ID); err != nil { // its statement prepared and cached
		t.Fatal(err)
	}
	for _, change := range []string{`ALTER TABLE users ALTER COLUMN lock_reason TYPE text`, // the cached plan's result changes
		`ALTER TABLE users RENAME COLUMN lock_reason TO lock_reason_gone`, `ALTER TABLE users RENAME TO users_gone`} {
		if _, err := s.Pool().Exec(ctx, change); err != nil {
			t.Fatal(err)
		}
		_, err := s.User(ctx, u.ID)
		if authd.ErrorCode(err) != authd.EUnavailable || authd.RetryAfterSeconds(err) < 1 || authd.ErrorHint(err) == "" {
			t.Errorf("after %s: User = %v; want unavailable, with Retry-After and a hint", change, err)
		}
	}
}
