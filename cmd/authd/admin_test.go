package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// TestAdminCLIReadsAreAudited runs each admin read of personal data and
// checks the admin_action row it leaves: the operator, what was read, with
// which filters, and about whom.
func TestAdminCLIReadsAreAudited(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{"sqlite": sqliteEnv(t), "postgres": postgresEnv(t)} {
		t.Run(name, func(t *testing.T) {
			env["USER"] = "auditor"
			ctx := context.Background()
			db, u := migratedWithUser(t, env, "watched@example.org")
			if err := db.CreateSecurityLog(ctx, authd.NewSecurityLog(storetest.Epoch, authd.EventLoginSuccess,
				authd.ResultSuccess, u.ID, "", "", "", nil)); err != nil {
				t.Fatal(err)
			}

			reads := []struct {
				args    []string
				details map[string]any
				target  bool
			}{
				{[]string{"admin", "users", "list", "--email", "watched", "--status", "active"},
					map[string]any{"action": "list_users", "count": float64(1),
						"filters": map[string]any{"email_filter": true, "status": "active"}}, false},
				{[]string{"admin", "users", "show", "watched@example.org", "--json"},
					map[string]any{"action": "show_user"}, true},
				{[]string{"admin", "logs", "--user", "watched@example.org", "--event", "login_success"},
					map[string]any{"action": "list_security_logs", "count": float64(1),
						"filters": map[string]any{"user_id": u.ID.String(), "event_type": "login_success"}}, true},
				{[]string{"admin", "mail", "list", "--dead"},
					map[string]any{"action": "list_mail", "count": float64(0), "filters": map[string]any{"state": "dead"}}, false},
			}
			for i, read := range reads {
				if code, stdout, stderr := runCLI(t, env, read.args...); code != exitOK {
					t.Fatalf("authd %s: exit %d, %s %s", strings.Join(read.args, " "), code, stdout, stderr)
				}
				rows, err := db.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: authd.MaxListLimit})
				if err != nil {
					t.Fatal(err)
				}
				var own, copies []*authd.SecurityLog
				for _, l := range rows {
					if l.UserID == uuid.Nil {
						own = append(own, l)
					} else {
						copies = append(copies, l)
					}
				}
				if len(own) != i+1 {
					t.Fatalf("authd %s: %d operator rows; want %d, one per read", strings.Join(read.args, " "), len(own), i+1)
				}
				if own[0].UserAgent != "authd admin (cli, auditor)" {
					t.Errorf("authd %s: the operator's row %+v; want it to name the operator", strings.Join(read.args, " "), own[0])
				}
				want := read.details
				if read.target {
					want["target_user_id"] = u.ID.String()
				}
				if diff := cmp.Diff(want, own[0].AdditionalContext); diff != "" {
					t.Errorf("authd %s: context (-want +got):\n%s", strings.Join(read.args, " "), diff)
				}
				if read.target && (len(copies) == 0 || copies[0].UserID != u.ID || copies[0].UserAgent != "" ||
					copies[0].AdditionalContext["action"] != read.details["action"]) {
					t.Errorf("authd %s: the user's rows %+v; want a copy without the operator's client",
						strings.Join(read.args, " "), copies)
				}
			}
		})
	}
}

