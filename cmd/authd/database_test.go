package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/migrate"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/storetest"
)

// chosenSQLite is the environment of an SQLite database an operator chose,
// path, beside the data directory's default one.
func chosenSQLite(t *testing.T, path string) map[string]string {
	env := sqliteEnv(t)
	env["DATABASE_URL"] = "sqlite://" + path
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	return env
}

// runRefused runs a command expected to fail at once; serve started
// wrongly is stopped after a while rather than hang the test.
func runRefused(t *testing.T, env map[string]string, args ...string) (code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, _, stderr = runCLIContext(ctx, t, env, args...)
	return code, stderr
}

// TestChosenSQLiteIsAFile: a DATABASE_URL naming a directory or a device
// (sqlite:///dev/null) is refused as not a file, by every command, where
// SQLite would call it a disk I/O error.
func TestChosenSQLiteIsAFile(t *testing.T) {
	t.Parallel()
	for _, path := range []string{t.TempDir(), os.DevNull} {
		for _, args := range [][]string{{"migrate", "up"}, {"admin", "users", "list"}, {"serve"}} {
			code, stderr := runRefused(t, chosenSQLite(t, path), args...)
			want := "authd " + args[0] + ": " + path + " (DATABASE_URL) is not a file: a SQLite database is a regular file\nhint: check DATABASE_URL\n"
			if code != exitFailure || stderr != want {
				t.Errorf("authd %s on %s: exit %d, stderr %q; want 1 and %q", strings.Join(args, " "), path, code, stderr, want)
			}
		}
	}
}

