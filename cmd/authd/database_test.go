package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
// as PostgreSQL is, and left as it is. The default one still catches up.
func TestServeRefusesChosenSQLiteBehind(t *testing.T) {
	t.Parallel()
	chosen := chosenSQLite(t, filepath.Join(t.TempDir(), "chosen.db"))
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

	_, was := behind(chosen)
	for _, args := range [][]string{{"serve"}, {"admin", "users", "list"}} {
		code, stderr := runRefused(t, chosen, args...)
		if code != exitFailure || !strings.Contains(stderr, "database schema is at version") ||
			!strings.HasSuffix(stderr, "hint: run `authd migrate up` to apply the pending migrations\n") {
			t.Errorf("authd %s on a chosen SQLite database behind: exit %d, stderr %q; want 1, naming `authd migrate up`",
				strings.Join(args, " "), code, stderr)
		}
	}
	if _, now, _ := runCLI(t, chosen, "migrate", "version"); now != was {
		t.Errorf("the refused database is at version %s, want it left at %s", now, was)
	}

	head, _ := behind(def)
	if code, _, stderr := runCLI(t, def, "admin", "users", "list"); code != exitOK {
		t.Errorf("admin users list on the default database behind: exit %d, stderr %q; want it migrated", code, stderr)
	}
	if _, now, _ := runCLI(t, def, "migrate", "version"); now != head {
		t.Errorf("the default database is at version %s, want it migrated to %s", now, head)
	}
}

// TestDefaultDatabase: the zero-set-up database is the data directory's
// authd.db, or DATABASE_URL's default when AUTHD_DATA_DIR alone is set, so
// that moving the data directory does not make the default a chosen one.
func TestDefaultDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, true},
		{map[string]string{"DATABASE_URL": "sqlite://authd-data//authd.db"}, true},
		{map[string]string{"AUTHD_DATA_DIR": "/srv/authd"}, true},
		{map[string]string{"AUTHD_DATA_DIR": "/srv/authd", "DATABASE_URL": "sqlite:///srv/authd/authd.db"}, true},
		{map[string]string{"AUTHD_DATA_DIR": "/srv/authd", "DATABASE_URL": "sqlite:///srv/authd/other.db"}, false},
		{map[string]string{"DATABASE_URL": "sqlite://./authd-data/other.db"}, false},
		{map[string]string{"DATABASE_URL": "postgres://localhost/authd"}, false},
	}
	for _, tt := range tests {
		if got := configOf(t, tt.env).defaultDatabase(); got != tt.want {
			t.Errorf("defaultDatabase() with %v = %v, want %v", tt.env, got, tt.want)
		}
	}
}