// migratedWithUser migrates the database of env, opens it (closed at the
// end of the test) and creates a user with the email.
func migratedWithUser(t *testing.T, env map[string]string, email string) (database, *authd.User) {
	t.Helper()
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	db, err := openDatabase(context.Background(), configOf(t, env), atHead, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	u := storetest.NewUser(email)
	if err := db.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return db, u
}

// TestAdminCLIUsage checks that a missing or extra word is named as such,
// not reported as an unknown command, and that --limit takes what the admin
// API takes.
func TestAdminCLIUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"admin"}, "authd admin: missing users, logs or mail"},
		{[]string{"admin", "users"}, "authd admin users: missing ACTION (delete, list, lock, mfa, reset-mfa, revoke-sessions, set-email, show or unlock)"},
		{[]string{"admin", "users", "set-email"}, "authd admin users set-email: missing USER (an id or email) and NEW_EMAIL"},
		{[]string{"admin", "users", "set-email", "a@b.org"}, "authd admin users set-email: missing NEW_EMAIL"},
		{[]string{"admin", "users", "set-email", "a@b.org", "c@d.org", "e@f.org"}, `authd admin users set-email: takes USER and NEW_EMAIL; unexpected "e@f.org"`},
		{[]string{"admin", "users", "set-email", "a@b.org", "nope"}, `authd admin users set-email: NEW_EMAIL "nope" is not an email address`},
		{[]string{"admin", "users", "show", "a@b.org", "--verified"}, "authd admin users show: --verified does not apply to admin users show"},
		{[]string{"admin", "users", "unlock", "a@b.org", "--json"}, "authd admin users unlock: --json does not apply to admin users unlock"},
		{[]string{"admin", "mail", "retry", "0197c0de-0000-7000-8000-000000000000", "--json"}, "authd admin mail retry: --json does not apply to admin mail retry"},
		{[]string{"admin", "users", "show"}, "authd admin users show: missing USER (an id or email)"},
		{[]string{"admin", "users", "lock", "--until", "2030-01-01T00:00:00Z"}, "authd admin users lock: missing USER (an id or email)"},
		{[]string{"admin", "users", "delete", "--yes"}, "authd admin users delete: missing USER (an id or email)"},
		{[]string{"admin", "users", "show", "a@b.org", "c@d.org"}, `authd admin users show: takes one USER; unexpected "c@d.org"`},
		{[]string{"admin", "users", "list", "a@b.org"}, `authd admin users list: takes no arguments; unexpected "a@b.org"`},
		{[]string{"admin", "users", "frobnicate", "a@b.org"}, `authd admin users: unknown action "frobnicate"`},
		{[]string{"admin", "users", "delete", "a@b.org"}, "authd admin users delete: erases the account for good; add --yes to confirm"},
		{[]string{"admin", "mail"}, "authd admin mail: missing ACTION (list or retry)"},
		{[]string{"admin", "mail", "retry"}, "authd admin mail retry: missing MAIL_ID (from `authd admin mail list --dead`)"},
		{[]string{"admin", "logs", "a@b.org"}, "authd admin logs: takes no arguments; filter with --user, --event, --result, --since and --until"},
		{[]string{"admin", "logs", "--until", "0001-01-01T00:00:00Z"},
			"authd admin logs: --until 0001-01-01T00:00:00Z is the zero time, which reads as no bound: give a later time, or leave it out"},
		{[]string{"admin", "logs", "--since", "2026-01-02T00:00:00Z", "--until", "2026-01-02T00:00:00Z"},
			"authd admin logs: --until must be after --since"},
		{[]string{"admin", "frobnicate"}, `authd admin: unknown admin command "frobnicate"`},
		{[]string{"clients", "show"}, "authd clients show: missing CLIENT_ID (from `authd clients list`)"},
		// The admin API answers 400 to limit=0 and limit=201 alike.
		{[]string{"admin", "users", "list", "--limit", "0"}, "authd admin: --limit must be from 1 to 200"},
		{[]string{"admin", "logs", "--limit", "-1"}, "authd admin: --limit must be from 1 to 200"},
		{[]string{"admin", "mail", "list", "--limit", "201"}, "authd admin: --limit must be from 1 to 200"},
	}
	env := sqliteEnv(t) // where a command that wrongly runs would write
	for _, tt := range tests {
		code, _, stderr := runCLI(t, env, tt.args...)
		if want := tt.want + "\nhint: run `authd " + tt.args[0] + " --help`\n"; code != exitUsage || stderr != want {
			t.Errorf("authd %s: exit %d, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, stderr, want)
		}
	}
}

// TestAdminLockUntilZero: --until at the zero time is refused, as the admin
// API refuses it: the service reads the zero time as "no end", so it would
// lock for good where a time in the past was meant.
func TestAdminLockUntilZero(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	db, u := migratedWithUser(t, env, "zero@example.org")
	code, _, stderr := runCLI(t, env, "admin", "users", "lock", u.Email, "--until", "0001-01-01T00:00:00Z")
	if code != exitUsage || !strings.Contains(stderr, "--until must be in the future") {
		t.Errorf("lock --until 0001-01-01: exit %d, %q; want a usage error", code, stderr)
	}
	if got, err := db.User(context.Background(), u.ID); err != nil || got.AccountStatus != authd.StatusActive {
		t.Errorf("after the refused lock: %+v, %v; want the account untouched", got, err)
	}
}

