package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/migrate"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/storetest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// openAt opens the store at path, not migrated; it closes with the test.
func openAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func open(t *testing.T) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "authd.db"))
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

// declared is the SQLite type each neutral kind is declared as.
func declared(kind string) string {
	switch {
	case kind == "uuid", kind == "json", strings.HasPrefix(kind, "enum:"):
		return "TEXT"
	case kind == "varchar":
		return "VARCHAR"
	case kind == "bigint":
		return "INTEGER"
	}
	return strings.ToUpper(kind)
}

func TestSchemaMatchesSeed(t *testing.T) {
	t.Parallel()
	s := open(t)
	want := storetest.SeedSchema
	want.Columns = slices.Clone(want.Columns)
	for i := range want.Columns {
		want.Columns[i].Kind = declared(want.Columns[i].Kind)
		want.Columns[i].Extra = false
	}
	// Migration 28 redefines one of the seed's indexes on SQLite alone,
	want.Indexes = slices.Clone(want.Indexes)
	i := slices.IndexFunc(want.Indexes, func(x storetest.Index) bool { return x.Name == "ix_security_logs_user_id" })
	if i < 0 {
		t.Fatal("the seed's schema has no ix_security_logs_user_id")
	}
	want.Indexes[i].Columns = "user_id,timestamp,id"
	// And migration 30 another.
	i = slices.IndexFunc(want.Indexes, func(x storetest.Index) bool { return x.Name == "ix_users_account_status" })
	if i < 0 {
		t.Fatal("the seed's schema has no ix_users_account_status")
	}
	want.Indexes[i].Columns = "account_status,created_at,id"
	// Migration 29 adds a table (PostgreSQL's 31 the same).
	want.Columns = append(want.Columns, storetest.Column{Table: "erasures_pending", Name: "user_id", Kind: "TEXT", PK: true})
	want.ForeignKeys = append(slices.Clone(want.ForeignKeys), storetest.ForeignKey{Table: "erasures_pending", Column: "user_id",
		RefTable: "users", RefColumn: "id", OnDelete: "CASCADE"})
	sortSchema(&want)
	if diff := cmp.Diff(want, catalog(t, s)); diff != "" {
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

// catalog reads the schema through SQLite's pragmas.
func catalog(t *testing.T, s *sqlite.Store) storetest.Schema {
	t.Helper()
	db := s.DB()
	var out storetest.Schema
	var tables []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()

	for _, table := range tables {
		rows, err := db.Query(`SELECT name, type, "notnull", pk FROM pragma_table_info(?)`, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			c := storetest.Column{Table: table}
			var notNull, pk int
			if err := rows.Scan(&c.Name, &c.Kind, &notNull, &pk); err != nil {
				t.Fatal(err)
			}
			c.Kind, _, _ = strings.Cut(c.Kind, "(") // VARCHAR(254) → VARCHAR
			c.Nullable, c.PK = notNull == 0, pk > 0
			out.Columns = append(out.Columns, c)
		}
		rows.Close()

		rows, err = db.Query(`SELECT l.name, l."unique", group_concat(i.name, ',')
			FROM pragma_index_list(?) l, pragma_index_info(l.name) i
			WHERE l.origin = 'c' GROUP BY l.name, l."unique" ORDER BY l.name`, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			ix := storetest.Index{Table: table}
			if err := rows.Scan(&ix.Name, &ix.Unique, &ix.Columns); err != nil {
				t.Fatal(err)
			}
			out.Indexes = append(out.Indexes, ix)
		}
		rows.Close()

		rows, err = db.Query(`SELECT "from", "table", "to", on_delete FROM pragma_foreign_key_list(?)`, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			fk := storetest.ForeignKey{Table: table}
			if err := rows.Scan(&fk.Column, &fk.RefTable, &fk.RefColumn, &fk.OnDelete); err != nil {
				t.Fatal(err)
			}
			out.ForeignKeys = append(out.ForeignKeys, fk)
		}
		rows.Close()
	}
	sortSchema(&out)
	return out
}

// TestNullableJSONChecksPassNull: every check of a nullable JSON column
// lets NULL pass in so many words, not through json_valid(NULL), which is
// NULL only from SQLite 3.45 on: in older ones (Debian 12's sqlite3 shell)
// such rows failed integrity_check and a .dump restored without them.
func TestNullableJSONChecksPassNull(t *testing.T) {
	rows, err := open(t).DB().Query(`SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE '%json_valid%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	checked := 0
	for rows.Next() {
		var table, sql string
		if err := rows.Scan(&table, &sql); err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`json_valid\((\w+)\)`).FindAllStringSubmatch(sql, -1) {
			col := m[1]
			def := regexp.MustCompile(`(?m)^\s*"?` + col + `"?\s+\w+.*$`).FindString(sql)
			if def == "" {
				t.Errorf("%s.%s: no column definition found", table, col)
				continue
			}
			checked++
			if !strings.Contains(def, "NOT NULL") && !strings.Contains(sql, col+" IS NULL OR") {
				t.Errorf("%s.%s may be NULL, and its check does not say NULL passes:\n%s", table, col, def)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if checked < 4 { // security_logs, mail_outbox, and oauth_clients' two lists
		t.Errorf("%d JSON columns checked, want at least 4", checked)
	}
}

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
	empty := catalog(t, s)
	if len(empty.Columns)+len(empty.Indexes)+len(empty.ForeignKeys) != 0 {
		t.Errorf("schema left after down to zero: %+v", empty)
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
	if _, err := m.Redo(ctx); err != nil {
		t.Errorf("redo: %v", err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready at head: %v", err)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nested", "dir", "authd.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("database file mode %o, want 600", perm)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "not.db")
	if err := os.WriteFile(notDB, []byte("this is not a database, but it is long enough to be read as a header"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", notDB} {
		s, err := sqlite.Open(context.Background(), path)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
			continue
		}
		var e *authd.Error
		if code := authd.ErrorCode(err); code == authd.EInternal || !asError(err, &e) || e.Hint == "" {
			t.Errorf("Open(%q) = %v, want a domain error with a hint", path, err)
		}
	}
}

// TestOpenTakesThePathAsItIs: a path with what a URI filename would read
// otherwise (%HH, ?, #, two leading slashes: an authority) opens that very
// file, in that very directory.
func TestOpenTakesThePathAsItIs(t *testing.T) {
	t.Parallel()
	var paths []string
	for _, name := range []string{"d%41b", "a?b", "c#d", "e%3Ff"} {
		paths = append(paths, filepath.Join(t.TempDir(), name, "authd.db"))
	}
	paths = append(paths, "/"+filepath.Join(t.TempDir(), "authd.db")) // sqlite:////abs
	for _, path := range paths {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Errorf("Open(%q): %v", path, err)
			continue
		}
		s.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("Open(%q) made no file there: %v", path, err)
		}
	}
}

// TestOpenRelativePath: a relative path is relative to the working
// directory. Not parallel: it changes the working directory.
func TestOpenRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := sqlite.Open(context.Background(), filepath.Join("data", "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "data", "authd.db")); err != nil {
		t.Errorf("Open of a relative path made no file under the working directory: %v", err)
	}
}

func asError(err error, target **authd.Error) bool { return errors.As(err, target) }

// TestLockReasonBackfill: migration 3 gives existing locks their reason.
func TestLockReasonBackfill(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	storetest.LockReasonBackfill(t, s, s.Migrator(), func(sql string) error { _, err := s.DB().ExecContext(ctx, sql); return err })
}

// TestEmailNFCBackfill: migration 12 composes the addresses stored before.
func TestEmailNFCBackfill(t *testing.T) {
	s := open(t)
	storetest.EmailNFCBackfill(t, s, s.Migrator())
}

// TestMigrationCommandsTakeTurns: migration commands of several processes
// on one database at once (authd migrate up twice, a serve and a seed on a
// new default database) take turns: each migration is applied once, every
// command ends well, and the schema is whole. Without the turns two read
// the applied versions alike and applied the same ones, a table rebuild
// again after later migrations, undoing them.
func TestMigrationCommandsTakeTurns(t *testing.T) {
	ctx := context.Background()
	for round := range 4 {
		path := filepath.Join(t.TempDir(), "authd.db")
		stores := make([]*sqlite.Store, 4) // a connection pool each, as processes have
		for i := range stores {
			s := openAt(t, path)
			stores[i] = s
		}
		errs := make([]error, len(stores))
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() { _, errs[i] = s.Migrator().Up(ctx) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, command %d: %v", round, i, err)
			}
		}
		var versions, distinct int
		if err := stores[0].DB().QueryRowContext(ctx,
			`SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&versions, &distinct); err != nil {
			t.Fatal(err)
		}
		_, head, err := stores[0].Migrator().Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if versions != distinct || int64(distinct) != head {
			t.Fatalf("round %d: %d migrations applied, %d distinct; want each of the %d once", round, versions, distinct, head)
		}
	}
}

// TestMigrationWaitsForTheLockFile: a migration command waits while
// another process holds the lock beside the database (its file name and
// "-migrate-lock"), says so once a second has passed, and runs once the
// holder lets go.
func TestMigrationWaitsForTheLockFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "authd.db")
	s := openAt(t, path)
	holder, err := sql.Open("sqlite", path+"-migrate-lock")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	s.Migrator().OnLockWait(func() { close(waiting) })
	done := make(chan error, 1)
	go func() { _, err := s.Migrator().Up(ctx); done <- err }()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("migrated while another held the lock (%v)", err)
	}
	if current, _, _ := s.Migrator().Version(ctx); current != 0 {
		t.Fatalf("version %d while waiting", current)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("once the lock was let go: %v", err)
	}

	// At head, Up takes no lock: the commands that run it to be sure do not
	// wait behind another's migration, nor make the lock file.
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	s.Migrator().OnLockWait(func() { t.Error("Up at head waited for the lock") })
	bounded, cancel := context.WithTimeout(ctx, 2*migrate.LockNotice)
	defer cancel()
	if rs, err := s.Migrator().Up(bounded); err != nil || len(rs) != 0 {
		t.Errorf("Up at head while another holds the lock: %v, %v; want nothing, at once", rs, err)
	}
	conn.ExecContext(ctx, "ROLLBACK")
}