// TestChosenSQLiteIsNeverCreatedByAccident: a DATABASE_URL naming an SQLite
// file that does not exist (a typo, a volume not mounted) is refused by
// every command but `migrate up`, which creates the file but never its
// directory. Only the default database appears by itself.
func TestChosenSQLiteIsNeverCreatedByAccident(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing", "dir", "x.db"), filepath.Join(dir, "x.db")} {
		env := chosenSQLite(t, path)
		for _, args := range [][]string{
			{"admin", "users", "list"},
			{"admin", "users", "lock", "a@b.org"},
			{"purge"},
			{"clients", "list"},
			{"seed", "--force"},
			{"migrate", "status"},
			{"migrate", "version"},
			{"migrate", "check"},
			{"migrate", "down"},
			{"serve"},
		} {
			code, stderr := runRefused(t, env, args...)
			want := "authd " + args[0] + ": no SQLite database at " + path + " (DATABASE_URL)\n" +
				"hint: check DATABASE_URL, or create the database with `authd migrate up`\n"
			if code != exitFailure || stderr != want {
				t.Errorf("authd %s on a missing %s: exit %d, stderr %q; want 1 and %q", strings.Join(args, " "), path, code, stderr, want)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the commands left %v in %s; want nothing created", entries, dir)
	}

	missingDir := filepath.Join(dir, "missing", "dir", "x.db")
	code, _, stderr := runCLI(t, chosenSQLite(t, missingDir), "migrate", "up")
	if code != exitFailure || !strings.HasPrefix(stderr, "authd migrate: no directory "+filepath.Dir(missingDir)+" ") {
		t.Errorf("migrate up into a missing directory: exit %d, stderr %q; want 1, naming the directory", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("migrate up created the directory of an SQLite database an operator chose")
	}

	env := chosenSQLite(t, filepath.Join(dir, "x.db"))
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up of a new file: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, env, "admin", "users", "list"); code != exitOK {
		t.Errorf("admin users list after migrate up: exit %d, stderr %q", code, stderr)
	}
}

// TestServeRefusesChosenSQLiteBehind: SPEC §8 lets only the default SQLite
// database migrate itself; one an operator chose is refused when behind,
// as PostgreSQL is, and left as it is, even when DATABASE_URL names the
// default's own file. The default one (DATABASE_URL unset) still catches up.
func TestServeRefusesChosenSQLiteBehind(t *testing.T) {
	t.Parallel()
	named := sqliteEnv(t)
	named["DATABASE_URL"] = "sqlite://" + filepath.Join(named["AUTHD_DATA_DIR"], "authd.db")
	named["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	def := sqliteEnv(t)
	def["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	behind := func(env map[string]string) (head, now string) {
		t.Helper()
		runCLI(t, env, "migrate", "up")
		_, head, _ = runCLI(t, env, "migrate", "version")
		runCLI(t, env, "migrate", "down")
		_, now, _ = runCLI(t, env, "migrate", "version")
		if now == head {
			t.Fatalf("migrate down left the schema at %s", head)
		}
		return head, now
	}

	for what, chosen := range map[string]map[string]string{
		"a chosen SQLite database":                 chosenSQLite(t, filepath.Join(t.TempDir(), "chosen.db")),
		"the default's file named in DATABASE_URL": named,
	} {
		_, was := behind(chosen)
		for _, args := range [][]string{{"serve"}, {"admin", "users", "list"}} {
			code, stderr := runRefused(t, chosen, args...)
			if code != exitFailure || !strings.HasPrefix(stderr, "authd "+args[0]+": database schema is at version ") ||
				!strings.HasSuffix(stderr, "hint: run `authd migrate up` to apply the pending migrations\n") {
				t.Errorf("authd %s on %s behind: exit %d, stderr %q; want 1, naming `authd migrate up`",
					strings.Join(args, " "), what, code, stderr)
			}
		}
		if _, now, _ := runCLI(t, chosen, "migrate", "version"); now != was {
			t.Errorf("%s, refused, is at version %s, want it left at %s", what, now, was)
		}
	}

	head, _ := behind(def)
	if code, _, stderr := runCLI(t, def, "admin", "users", "list"); code != exitOK {
		t.Errorf("admin users list on the default database behind: exit %d, stderr %q; want it migrated", code, stderr)
	}
	if _, now, _ := runCLI(t, def, "migrate", "version"); now != head {
		t.Errorf("the default database is at version %s, want it migrated to %s", now, head)
	}
}

// TestDefaultDatabase: the zero-set-up database is the one DATABASE_URL
// unset means, $AUTHD_DATA_DIR/authd.db, wherever the data directory is. A
// DATABASE_URL that is set is an operator's choice, even naming that file.
func TestDefaultDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		url  string
		want bool
	}{
		{map[string]string{}, "sqlite://" + filepath.Join("authd-data", "authd.db"), true},
		{map[string]string{"DATABASE_URL": ""}, "sqlite://" + filepath.Join("authd-data", "authd.db"), true}, // empty is unset (.env.example)
		{map[string]string{"AUTHD_DATA_DIR": "/srv/authd"}, "sqlite://" + filepath.Join("/srv/authd", "authd.db"), true},
		{map[string]string{"DATABASE_URL": "sqlite://./authd-data/authd.db"}, "sqlite://./authd-data/authd.db", false},
		{map[string]string{"DATABASE_URL": "sqlite://authd-data//authd.db"}, "sqlite://authd-data//authd.db", false},
		{map[string]string{"AUTHD_DATA_DIR": "/srv/authd", "DATABASE_URL": "sqlite:///srv/authd/authd.db"}, "sqlite:///srv/authd/authd.db", false},
		{map[string]string{"AUTHD_DATA_DIR": "/srv/authd", "DATABASE_URL": "sqlite://./authd-data/authd.db"}, "sqlite://./authd-data/authd.db", false},
		{map[string]string{"DATABASE_URL": "postgres://localhost/authd"}, "postgres://localhost/authd", false},
	}
	for _, tt := range tests {
		cfg := configOf(t, tt.env)
		if cfg.DatabaseURL != tt.url || cfg.DefaultDatabase != tt.want {
			t.Errorf("with %v: DatabaseURL %q, DefaultDatabase %v; want %q, %v", tt.env, cfg.DatabaseURL, cfg.DefaultDatabase, tt.url, tt.want)
		}
	}
}