// TestServiceErrorsTold: an error of the service is told as one line that
// says what is wrong, the field's message under its flag's name, plus a
// hint; an invalid value is a usage error.
func TestServiceErrorsTold(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	fresh := sqliteEnv(t)
	migratedWithUser(t, env, "told@example.org")
	tests := []struct {
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{env, []string{"admin", "users", "lock", "told@example.org", "--until", "2020-01-01T00:00:00Z"}, exitUsage,
			"authd admin users lock: --until must be in the future\nhint: run `authd admin --help`\n"},
		{env, []string{"clients", "delete", "nope", "--yes"}, exitFailure,
			"authd clients: no such client\nhint: `authd clients list` shows the clients\n"},
		{env, []string{"clients", "create", "--name", "App", "--type", "public", "--redirect-uri", "https://app.example/cb",
			"--id", "no spaces"}, exitUsage,
			"authd clients create: --id must be 1 to 64 letters, digits, '.', '_' or '-', not only dots\nhint: run `authd clients --help`\n"},
		{env, []string{"clients", "create", "--name", "App", "--type", "public", "--redirect-uri", "https://app.example/cb",
			"--id", "authd"}, exitUsage,
			"authd clients create: --id is the audience of authd's access tokens (AUTHD_AUDIENCE): choose another\nhint: run `authd clients --help`\n"},
		// The zero id is an unknown mail like any other, not "no id": no list.
		{env, []string{"admin", "mail", "retry", "00000000-0000-0000-0000-000000000000"}, exitFailure,
			"authd admin: no such dead mail\nhint: `authd admin mail list --dead` lists the dead mails\n"},
		{env, []string{"admin", "mail", "retry", "6f1c3c1e-8d4b-4f0e-9d7a-2b1f5c3e9a10"}, exitFailure,
			"authd admin: no such dead mail\nhint: `authd admin mail list --dead` lists the dead mails\n"},
		{fresh, []string{"migrate", "redo"}, exitFailure,
			"authd migrate: no migration is applied, so there is nothing to redo\nhint: run `authd migrate up` first\n"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.env, tt.args...)
		if code != tt.code || stderr != tt.stderr {
			t.Errorf("authd %s: exit %d, stderr %q; want %d and %q", strings.Join(tt.args, " "), code, stderr, tt.code, tt.stderr)
		}
	}
}

// TestWrappedServiceErrorsTold: a service error wrapped with where it
// happened keeps those words, and the service's own are told as unwrapped:
// a conflict without the store's wording (constraint, SQLSTATE), an outage
// with its cause.
func TestWrappedServiceErrorsTold(t *testing.T) {
	t.Parallel()
	store := errors.New("postgres: ERROR: duplicate key value violates unique constraint (SQLSTATE 23505)")
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("unlocking alice: %w", &authd.Error{Code: authd.EConflict, Message: "Already exists.", Err: store}),
			"unlocking alice: already exists"},
		{fmt.Errorf("pruning: %w", &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable",
			Err: errors.New("connection refused")}), "pruning: the database is unavailable: connection refused"},
		{&authd.Error{Code: authd.EConflict, Message: "Already exists.", Err: store}, "already exists"},
		// A shed (SQLite's lane past its wait) says busy once, not its
		// cause's "busy" again.
		{fmt.Errorf("purging: %w", &authd.Error{Code: authd.EUnavailable, Message: "the database is busy",
			RetryAfter: time.Second, Err: authd.ErrBusy}), "purging: the database is busy"},
	}
	for _, tt := range tests {
		var ce *cliError
		if err := fromService("admin users unlock", tt.err, nil, ""); !errors.As(err, &ce) || ce.msg != tt.want {
			t.Errorf("fromService(%q) = %v; want %q", tt.err, err, tt.want)
		}
	}
}

// TestAsLine: the service's sentences read as the CLI's other errors.
func TestAsLine(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]string{
		"No such client.":                  "no such client",
		"A public client has no secret.":   "a public client has no secret",
		"TOTP is already on.":              "TOTP is already on",
		"PostgreSQL at db:5432 refused it": "PostgreSQL at db:5432 refused it",
		"Élan. Twice.":                     "élan. Twice",
		"already lower case, without stop": "already lower case, without stop",
		"":                                 "",
		".":                                "",
	} {
		if got := asLine(msg); got != want {
			t.Errorf("asLine(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestUsageErrorsOpenNoDatabase: a command line that does not parse is
// refused before the database is opened, so it creates none.
func TestUsageErrorsOpenNoDatabase(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"admin", "logs", "--result", "maybe"},
		{"admin", "logs", "--event", "nope"},
		{"admin", "logs", "--since", "yesterday"},
		{"admin", "logs", "--until", "tomorrow"},
		{"admin", "logs", "--user", "not an email"},
		{"admin", "users", "list", "--status", "bogus"},
		{"admin", "users", "show", "not an email"},
		{"admin", "users", "lock", "a@b.org", "--until", "soon"},
		{"admin", "users", "lock", "a@b.org", "--until", "0001-01-01T00:00:00Z"},
		{"admin", "mail", "retry", "not-an-id"},
		{"admin", "mail", "list", "--cursor", "bogus"},
		{"clients", "create", "--name", "App", "--type", "bogus", "--redirect-uri", "https://app.example/cb"},
		{"clients", "create", "--name", "App", "--type", "public", "--redirect-uri", "ftp://app.example/cb"},
		{"clients", "create", "--name", "App", "--type", "public", "--redirect-uri", "https://app.example/cb",
			"--post-logout-uri", "javascript:alert(1)"},
		{"purge", "now"},
		{"migrate", "down", "x"},
	} {
		env := sqliteEnv(t)
		code, _, stderr := runCLI(t, env, args...)
		if code != exitUsage || strings.Count(stderr, "\n") != 2 || !strings.Contains(stderr, "\nhint: ") {
			t.Errorf("authd %s: exit %d, stderr %q; want 2, one line and a hint", strings.Join(args, " "), code, stderr)
		}
		if entries, err := os.ReadDir(env["AUTHD_DATA_DIR"]); err != nil || len(entries) > 0 {
			t.Errorf("authd %s: the data directory holds %v (%v); want nothing created", strings.Join(args, " "), entries, err)
		}
	}
}

// TestTombstoneSquattersMovedAside: an account registered, before the
// .invalid rule, at the address erasure would give another account is
// moved aside by migration 18, so that the other account's erasure goes
// through, even when a third held the address it is moved to; the CLI
// finds them all by their .invalid addresses.
func TestTombstoneSquattersMovedAside(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{"sqlite": sqliteEnv(t), "postgres": postgresEnv(t)} {
		t.Run(name, func(t *testing.T) {
			db, victim := migratedWithUser(t, env, "victim@example.org")
			// Back to before migration 18.
			down := strconv.Itoa(migrationsAbove(t, 17))
			if code, _, stderr := runCLI(t, env, "migrate", "down", down); code != exitOK {
				t.Fatalf("migrate down %s: %s", down, stderr)
			}
			squatter := storetest.NewUser(authd.Tombstone(victim.ID)) // as NormalizeEmail let it be before
			if err := db.CreateUser(context.Background(), squatter); err != nil {
				t.Fatal(err)
			}
			// And one at the address the squatter is moved to, which the move must not trip on.
			blocker := storetest.NewUser("squatted-" + squatter.ID.String() + "@invalid")
			if err := db.CreateUser(context.Background(), blocker); err != nil {
				t.Fatal(err)
			}
			// And one under a subdomain of .invalid, which sign-in refuses too.
			sub := storetest.NewUser("ops@corp.invalid")
			if err := db.CreateUser(context.Background(), sub); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
				t.Fatalf("migrate up: %s", stderr)
			}
			moved := "squatted-" + squatter.ID.String() + "@invalid"
			if code, stdout, stderr := runCLI(t, env, "admin", "users", "show", moved); code != exitOK || !strings.Contains(stdout, squatter.ID.String()) {
				t.Errorf("show the moved-aside account by its address: exit %d %s%s", code, stdout, stderr)
			}
			if code, stdout, stderr := runCLI(t, env, "admin", "users", "show", "squatted-"+blocker.ID.String()+"@invalid"); code != exitOK ||
				!strings.Contains(stdout, blocker.ID.String()) {
				t.Errorf("show the other moved-aside account: exit %d %s%s", code, stdout, stderr)
			}
			if code, stdout, stderr := runCLI(t, env, "admin", "users", "show", "squatted-"+sub.ID.String()+"@invalid"); code != exitOK ||
				!strings.Contains(stdout, sub.ID.String()) {
				t.Errorf("show the account moved from a subdomain of .invalid: exit %d %s%s", code, stdout, stderr)
			}
			if code, stdout, stderr := runCLI(t, env, "admin", "users", "delete", victim.ID.String(), "--yes"); code != exitOK {
				t.Fatalf("erasure of the squatted account: exit %d %s%s", code, stdout, stderr)
			}
			if code, stdout, stderr := runCLI(t, env, "admin", "users", "show", authd.Tombstone(victim.ID)); code != exitOK ||
				!strings.Contains(stdout, victim.ID.String()) {
				t.Errorf("show the erased account by its tombstone: exit %d %s%s", code, stdout, stderr)
			}
			for _, action := range [][]string{{"delete", "--yes"}, {"lock"}, {"reset-mfa"}} {
				args := append([]string{"admin", "users", action[0], victim.ID.String()}, action[1:]...)
				if code, _, stderr := runCLI(t, env, args...); code != exitFailure || !strings.Contains(stderr, "was erased ("+authd.Tombstone(victim.ID)+")") {
					t.Errorf("%s of the erased account: exit %d %q; want 1, told it was erased (not that there is no such user)",
						action[0], code, stderr)
				}
			}
		})
	}
}