// TestCommandsOnNoDatabase: a command with something to act on (a user, a
// client, retention) run where no server ran — another directory, a data
// directory mistyped — is refused, and makes no empty database that would
// answer "no such user"; making the first client, like serve, creates it.
func TestCommandsOnNoDatabase(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"admin", "users", "show", "alice@example.org"}, {"admin", "logs"},
		{"clients", "list"}, {"clients", "delete", "app", "--yes"}, {"purge"}} {
		env := sqliteEnv(t)
		code, _, stderr := runCLI(t, env, args...)
		path := filepath.Join(env["AUTHD_DATA_DIR"], "authd.db")
		if code != exitFailure || !strings.Contains(stderr, "no database at "+path) || !strings.Contains(stderr, "hint:") {
			t.Errorf("authd %s in an empty data directory: exit %d, stderr %q; want 1, the database named", strings.Join(args, " "), code, stderr)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("authd %s made %s: %v", strings.Join(args, " "), path, err)
		}
	}
	env := sqliteEnv(t)
	if code, _, stderr := runCLI(t, env, "clients", "create", "--name", "App", "--type", "public",
		"--redirect-uri", "https://app.example.org/cb"); code != exitOK {
		t.Errorf("the first client before any server: exit %d, %s", code, stderr)
	}
}

// TestDefaultDatabaseMigrationTold: the default database, which commands
// and serve migrate without being asked, is not moved without a word: its
// creation and every migration are told (stderr, serve's log), a database
// at head is not.
func TestDefaultDatabaseMigrationTold(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	path := filepath.Join(env["AUTHD_DATA_DIR"], "authd.db")
	s := startServe(t, env)
	if code := s.stop(t); code != exitOK || !strings.Contains(s.stderr.String(), "created the SQLite database "+path+" (DATABASE_URL unset") {
		t.Errorf("serve's first start: exit %d, log %s; want the database's creation told", code, s.stderr.String())
	}
	if code, _, stderr := runCLI(t, env, "clients", "list"); code != exitOK || strings.Contains(stderr, "SQLite database") {
		t.Errorf("a command on a database at head: exit %d, stderr %q; want nothing told", code, stderr)
	}
	if code, _, stderr := runCLI(t, env, "migrate", "down"); code != exitOK {
		t.Fatalf("migrate down: %s", stderr)
	}
	code, _, stderr := runCLI(t, env, "clients", "list")
	m := regexp.MustCompile(`^migrated the SQLite database (.+) \(DATABASE_URL unset: \$AUTHD_DATA_DIR/authd.db\) from schema version (\d+) to (\d+)\n$`).FindStringSubmatch(stderr)
	if code != exitOK || m == nil || m[1] != path || fmt.Sprint(atoi(t, m[2])+1) != m[3] {
		t.Errorf("a command on a database one migration behind: exit %d, stderr %q; want the one migration told", code, stderr)
	}
}