// migrationsAbove counts the migrations numbered above version (both
// stores number theirs alike), for rolling back to it.
func migrationsAbove(t *testing.T, version int) int {
	t.Helper()
	files, err := filepath.Glob("../../sqlite/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	n := 0
	for _, f := range files {
		number, _, _ := strings.Cut(filepath.Base(f), "_")
		v, err := strconv.Atoi(number)
		if err != nil {
			t.Fatalf("migration file %s: %v", f, err)
		}
		if v > version {
			n++
		}
	}
	return n
}

// TestAdminSetEmail: an administrator moves an account to a new address,
// verified with --verified (else a verification link goes there); the
// service's refusals are told under NEW_EMAIL.
func TestAdminSetEmail(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	db, u := migratedWithUser(t, env, "lost@example.org")
	migratedWithUser(t, env, "taken@example.org")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"taken@example.org"}, "authd admin: that address belongs to another account"},
		{[]string{"taken@example.org"}, "hint: `authd admin users show NEW_EMAIL` shows the account that has it"},
		{[]string{"lost@example.org"}, "NEW_EMAIL is already the account's address"},
		{[]string{"x@example.invalid"}, "NEW_EMAIL"},
	} {
		args := append([]string{"admin", "users", "set-email", "lost@example.org"}, c.args...)
		if code, _, stderr := runCLI(t, env, args...); code == exitOK || !strings.Contains(stderr, c.want) {
			t.Errorf("set-email %v: exit %d, %q; want a refusal saying %q", c.args, code, stderr, c.want)
		}
	}
	code, stdout, stderr := runCLI(t, env, "admin", "users", "set-email", "lost@example.org", "found@example.org", "--verified")
	if code != exitOK || !strings.Contains(stdout, "moved lost@example.org to found@example.org, verified") {
		t.Fatalf("set-email --verified: exit %d, %q %q", code, stdout, stderr)
	}
	got, err := db.User(context.Background(), u.ID)
	if err != nil || got.Email != "found@example.org" || !got.EmailVerified {
		t.Errorf("after set-email --verified: %+v, %v", got, err)
	}
	code, stdout, stderr = runCLI(t, env, "admin", "users", "set-email", u.ID.String(), "Again@Example.org")
	if code != exitOK || !strings.Contains(stdout, "to again@example.org; every session ended, and a verification link") {
		t.Fatalf("set-email: exit %d, %q %q", code, stdout, stderr)
	}
	if got, err := db.User(context.Background(), u.ID); err != nil || got.Email != "again@example.org" || got.EmailVerified {
		t.Errorf("after set-email: %+v, %v; want the new address, not verified", got, err)
	}
}

// TestRepeatedFlagsRefused: a flag that takes one value given twice is a
// usage error naming it, not the last value silently (a command line pasted
// together would act on the wrong account or database); the value is not
// echoed, since it may be a secret. A repeat across positional arguments
// counts too; a flag made to repeat (--redirect-uri) still takes many.
func TestRepeatedFlagsRefused(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	migratedWithUser(t, env, "once@example.org")
	const secret = "sqlite:///tmp/p4ssw0rd.db"
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"admin", "users", "list", "--limit", "1", "--limit", "2"},
			"authd admin: flag --limit given more than once\nhint: give it once\n"},
		{[]string{"migrate", "--database-url", secret, "status", "--database-url", secret},
			"authd migrate: flag --database-url given more than once\nhint: give it once\n"},
		{[]string{"admin", "users", "unlock", "once@example.org", "--yes", "--yes"},
			"authd admin: flag --yes given more than once\nhint: give it once\n"},
	} {
		code, _, stderr := runCLI(t, env, tt.args...)
		if code != exitUsage || stderr != tt.stderr {
			t.Errorf("authd %s: exit %d, %q; want %d, %q", strings.Join(tt.args, " "), code, stderr, exitUsage, tt.stderr)
		}
	}
	code, _, stderr := runCLI(t, env, "clients", "create", "--name", "Two", "--type", "public",
		"--redirect-uri", "https://app.example/a", "--redirect-uri", "https://app.example/b")
	if code != exitOK {
		t.Errorf("clients create with two --redirect-uri: exit %d, %s; want 0", code, stderr)
	}
}