// TestDefaultDatabaseLeftBehind: DATABASE_URL's default used to be
// ./authd-data/authd.db whatever AUTHD_DATA_DIR said; now that it follows
// the data directory, a new, empty default database is not started while
// the old one is there (its accounts would seem gone). Not parallel: it
// changes the working directory.
func TestDefaultDatabaseLeftBehind(t *testing.T) {
	t.Chdir(t.TempDir())
	if code, _, stderr := runCLI(t, map[string]string{}, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up of ./authd-data/authd.db: exit %d, stderr %q", code, stderr)
	}
	moved := sqliteEnv(t)
	moved["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	path := filepath.Join(moved["AUTHD_DATA_DIR"], "authd.db")
	for _, args := range [][]string{{"serve"}, {"seed"}, {"admin", "users", "list"}} {
		code, stderr := runRefused(t, moved, args...)
		if code != exitFailure || !strings.HasPrefix(stderr, "authd "+args[0]+": no SQLite database at "+path+" ") ||
			!strings.Contains(stderr, "hint: move ./authd-data/authd.db to "+path+", or set DATABASE_URL=sqlite://./authd-data/authd.db") ||
			!strings.Contains(stderr, "for a new database at "+path+" instead, set DATABASE_URL=sqlite://"+path) {
			t.Errorf("authd %s with the old default database left behind: exit %d, stderr %q; want 1, naming both files and every way out",
				strings.Join(args, " "), code, stderr)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a refused command created %s", path)
	}
	// Either way out works: the old file named in DATABASE_URL, or the file
	// moved to the data directory.
	old := map[string]string{"DATABASE_URL": "sqlite://./authd-data/authd.db", "AUTHD_DATA_DIR": moved["AUTHD_DATA_DIR"]}
	if code, _, stderr := runCLI(t, old, "admin", "users", "list"); code != exitOK {
		t.Errorf("admin users list on the old file named in DATABASE_URL: exit %d, stderr %q", code, stderr)
	}
	if err := os.Rename(filepath.Join("authd-data", "authd.db"), path); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, moved, "admin", "users", "list"); code != exitOK {
		t.Errorf("admin users list once the file is moved: exit %d, stderr %q", code, stderr)
	}
}

// TestMigrateDownPastTheFirst: `migrate down N` with more than are applied
// is a typo, refused with how many there are, and rolls nothing back (it
// dropped every table).
func TestMigrateDownPastTheFirst(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	code, _, stderr := runCLI(t, env, "migrate", "down", "100")
	if code != exitFailure || !strings.Contains(stderr, "only ") || !strings.Contains(stderr, "hint: ") {
		t.Errorf("migrate down 100: exit %d, %s; want refused, how many are applied, and a hint", code, stderr)
	}
	if code, stdout, stderr := runCLI(t, env, "migrate", "up"); code != exitOK || !strings.Contains(stdout, "already at head") {
		t.Errorf("migrate up after the refused down: exit %d, %s%s; want already at head", code, stdout, stderr)
	}
}

// TestCommandsWaitForLocksBounded: a command waits for a lock another
// PostgreSQL session holds (a transaction left open) for commandLockWait at
// most, and then fails in one line with a hint instead of hanging; serve's
// connections carry serveLockWait; a lock_timeout the connection has
// already (the database's, here) wins.
func TestCommandsWaitForLocksBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	for name, openIt := range map[string]func() (database, error){
		"15s": func() (database, error) { return openDatabase(ctx, cfg, atHead, nil) },
		"10s": func() (database, error) { return openServing(ctx, cfg, slog.New(slog.DiscardHandler)) },
	} {
		db, err := openIt()
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = db.(*postgres.Store).Pool().QueryRow(ctx, `SHOW lock_timeout`).Scan(&got)
		db.Close()
		if err != nil || got != name {
			t.Errorf("lock_timeout = %q, %v; want %s", got, err, name)
		}
	}

	store, err := postgres.Open(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	u := storetest.NewUser("held@example.org")
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, u.ID); err != nil {
		t.Fatal(err)
	}
	// One set to no bound wins too (an operator who lets a migration wait).
	unbounded := mustParse(t, env["DATABASE_URL"])
	q := unbounded.Query()
	q.Set("lock_timeout", "0")
	unbounded.RawQuery = q.Encode()
	cfg.DatabaseURL = unbounded.String()
	db, err := openDatabase(ctx, cfg, atHead, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	err = db.(*postgres.Store).Pool().QueryRow(ctx, `SHOW lock_timeout`).Scan(&got)
	db.Close()
	if err != nil || got != "0" {
		t.Errorf("lock_timeout with lock_timeout=0 in DATABASE_URL: %q, %v; want 0", got, err)
	}
	// A lock_timeout the connection has already (here the database's) wins.
	dbName := strings.TrimPrefix(mustParse(t, env["DATABASE_URL"]).Path, "/")
	if _, err := store.Pool().Exec(ctx, `ALTER DATABASE `+dbName+` SET lock_timeout = '200ms'`); err != nil {
		t.Fatal(err)
	}
	guard, cancel := context.WithTimeout(ctx, time.Minute) // hanging is the failure
	defer cancel()
	start := time.Now()
	code, _, stderr := runCLIContext(guard, t, env, "admin", "users", "lock", "held@example.org")
	if code != exitFailure || !strings.Contains(stderr, "lock timeout") ||
		!strings.Contains(stderr, "hint: another database session holds a lock") || strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
		t.Errorf("a command waiting on a held row: exit %d, stderr %q; want exit 1, the lock named and a hint", code, stderr)
	}
	if waited := time.Since(start); waited >= commandLockWait {
		t.Errorf("the command waited %s: the database's lock_timeout of 200ms did not win over %s", waited, commandLockWait)
	}

	// serve's request behind the held row answers 503 with Retry-After, not hang.
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	srv := startServe(t, env)
	resp, err := http.Post(srv.url+"/v1/auth/login", "application/json",
		strings.NewReader(`{"email":"held@example.org","password":"a wrong but long passphrase"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a login behind the held row: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	srv.stop(t)

	// A migration that cannot have its table gives up alike, and can be run
	// again. (Migration 27 builds indexes on security_logs, CONCURRENTLY:
	// its wait for the table is bounded alike; 28 to 30 change nothing here,
	// 31 adds a table.)
	tx.Rollback(ctx)
	if code, _, stderr := runCLI(t, env, "migrate", "down", "5"); code != exitOK {
		t.Fatalf("migrate down 5: %s", stderr)
	}
	tx, err = store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE security_logs IN SHARE MODE`); err != nil { // migration 27 indexes it
		t.Fatal(err)
	}
	code, _, stderr = runCLIContext(guard, t, env, "migrate", "up")
	if code != exitFailure || !strings.Contains(stderr, "lock timeout") || !strings.Contains(stderr, "running it again is safe") {
		t.Errorf("migrate up while its table is held: exit %d, stderr %q; want exit 1 with the migration's hint", code, stderr)
	}
	tx.Rollback(ctx)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Errorf("migrate up once the table is free: exit %d, %s", code, stderr)
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestMigrateTellsOfAWaitForTheLock: a migration command that finds
// another holding the command lock says so on stderr while it waits, and
// gives up with the lock's error when its context ends.
func TestMigrateTellsOfAWaitForTheLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	store, err := postgres.Open(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	conn, err := store.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// As another `authd migrate` would.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, postgres.MigrationCommandLockID); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, migrate.LockNotice+2*time.Second)
	defer cancel()
	code, _, stderr := runCLIContext(wait, t, env, "migrate", "down")
	if code != exitFailure || !strings.Contains(stderr, "waiting for another `authd migrate` command to finish") ||
		!strings.Contains(stderr, "could not take the migration command lock") {
		t.Errorf("migrate down while another holds the lock: exit %d, stderr %q", code, stderr)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, postgres.MigrationCommandLockID); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr = runCLI(t, env, "migrate", "down"); code != exitOK {
		t.Errorf("down once the lock is free: exit %d, stderr %q", code, stderr)
	}
}

// TestFailedMigrationHinted: a migration that fails (a database holding a
// table authd did not make) is told with what to do, as every failure is.
func TestFailedMigrationHinted(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`CREATE TABLE users (id INTEGER)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	env := sqliteEnv(t)
	env["DATABASE_URL"] = "sqlite://" + path
	code, _, stderr := runCLI(t, env, "migrate", "up")
	if code != exitFailure || !strings.Contains(stderr, "already exists") ||
		!strings.Contains(stderr, "hint: the migration that failed is not recorded as applied") {
		t.Errorf("migrate up on a database with its own users table: exit %d, %q; want 1 with a hint", code, stderr)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
