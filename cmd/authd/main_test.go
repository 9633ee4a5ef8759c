package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/syncbuf"
	"github.com/authd/authd/password"
	"github.com/authd/authd/storetest"
	"github.com/authd/authd/token"
)

var update = flag.Bool("update", false, "rewrite .env.example from the settings table")

// cheapArgon2 keeps tests that hash fast; the cost does not change the logic.
var cheapArgon2 = map[string]string{
	"AUTHD_ARGON2_MEMORY_KIB": "1024", "AUTHD_ARGON2_ITERATIONS": "1",
}

// runCLI runs authd in-process with only the given environment.
func runCLI(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLIContext(context.Background(), t, environ, args...)
}

// runCLIContext is runCLI until ctx ends, for a serve that should fail
// before it listens and, wrongly started, would run for ever.
func runCLIContext(ctx context.Context, t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut, asEnviron(environ))
	return code, out.String(), errOut.String()
}

// asEnviron is vars as os.Environ gives the environment.
func asEnviron(vars map[string]string) []string {
	var environ []string
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	return environ
}

func sqliteEnv(t *testing.T) map[string]string {
	dir := t.TempDir()
	env := map[string]string{
		// DATABASE_URL unset: the default database, dir/authd.db.
		"AUTHD_DATA_DIR": dir,
		// The admin listener runs by default; tests in parallel must not
		// all want 127.0.0.1:8081.
		"AUTHD_ADMIN_ADDR": "127.0.0.1:0",
	}
	for k, v := range cheapArgon2 {
		env[k] = v
	}
	return env
}

func postgresEnv(t *testing.T) map[string]string {
	env := sqliteEnv(t)
	env["DATABASE_URL"] = storetest.PostgresURL(t)
	return env
}

func TestUsage(t *testing.T) {
	t.Parallel()
	// No command: one line and a hint, not the whole usage.
	if code, _, stderr := runCLI(t, nil); code != exitUsage ||
		stderr != "authd: missing command\nhint: authd --help lists the commands\n" {
		t.Errorf("no arguments: exit %d, stderr %q; want 2, one line and a hint", code, stderr)
	}
	// Help asked for is output, on stdout (`authd --help | less`).
	for _, help := range []string{"--help", "-h", "help"} {
		if code, stdout, stderr := runCLI(t, nil, help); code != exitOK || !strings.Contains(stdout, "Commands:") || stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 0 and the command list on stdout", help, code, stdout, stderr)
		}
	}
	code, _, stderr := runCLI(t, nil, "frobnicate")
	if code != exitUsage || !strings.Contains(stderr, `unknown command "frobnicate"`) || !strings.Contains(stderr, "hint:") {
		t.Errorf("unknown command: exit %d, stderr %q", code, stderr)
	}
	for _, c := range commands() {
		code, stdout, stderr := runCLI(t, nil, c.name, "--help")
		if code != exitOK || !strings.Contains(stdout, "Usage: authd "+c.name) || stderr != "" {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q; want 0 and its usage on stdout", c.name, code, stdout, stderr)
		}
	}
	usage := []struct{ args []string }{
		{[]string{"serve", "extra"}},
		{[]string{"serve", "--no-such-flag"}},
		{[]string{"migrate"}},
		{[]string{"migrate", "sideways"}},
		{[]string{"migrate", "down", "zero"}},
		{[]string{"migrate", "down", "-3"}},
		{[]string{"migrate", "up", "now"}},
		{[]string{"migrate", "create"}},
		{[]string{"seed", "more"}},
		{[]string{"version", "x"}},
	}
	for _, u := range usage {
		code, _, stderr := runCLI(t, nil, u.args...)
		if code != exitUsage || !strings.Contains(stderr, "hint:") {
			t.Errorf("authd %s: exit %d, stderr %q; want 2 with a hint", strings.Join(u.args, " "), code, stderr)
		}
	}
}

// TestFlagErrorsAreOneLine checks that a bad flag is told as one line and a
// hint, as every other usage error, not followed by the whole usage.
func TestFlagErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	args := [][]string{
		{"admin", "users", "list", "--limit", "abc"},
		{"keys", "generate", "--alg", "x"},
		{"migrate", "down", "-1"},
	}
	for _, c := range commands() {
		args = append(args, []string{c.name, "--no-such-flag"})
	}
	env := sqliteEnv(t) // where a command that wrongly runs would write
	for _, a := range args {
		code, stdout, stderr := runCLI(t, env, a...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if code != exitUsage || stdout != "" || len(lines) != 2 ||
			!strings.HasPrefix(lines[0], "authd "+a[0]+": ") || lines[1] != "hint: `authd "+a[0]+" --help` lists its flags" {
			t.Errorf("authd %s: exit %d, stdout %q, stderr %q; want 2, and one line naming the problem plus a hint",
				strings.Join(a, " "), code, stdout, stderr)
		}
	}
	// The flag package's words, in the CLI's: flags with two dashes, a
	// reason rather than "parse error".
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"admin", "users", "list", "--limit", "abc"}, `--limit "abc": must be a whole number`},
		{[]string{"admin", "users", "list", "--limit", "99999999999999999999"}, `--limit "99999999999999999999": is too large`},
		{[]string{"admin", "users", "list", "--limit"}, "--limit needs a value"},
		{[]string{"purge", "--dry-run=maybe"}, `--dry-run "maybe": must be true or false`},
		{[]string{"migrate", "down", "-1"}, "-1 is read as a flag: numbers here are positive"},
		{[]string{"migrate", "down", "99999999999999999999"}, "down N: 99999999999999999999 is more migrations than there will ever be"},
		{[]string{"admin", "--nope"}, "unknown flag --nope"},
	} {
		if code, _, stderr := runCLI(t, env, tt.args...); code != exitUsage || !strings.HasPrefix(stderr, "authd "+tt.args[0]+": "+tt.want+"\n") {
			t.Errorf("authd %s: exit %d, %q; want 2 and %q", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
	// A value that reads like the flag package's own words names the
	// flag given, not one it spells.
	if got := flagError(errors.New(`invalid value "a" for flag -since: bad "x\" for flag -y: z"`)); got != `--since "a": bad "x\" for flag -y: z"` {
		t.Errorf("a crafted value: %s", got)
	}
	// A setting's flag with a bad value: a usage error naming the flag,
	// not the variable no one set.
	for _, a := range [][]string{{"serve", "--http-addr", "foo"}, {"keys", "generate", "--signing-alg", "eddsa"},
		{"purge", "--security-log-retention", "24"},
		{"admin", "users", "list", "--data-dir", ""}} { // given empty: a value, refused as AUTHD_DATA_DIR= is
		code, _, stderr := runCLI(t, env, a...)
		if code != exitUsage || !strings.HasPrefix(stderr, "authd "+a[0]+": "+a[len(a)-2]+" ") || strings.Contains(stderr, "AUTHD_") {
			t.Errorf("authd %s: exit %d, %q; want 2 naming the flag", strings.Join(a, " "), code, stderr)
		}
	}
	// A long value echoed back is cut, the cut said.
	code, _, stderr := runCLI(t, env, "admin", "logs", "--cursor", strings.Repeat("x", 50_000))
	if first, _, _ := strings.Cut(stderr, "\n"); code != exitUsage || len(first) > 1200 || !strings.Contains(first, "more characters)") {
		t.Errorf("a 50,000-character cursor: exit %d, first line of %d bytes; want 2, cut to about 1,024 characters", code, len(first))
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version", "-v"} {
		code, stdout, _ := runCLI(t, nil, arg)
		if code != exitOK || !strings.HasPrefix(stdout, "authd ") {
			t.Errorf("%s: exit %d, stdout %q", arg, code, stdout)
		}
	}
}

// TestOutputThatCannotBeWritten: a command whose output cannot be written
// (stdout closed, a full disk) fails with one line and a hint, whether it
// prints with fmt (which drops the error) or gets the error itself (a JSON
// encoder); a command that failed otherwise keeps its own error.
func TestOutputThatCannotBeWritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vars := map[string]string{"AUTHD_DATA_DIR": dir}
	if code, _, stderr := runCLI(t, vars, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"version"}, {"migrate", "status"}, {"admin", "logs", "--json"}, {"admin", "users", "list"},
		{"admin", "--help"}, {"serve", "--help"}, {"--help"}} {
		var errOut bytes.Buffer
		code := run(context.Background(), args, failingWriter{}, &errOut, asEnviron(vars))
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		if code != exitFailure || len(lines) != 2 || !strings.Contains(lines[0], "could not be written: disk full") ||
			!strings.HasPrefix(lines[1], "hint: ") {
			t.Errorf("%q with stdout failing: exit %d, stderr %q; want 1, the error and a hint", args, code, errOut.String())
		}
	}
	var errOut bytes.Buffer
	code := run(context.Background(), []string{"admin", "users", "show", "nobody@example.org"}, failingWriter{}, &errOut,
		asEnviron(vars))
	if code != exitFailure || !strings.Contains(errOut.String(), "no user") {
		t.Errorf("a command failing for its own reason, stdout failing: exit %d, %q; want its own error", code, errOut.String())
	}
}

// TestInterruptedCommand: a command a signal ends (its context canceled)
// is told as interrupted, not as the database outage its canceled wait
// looks like.
func TestInterruptedCommand(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"AUTHD_DATA_DIR": t.TempDir()}
	if code, _, stderr := runCLI(t, vars, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: exit %d: %s", code, stderr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as SIGINT does
	for _, args := range [][]string{{"admin", "users", "list"}, {"migrate", "down"}} {
		code, _, stderr := runCLIContext(ctx, t, vars, args...)
		if code != exitFailure || !strings.HasPrefix(stderr, "authd "+args[0]+": interrupted before it finished\nhint: ") {
			t.Errorf("%q interrupted: exit %d, %q; want 1, interrupted, a hint", args, code, stderr)
		}
	}
	if code, stdout, _ := runCLI(t, vars, "migrate", "version"); code != exitOK || strings.TrimSpace(stdout) == "0" {
		t.Errorf("migrate down ran though interrupted: version %s", stdout)
	}
	// A usage error stays one.
	if code, _, stderr := runCLIContext(ctx, t, vars, "admin", "users", "frobnicate"); code != exitUsage {
		t.Errorf("a usage error, interrupted: exit %d, %q; want 2", code, stderr)
	}
}

// TestDefaultDatabaseOfALaterRelease: a command on the default database
// that a later authd migrated is refused with that release's advice, not
// told to restore a backup, and leaves the file as it was.
func TestDefaultDatabaseOfALaterRelease(t *testing.T) {
	t.Parallel()
	vars := sqliteEnv(t)
	if code, _, stderr := runCLI(t, vars, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: exit %d: %s", code, stderr)
	}
	db, err := sql.Open("sqlite", filepath.Join(vars["AUTHD_DATA_DIR"], "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, 1)`); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"admin", "users", "list"}, {"seed"}} {
		code, _, stderr := runCLI(t, vars, args...)
		if code != exitFailure || !strings.Contains(stderr, "newer than this authd knows") || strings.Contains(stderr, "unavailable: ") ||
			!strings.Contains(stderr, "hint: run the authd release that migrated it") {
			t.Errorf("authd %s on a later release's database: exit %d, %q; want refused with that release's advice",
				strings.Join(args, " "), code, stderr)
		}
	}
	// The listings show what this release knows, and fail saying there is
	// more: a table of applied migrations alone would read as a database
	// at head.
	for _, args := range [][]string{{"migrate", "status"}, {"migrate", "history"}} {
		code, stdout, stderr := runCLI(t, vars, args...)
		if code != exitFailure || !strings.Contains(stdout, "applied") || !strings.Contains(stderr, "newer than this authd knows") {
			t.Errorf("authd %s on a later release's database: exit %d, stdout %q, stderr %q; want the table, then refused",
				strings.Join(args, " "), code, stdout, stderr)
		}
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM goose_db_version WHERE version_id = 9999`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the later release's version row: %d (%v)", n, err)
	}
}

// TestServeListenErrorsHint: serve that cannot listen says why in its hint:
// an address in use, one that is not this machine's.
func TestServeListenErrorsHint(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := map[string]string{taken.Addr().String(): "hint: stop what uses that address or set AUTHD_HTTP_ADDR"}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_nonlocal_bind"); strings.TrimSpace(string(b)) != "1" {
		// Where it is 1, any address binds: serve would start.
		cases["192.0.2.1:18080"] = "hint: the address is not one of this machine's" // TEST-NET-1
	}
	for addr, want := range cases {
		env := sqliteEnv(t)
		env["AUTHD_HTTP_ADDR"] = addr
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code, _, stderr := runCLIContext(ctx, t, env, "serve")
		cancel()
		if code != exitFailure || !strings.Contains(stderr, want) {
			t.Errorf("serve on %s: exit %d, %q; want %q", addr, code, stderr, want)
		}
	}
}

// failingWriter fails every write, as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct{ env, value string }{
		{"DATABASE_URL", "mysql://localhost/db"},
		{"DATABASE_URL", "sqlite://./authd.db?cache=shared"},
		{"DATABASE_URL", "sqlite://:memory:"}, // gone at exit: refused, not a chmod error
		{"AUTHD_HTTP_ADDR", "localhost"},
		{"AUTHD_PUBLIC_URL", "ftp://x"},
		{"AUTHD_PUBLIC_URL", "https://auth.example.org:99999"},
		{"AUTHD_PUBLIC_URL", "http://127.0.0.1:0"},
		{"AUTHD_PUBLIC_URL", "https://auth..example.org"}, // its own error, not the passkeys' relying party's
		{"AUTHD_PUBLIC_URL", "https://-x.example.org"},
		{"AUTHD_ISSUER", "not a url"},
		{"AUTHD_PUBLIC_URL", ""}, // unset in a deployment's file: not the loopback default
		{"AUTHD_DATA_DIR", " "},
		{"AUTHD_ISSUER", ":8080/x"},
		{"AUTHD_ISSUER", "https://auth.example.org/" + strings.Repeat("x", 1024)}, // in every token
		{"AUTHD_AUDIENCE", "a\x01b c"},
		{"AUTHD_APP_NAME", "\x1b[2J"}, // an escape sequence, shown on pages and in logs
		{"AUTHD_TEMPLATES_DIR", "/nonexistent/templates"},
		{"AUTHD_REDIS_URL", "redis://127.0.0.1:6379/x"},
		{"AUTHD_REDIS_URL", "redis://127.0.0.1:6379/7?foo=1"},
		{"AUTHD_ACCESS_TOKEN_TTL", "15 minutes"},
		{"AUTHD_REFRESH_REUSE_GRACE", "-1s"},
		{"AUTHD_SHUTDOWN_DELAY", "11s"},
		{"AUTHD_SIGNING_ALG", "HS256"},
		{"AUTHD_PASSWORD_MIN_LENGTH", "6"},
		{"AUTHD_ARGON2_MEMORY_KIB", "lots"},
		{"AUTHD_LOCKOUT_THRESHOLD", "0"},
		{"AUTHD_RATE_LIMIT", "maybe"},
		{"AUTHD_TRUSTED_PROXIES", "10.0.0.0/33"},
		{"AUTHD_CORS_ORIGINS", "https://app.example.org/path"},
		{"AUTHD_SECURITY_LOG_RETENTION", "1h"},
		{"AUTHD_LOG_FORMAT", "xml"},
		{"AUTHD_MAIL_FROM", "not an address"},
		{"AUTHD_SMTP_URL", "http://mail"},
		{"AUTHD_SMTP_URL", "smtp://mail.example.org?starttls=never"},
		{"AUTHD_SMTP_URL", "smtp://mail.example.org?tls=off"},
		{"AUTHD_REQUIRE_VERIFIED_EMAIL", "yes please"},
		{"AUTHD_WEBAUTHN_RP_ID", "evil.example"}, // not the host of AUTHD_PUBLIC_URL
		{"AUTHD_WEBAUTHN_RP_ID", "10.0.0.1"},
		{"AUTHD_WEBAUTHN_ORIGINS", "ftp://auth.example.org"},
	}
	for _, tt := range tests {
		env := sqliteEnv(t)
		env[tt.env] = tt.value
		code, _, stderr := runCLI(t, env, "serve")
		if code != exitFailure || !strings.Contains(stderr, tt.env+"=") || !strings.Contains(stderr, "hint:") {
			t.Errorf("%s=%q: exit %d, stderr %q; want 1 naming the variable", tt.env, tt.value, code, stderr)
		}
	}
	// A duration too large for Go is told as one, not as bad syntax.
	for _, tt := range []struct{ env, value, want string }{
		{"AUTHD_SECURITY_LOG_RETENTION", "100000000h", "must be at most 2562047h"},
		{"AUTHD_SECURITY_LOG_RETENTION", "-100000000h", "must be at least 24h"},
		{"AUTHD_SECURITY_LOG_RETENTION", "90 days", "must be a Go duration"},
		{"AUTHD_ACCESS_TOKEN_TTL", "100000000h", "must be at most 24h"}, // its own bound
	} {
		env := sqliteEnv(t)
		env[tt.env] = tt.value
		if _, _, stderr := runCLI(t, env, "serve"); !strings.Contains(stderr, tt.want) {
			t.Errorf("%s=%s: stderr %q; want %q", tt.env, tt.value, stderr, tt.want)
		}
	}
	// A password in a rejected DATABASE_URL is never echoed, wherever it
	// is: a user-info part url.Parse reads or cannot (a % not escaped), a
	// libpq key=value string, a JDBC URL's query. The scheme is named.
	for _, tt := range []struct{ url, shown string }{
		{"mysql://root:s3cretpw@db/auth", `"mysql://…"`},
		{"mysql://root:s3cret%pw@db/auth", `"mysql://…"`},
		{"host=db user=authd password=s3cretpw dbname=authd", `"…"`},
		{"jdbc:postgresql://db/authd?user=authd&password=s3cretpw", `"jdbc:postgresql://…"`},
		{"postgres:/db?password=s3cretpw", `"…"`},
		{"sqlite://./authd.db?_pragma_key=s3cretpw", `"sqlite://…"`},
		{"authd:s3cretpw://db/authd", `"…"`},
	} {
		env := sqliteEnv(t)
		env["DATABASE_URL"] = tt.url
		if code, _, stderr := runCLI(t, env, "serve"); code != exitFailure || strings.Contains(stderr, "s3cret") ||
			!strings.Contains(stderr, "DATABASE_URL="+tt.shown) {
			t.Errorf("DATABASE_URL=%s: exit %d, stderr %q; want it refused as DATABASE_URL=%s, the password hidden",
				tt.url, code, stderr, tt.shown)
		}
		code, _, stderr := runCLI(t, sqliteEnv(t), "migrate", "status", "--database-url", tt.url)
		if code != exitUsage || strings.Contains(stderr, "s3cret") || !strings.Contains(stderr, "--database-url "+tt.shown) {
			t.Errorf("--database-url %s: exit %d, stderr %q; want a usage error naming %s, the password hidden",
				tt.url, code, stderr, tt.shown)
		}
	}
	// A flag's value shows in ps: a --database-url that takes a password is
	// refused as the secrets' flags are, before anything is opened.
	for _, raw := range []string{"postgres://authd:s3cretpw@127.0.0.1:1/authd", "postgres://127.0.0.1:1/authd?password=s3cretpw",
		"postgres://127.0.0.1:1/authd?sslpassword=s3cretpw", "postgres://authd:s3cretpw@[::1]:1,[::2]:1/authd"} {
		code, _, stderr := runCLI(t, sqliteEnv(t), "migrate", "status", "--database-url", raw)
		if code != exitUsage || strings.Contains(stderr, "s3cret") || !strings.Contains(stderr, "holds a password") {
			t.Errorf("--database-url %s: exit %d, stderr %q; want it refused, the password not echoed", raw, code, stderr)
		}
	}
	// Nor is the password of a rejected SMTP URL.
	env := sqliteEnv(t)
	env["AUTHD_SMTP_URL"] = "smtp://mailer:s3cretpw@mail.example.org?starttls=maybe"
	if _, _, stderr := runCLI(t, env, "serve"); strings.Contains(stderr, "s3cretpw") ||
		!strings.Contains(stderr, "AUTHD_SMTP_URL") || !strings.Contains(stderr, "starttls") {
		t.Errorf("bad AUTHD_SMTP_URL: stderr %q; want the variable and parameter named and the password hidden", stderr)
	}
	// Nor any part of a Redis password that an unescaped / or ? moved into
	// the URL's path or query, which go-redis's errors quote.
	for _, raw := range []string{"redis://default:/xK9pQ2secretTail@redis.internal:6379",
		"redis://:42?secretTail@redis.internal:6379", "redis://:12/a/secretTail@redis.internal"} {
		env = sqliteEnv(t)
		env["AUTHD_REDIS_URL"] = raw
		if code, _, stderr := runCLI(t, env, "serve"); code != exitFailure || strings.Contains(stderr, "secretTail") ||
			!strings.Contains(stderr, "AUTHD_REDIS_URL") {
			t.Errorf("AUTHD_REDIS_URL=%s: exit %d, stderr %q; want refused, the password's parts not echoed", raw, code, stderr)
		}
	}
	// A rejected secret is named but never echoed.
	env = sqliteEnv(t)
	env["AUTHD_ADMIN_TOKEN"] = "hunter2"
	_, _, stderr := runCLI(t, env, "serve")
	if !strings.Contains(stderr, "AUTHD_ADMIN_TOKEN") || strings.Contains(stderr, "hunter2") {
		t.Errorf("short admin token: stderr %q; want the variable named and the value hidden", stderr)
	}
	// A blank secret is not taken for an unset one (the admin API off).
	env = sqliteEnv(t)
	env["AUTHD_ADMIN_TOKEN"] = strings.Repeat(" ", 36)
	if code, _, stderr := runCLI(t, env, "serve"); code != exitFailure || !strings.Contains(stderr, "AUTHD_ADMIN_TOKEN is only whitespace") {
		t.Errorf("a blank admin token: exit %d, stderr %q; want it refused", code, stderr)
	}
	// A bearer secret with a space would be taken and never match: a
	// header's token ends at the space.
	for name, value := range map[string]string{
		"AUTHD_ADMIN_TOKEN":    "admin token with spaces 0123456789abcdef",
		"AUTHD_SERVICE_TOKENS": "service-token-0123456789abcdef0123456789,tab\ttoken-0123456789abcdef012345",
	} {
		env = sqliteEnv(t)
		env[name] = value
		if code, _, stderr := runCLI(t, env, "migrate", "status"); code != exitFailure ||
			!strings.Contains(stderr, name) || !strings.Contains(stderr, "without spaces") || strings.Contains(stderr, "0123456789abcdef") {
			t.Errorf("%s with a space: exit %d, stderr %q; want it refused, the value hidden", name, code, stderr)
		}
	}
	// SPEC §2: any lifetime from 1 s, a refresh TTL or session max age
	// under the access TTL too (access tokens end with their session).
	env = sqliteEnv(t)
	env["AUTHD_ACCESS_TOKEN_TTL"], env["AUTHD_REFRESH_TOKEN_TTL"], env["AUTHD_SESSION_MAX_AGE"] = "30m", "5s", "1s"
	if code, _, stderr := runCLI(t, env, "migrate", "status"); code != exitOK {
		t.Errorf("a refresh TTL and a session max age under the access TTL: exit %d, stderr %q; want them taken", code, stderr)
	}
	// The administrator's secret is no resource server's.
	env = sqliteEnv(t)
	shared := "one-secret-for-everyone-0123456789abcdef"
	env["AUTHD_ADMIN_TOKEN"], env["AUTHD_SERVICE_TOKENS"] = shared, "another-service-token-0123456789abcdef,"+shared
	if code, _, stderr := runCLI(t, env, "migrate", "status"); code != exitFailure || !strings.Contains(stderr, "AUTHD_ADMIN_TOKEN must differ") ||
		strings.Contains(stderr, shared) {
		t.Errorf("an admin token among the service tokens: exit %d, stderr %q; want it refused, the value hidden", code, stderr)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	dotenv := "AUTHD_AUDIENCE=from-dotenv\nAUTHD_ISSUER=from-dotenv\nAUTHD_LOCKOUT_THRESHOLD=7\nexport AUTHD_LOG_FORMAT=json\n"
	if err := os.WriteFile(".env", []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := map[string]string{"AUTHD_AUDIENCE": "from-env", "AUTHD_ISSUER": "from-env"}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	flags := configFlags(fs)
	if err := fs.Parse([]string{"--issuer", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(flags, func(k string) (string, bool) { v, ok := environ[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "from-flag" || cfg.Audience != "from-env" || cfg.LockoutThreshold != 7 ||
		cfg.LogFormat != "json" || cfg.AccessTokenTTL != 15*time.Minute {
		t.Errorf("precedence: issuer %q audience %q threshold %d format %q ttl %s; want flag > env > .env > default",
			cfg.Issuer, cfg.Audience, cfg.LockoutThreshold, cfg.LogFormat, cfg.AccessTokenTTL)
	}
	if _, ok := flags["AUTHD_ADMIN_TOKEN"]; ok {
		t.Error("a secret has a command-line flag; secrets must come from the environment only")
	}
}

// TestDotenvErrorsQuoteNothing checks that a .env that does not parse is
// told by its line, never by the parser's message, which quotes the rest of
// the file: secrets included.
func TestDotenvErrorsQuoteNothing(t *testing.T) {
	secrets := "AUTHD_ADMIN_TOKEN=0123456789abcdef0123456789abcdef-s3cret\n" +
		"DATABASE_URL=postgres://authd:pa55word@db/authd\n"
	tests := []struct {
		name, dotenv string
		line         int
	}{
		{"byte order mark", "\ufeffAUTHD_AUDIENCE=x\n" + secrets, 1},
		{"dash in a name", "# settings\nAUTHD_AUDIENCE=x\nAUTHD-ISSUER=y\n" + secrets, 3},
		{"after a quoted value over two lines", "AUTHD_APP_NAME=\"a\nb\"\nBAD NAME!=1\n" + secrets, 3},
		{"unclosed quote", "AUTHD_AUDIENCE=x\nAUTHD_ISSUER=\"y\n" + secrets, 2},
	}
	t.Chdir(t.TempDir())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(".env", []byte(tt.dotenv), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(t, sqliteEnv(t), "serve")
			want := fmt.Sprintf("authd serve: .env in the working directory does not parse at line %d\nhint: make line %d ", tt.line, tt.line)
			if code != exitFailure || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 2 {
				t.Errorf("exit %d, stderr %q; want 1, and one line naming line %d plus a hint", code, stderr, tt.line)
			}
			for _, secret := range []string{"s3cret", "0123456789abcdef", "pa55word", "postgres://"} {
				if strings.Contains(stderr, secret) {
					t.Errorf("stderr %q quotes the file (%q)", stderr, secret)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "sqlite://"+filepath.Join("authd-data", "authd.db") || !cfg.DefaultDatabase || cfg.HTTPAddr != "127.0.0.1:8080" ||
		cfg.Issuer != "http://127.0.0.1:8080" || cfg.KeysDir != filepath.Join("authd-data", "keys") ||
		cfg.Argon2 != password.DefaultParams || !cfg.RateLimit || !cfg.RequireVerifiedEmail ||
		cfg.RefreshReuseGrace != 10*time.Second || cfg.SecurityLogRetention != 2160*time.Hour {
		t.Errorf("defaults differ from SPEC §2: %+v", cfg)
	}
}

// TestPublicURLNormalised checks that AUTHD_PUBLIC_URL reaches every
// consumer with its scheme and host in lower case: HTTPS://… is https, for
// Secure cookies and HSTS as for the issuer and the passkey origin; and the
// CORS origins likewise.
func TestPublicURLNormalised(t *testing.T) {
	t.Parallel()
	env := map[string]string{"AUTHD_PUBLIC_URL": "HTTPS://Auth.Example.ORG/Base/", "AUTHD_CORS_ORIGINS": "HTTPS://App.Example.ORG"}
	cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	const want = "https://auth.example.org/Base"
	if cfg.PublicURL != want || cfg.Issuer != want || cfg.WebAuthnRPID != "auth.example.org" ||
		!slices.Equal(cfg.WebAuthnOrigins, []string{"https://auth.example.org"}) {
		t.Errorf("public URL %q, issuer %q, RP ID %q, origins %q; want %q, the same, auth.example.org and its origin",
			cfg.PublicURL, cfg.Issuer, cfg.WebAuthnRPID, cfg.WebAuthnOrigins, want)
	}
	// Browsers send an Origin in lower case, which CORS compares.
	if !slices.Equal(cfg.CORSOrigins, []string{"https://app.example.org"}) {
		t.Errorf("CORS origins %q; want https://app.example.org", cfg.CORSOrigins)
	}
}

// TestPublicURLPath: a public URL with a path (authd behind a proxy that
// strips it) keeps the path without its final slashes, for the issuer too;
// the passkeys' origin has no path. A path a browser would resolve
// elsewhere (an empty, . or .. segment) is refused.
func TestPublicURLPath(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{
		"https://auth.example.org/idp":      "https://auth.example.org/idp",
		"https://auth.example.org/idp//":    "https://auth.example.org/idp",
		"https://auth.example.org/a/b-c/":   "https://auth.example.org/a/b-c",
		"https://auth.example.org/":         "https://auth.example.org",
		"https://auth.example.org/a//b":     "",
		"https://auth.example.org/a/../b":   "",
		"https://auth.example.org/./idp":    "",
		"https://auth.example.org/%2E%2E/x": "",
		"https://auth.example.org//idp":     "",
		"https://x//evil.example":           "",
		"https://auth.example.org/%2F%2Fe":  "",
	} {
		env := map[string]string{"AUTHD_PUBLIC_URL": value}
		cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		switch {
		case want == "" && (err == nil || !strings.Contains(err.Error(), "AUTHD_PUBLIC_URL")):
			t.Errorf("AUTHD_PUBLIC_URL=%s: %v; want it refused", value, err)
		case want == "":
		case err != nil:
			t.Errorf("AUTHD_PUBLIC_URL=%s: %v", value, err)
		case cfg.PublicURL != want || cfg.Issuer != want || !slices.Equal(cfg.WebAuthnOrigins, []string{"https://auth.example.org"}):
			t.Errorf("AUTHD_PUBLIC_URL=%s: public URL %q, issuer %q, origins %q; want %s, the same, and https://auth.example.org",
				value, cfg.PublicURL, cfg.Issuer, cfg.WebAuthnOrigins, want)
		}
	}
}

// TestPublicURLElsewhere: serve warns when AUTHD_PUBLIC_URL names this
// machine on another port than the listener's (the listener moved, the
// public URL left at its default), not for a public host behind a proxy.
func TestPublicURLElsewhere(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		public, addr string
		warn         bool
	}{
		{"", "", false}, // the defaults agree
		{"", "127.0.0.1:9000", true},
		{"http://localhost:9000", "127.0.0.1:9000", false},
		{"http://localhost", "127.0.0.1:9000", true},
		{"http://[::1]:8080", "[::1]:9000", true},
		{"https://auth.example.org", "0.0.0.0:8080", false}, // behind a proxy
		{"", "127.0.0.1:0", false},                          // picked at start
	} {
		env := map[string]string{}
		if c.public != "" {
			env["AUTHD_PUBLIC_URL"] = c.public
		}
		if c.addr != "" {
			env["AUTHD_HTTP_ADDR"] = c.addr
		}
		cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.publicURLElsewhere(); got != c.warn {
			t.Errorf("AUTHD_PUBLIC_URL=%q AUTHD_HTTP_ADDR=%q: warn %v, want %v", c.public, c.addr, got, c.warn)
		}
	}
}

// envExample renders .env.example from the settings table.
func envExample() string {
	var b strings.Builder
	b.WriteString("# authd configuration: every variable with its default (SPEC §2).\n")
	b.WriteString("# Copy to .env and edit. The real environment wins over .env, and\n")
	b.WriteString("# command-line flags (authd serve --help) win over both. Durations use\n")
	b.WriteString("# Go syntax (15m, 720h). An empty value means unset (its default), but\n")
	b.WriteString("# AUTHD_ADMIN_ADDR= turns the admin listener off, and AUTHD_PUBLIC_URL and\n")
	b.WriteString("# AUTHD_DATA_DIR are refused empty.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "\n# %s\n%s=%s\n", s.help, s.env, s.def)
	}
	return b.String()
}

func TestEnvExampleListsEverySetting(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", ".env.example")
	if *update {
		if err := os.WriteFile(path, []byte(envExample()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != envExample() {
		t.Errorf(".env.example is out of date with the settings table; run go test ./cmd/authd -run EnvExample -update")
	}
	// Copying it to .env must change nothing.
	fromFile, err := loadConfigFrom(t, got)
	if err != nil {
		t.Fatal(err)
	}
	defaults, _ := loadConfig(nil, func(string) (string, bool) { return "", false })
	if fmt.Sprintf("%+v", fromFile) != fmt.Sprintf("%+v", defaults) {
		t.Errorf(".env.example as .env gives %+v, want the defaults %+v", fromFile, defaults)
	}
}

// TestREADMEListsEverySetting: the README's configuration table has a row
// for every setting (the argon2 ones share one, as AUTHD_ARGON2_MEMORY_KIB /
// _ITERATIONS / _PARALLELISM).
func TestREADMEListsEverySetting(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "\n| variable | default | meaning |\n")
	table, _, _ = strings.Cut(table, "\n\n")
	for _, s := range settings {
		short := "`_" + strings.TrimPrefix(s.env, "AUTHD_ARGON2_") + "`"
		if !strings.Contains(table, "| `"+s.env+"`") && !strings.Contains(table, "`"+s.env+"` /") &&
			!strings.Contains(table, "/ `"+s.env+"`") && !(strings.HasPrefix(s.env, "AUTHD_ARGON2_") && strings.Contains(table, short)) {
			t.Errorf("README's configuration table has no row for %s", s.env)
		}
	}
}

func loadConfigFrom(t *testing.T, dotenv []byte) (*Config, error) {
	env := map[string]string{}
	for _, line := range strings.Split(string(dotenv), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	return loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

// TestServeWarnsOfUnknownSettings: an AUTHD_ variable that is no setting
// (a misspelling, which would otherwise be ignored without a word) gets a
// warning naming the setting it is closest to; the load generator's own
// variables do not.
func TestServeWarnsOfUnknownSettings(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	env["AUTHD_ADMIN_TOKNE"] = "a-token-meant-for-the-admin-api-0123456789"
	env["AUTHD_NOTHING_LIKE_IT"] = "1"
	env["AUTHD_LOAD_CLIENTS"] = "4"
	env["AUTHD_SERVICE_TOKEN"] = "the resource server's, beside" // the README's example reads it
	s := startServe(t, env)
	s.stop(t)
	logs := s.stderr.String()
	for _, want := range []string{"name=AUTHD_ADMIN_TOKNE did_you_mean=AUTHD_ADMIN_TOKEN",
		"name=AUTHD_NOTHING_LIKE_IT\n"} { // no setting is close: none named
		if !strings.Contains(logs, want) {
			t.Errorf("serve's log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "AUTHD_LOAD_CLIENTS") || strings.Contains(logs, "name=AUTHD_SERVICE_TOKEN ") ||
		strings.Contains(logs, "a-token-meant") {
		t.Errorf("serve warned of the load generator's variable, or printed a value:\n%s", logs)
	}
}

// TestServeWarnsOfAClientNamedAsTheAudience: a client made before
// AUTHD_AUDIENCE took its id (creating one is refused) gets an error in
// serve's log, since its ID tokens carry the access tokens' aud, and the
// token endpoint refuses it (401 invalid_client): no ID token is issued.
func TestServeWarnsOfAClientNamedAsTheAudience(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	code, stdout, stderr := runCLI(t, env, "clients", "create", "--json", "--id", "api.example.org", "--name", "API",
		"--type", "confidential", "--redirect-uri", "https://api.example.org/cb")
	var created struct {
		Secret string `json:"client_secret"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &created) != nil || created.Secret == "" {
		t.Fatalf("clients create: %d %s %s", code, stdout, stderr)
	}
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	env["AUTHD_AUDIENCE"] = "api.example.org"
	s := startServe(t, env)
	req, _ := http.NewRequest("POST", s.url+"/oauth2/token",
		strings.NewReader("grant_type=refresh_token&refresh_token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("api.example.org", created.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "invalid_client") {
		t.Errorf("the token endpoint for a client named as the audience: %d %s; want 401 invalid_client", resp.StatusCode, body)
	}
	s.stop(t)
	if logs := s.stderr.String(); !strings.Contains(logs, "an OpenID client's id is AUTHD_AUDIENCE") ||
		!strings.Contains(logs, "client_id=api.example.org") {
		t.Errorf("serve's log lacks the error:\n%s", logs)
	}
}

// TestServe starts `authd serve` on the SQLite default in an empty
// directory, checks the probes, and stops it as SIGTERM would.
func TestServe(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	env["AUTHD_SERVICE_TOKENS"] = "service-token-0123456789abcdef0123456789"
	s := startServe(t, env)
	url := s.url
	// An open revocation stream must not hold the shutdown up.
	req, _ := http.NewRequest("GET", url+"/v1/auth/revocations", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+env["AUTHD_SERVICE_TOKENS"])
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("revocation stream: %v %v", stream, err)
	}
	defer stream.Body.Close()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: %d %s, Cache-Control %q", path, resp.StatusCode, body, resp.Header.Get("Cache-Control"))
		}
	}
	if code := s.stop(t); code != exitOK {
		t.Errorf("serve exited %d after shutdown, want 0; stderr %s", code, s.stderr.String())
	}
	if !strings.Contains(s.stderr.String(), `msg="shutting down" cause=`) {
		t.Errorf("no shutdown, with its cause, in the log: %s", s.stderr.String())
	}
}

// serving is `authd serve` running in-process.
type serving struct {
	url            string // of the public listener, from the banner
	stdout, stderr *syncbuf.Buffer
	cancel         context.CancelFunc
	done           chan int
	once           sync.Once
	code           int
}

// startServe runs `authd serve` with env, until stop or the end of the
// test, and returns once it has printed its banner (the URL "" when it
// printed none: the test has failed).
func startServe(t *testing.T, env map[string]string) *serving {
	t.Helper()
	if _, set := env["AUTHD_HTTP_ADDR"]; !set {
		// Not the default 127.0.0.1:8080, which anything on the machine
		// may hold (another test's server, a developer's own).
		env = maps.Clone(env)
		env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		s.done <- run(ctx, []string{"serve"}, s.stdout, s.stderr, asEnviron(env))
	}()
	t.Cleanup(func() { s.stop(t) })
	if env["AUTHD_LOG_FORMAT"] == "json" {
		s.url = waitForJSONURL(t, s.stdout, s.stderr)
	} else {
		s.url = waitForURL(t, s.stdout, s.stderr)
	}
	return s
}

// stop shuts serve down as SIGTERM would, and returns its exit status.
func (s *serving) stop(t *testing.T) int {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.code = <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not shut down")
		}
	})
	return s.code
}

var listenRE = regexp.MustCompile(`listening on (http://\S+)`)

func waitForURL(t *testing.T, stdout, stderr *syncbuf.Buffer) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(stdout.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve did not start; stderr: %s", stderr.String())
	return ""
}

// TestReadyzReportsSchemaBehind runs an App whose database falls behind
// after start: /readyz turns 503 with the reason.
func TestReadyzReportsSchemaBehind(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	cfg := configOf(t, env)
	app := NewApp(cfg, newLogger(cfg, io.Discard))
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// Run's jobs write to the data directory until Run returns: the test
	// waits for it before closing the app and removing the directory.
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		app.Close()
	}()
	if _, err := app.db.Migrator().Down(ctx, 1); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + app.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p problem
	json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" ||
		p.Code != "unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("readyz behind: %d %s %+v", resp.StatusCode, resp.Header.Get("Content-Type"), p)
	}
}

type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// TestTroubleshooting checks the seed's three troubleshooting cases as the
// operator sees them.
func TestTroubleshooting(t *testing.T) {
	t.Parallel()
	fresh := postgresEnv(t) // an empty database: schema behind
	missing := sqliteEnv(t)
	missing["DATABASE_URL"] = regexp.MustCompile(`/authd_test_\w+`).ReplaceAllString(fresh["DATABASE_URL"], "/auth_db_missing")
	unreachable := sqliteEnv(t)
	unreachable["DATABASE_URL"] = "postgres://postgres@127.0.0.1:1/auth_db"
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"unreachable", unreachable, []string{"serve"},
			[]string{"could not connect to PostgreSQL at 127.0.0.1:1", "hint: start PostgreSQL"}},
		{"unreachable migrate", unreachable, []string{"migrate", "up"},
			[]string{"could not connect to PostgreSQL at 127.0.0.1:1", "hint: start PostgreSQL"}},
		{"database missing", missing, []string{"serve"},
			[]string{`database "auth_db_missing" does not exist`, "hint: create it: createdb auth_db_missing"}},
		{"schema behind", fresh, []string{"serve"},
			[]string{"database schema is at version 0", "hint: run `authd migrate up`"}},
		{"schema behind check", fresh, []string{"migrate", "check"},
			[]string{"database schema is at version 0", "hint: run `authd migrate up`"}},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.env, tt.args...)
		if code != exitFailure {
			t.Errorf("%s: exit %d, want 1", tt.name, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q lacks %q", tt.name, stderr, w)
			}
		}
		if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 1 {
			t.Errorf("%s: stderr has %d lines, want a message line and a hint line: %q", tt.name, n+1, stderr)
		}
	}
}

func TestMigrateCLI(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join("..", "..", "sqlite", "migrations", "*.sql"))
	first, last := filepath.Base(files[0]), filepath.Base(files[len(files)-1])
	// The head is the newest file's version, not the count: numbers may
	// have gaps (they are reserved per branch).
	version, _, _ := strings.Cut(last, "_")
	head, err := strconv.Atoi(version)
	if err != nil {
		t.Fatalf("migration %s has no version", last)
	}
	for name, env := range map[string]map[string]string{"sqlite": sqliteEnv(t), "postgres": postgresEnv(t)} {
		t.Run(name, func(t *testing.T) {
			steps := []struct {
				args   []string
				code   int
				stdout string
			}{
				{[]string{"migrate", "version"}, 0, "0\n"},
				{[]string{"migrate", "status"}, 0, "pending"},
				{[]string{"migrate", "check"}, 1, ""},
				{[]string{"migrate", "up"}, 0, "up   " + last},
				{[]string{"migrate", "up"}, 0, "already at head"},
				{[]string{"migrate", "check"}, 0, fmt.Sprintf("at head (version %d)", head)},
				{[]string{"migrate", "version"}, 0, fmt.Sprintf("%d\n", head)},
				{[]string{"migrate", "history"}, 0, last + " (head) (current)"},
				{[]string{"migrate", "status"}, 0, "applied"},
				{[]string{"migrate", "redo"}, 0, "down " + last},
				{[]string{"migrate", "down", "1"}, 0, "down " + last},
				{[]string{"migrate", "check"}, 1, ""},
				{[]string{"migrate", "down", "50"}, 1, ""}, // more than are applied: a typo, refused
				{[]string{"migrate", "down", fmt.Sprint(head - 1)}, 0, "down " + first},
				{[]string{"migrate", "down"}, 0, "nothing to roll back"},
				{[]string{"migrate", "redo"}, 1, ""},
				{[]string{"migrate", "up"}, 0, "up   " + first},
			}
			for _, s := range steps {
				code, stdout, stderr := runCLI(t, env, s.args...)
				if code != s.code || !strings.Contains(stdout, s.stdout) {
					t.Fatalf("authd %s: exit %d, stdout %q, stderr %q; want exit %d and %q",
						strings.Join(s.args, " "), code, stdout, stderr, s.code, s.stdout)
				}
			}
		})
	}
}

func TestMigrateCreate(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, d := range []string{"postgres/migrations", "sqlite/migrations"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile(filepath.Join("..", "..", d, "00001_initial_schema.sql"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(root, d, "00001_initial_schema.sql"), src, 0o644)
	}
	code, stdout, stderr := runCLI(t, nil, "migrate", "create", "--root", root, "Add outbox")
	if code != exitOK {
		t.Fatalf("create: exit %d, stderr %q", code, stderr)
	}
	for _, d := range []string{"postgres/migrations", "sqlite/migrations"} {
		path := filepath.Join(root, d, "00002_add_outbox.sql")
		body, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(body), "-- +goose Up") || !strings.Contains(stdout, path) {
			t.Errorf("create did not write %s with goose markers: %v", path, err)
		}
	}
	if code, _, stderr := runCLI(t, nil, "migrate", "create", "--root", root, "drop;table"); code != exitUsage ||
		!strings.Contains(stderr, "letters, digits and underscores") {
		t.Errorf("create with a bad name: exit %d, stderr %q; want 2, the rule told", code, stderr)
	}
	// 100 bytes is the most a name may have.
	if code, _, stderr := runCLI(t, nil, "migrate", "create", "--root", root, strings.Repeat("y", 100)); code != exitOK {
		t.Errorf("create with a 100-byte name: exit %d, stderr %q; want it made", code, stderr)
	}
	for _, d := range []string{"postgres/migrations", "sqlite/migrations"} {
		os.Remove(filepath.Join(root, d, "00003_"+strings.Repeat("y", 100)+".sql"))
	}
	// Too long for a file name, refused before anything is written.
	if code, _, stderr := runCLI(t, nil, "migrate", "create", "--root", root, strings.Repeat("x", 101)); code != exitUsage ||
		!strings.Contains(stderr, "at most 100") {
		t.Errorf("create with a 101-byte name: exit %d, stderr %q; want 2, the bound told", code, stderr)
	}
	os.Remove(filepath.Join(root, "sqlite/migrations/00002_add_outbox.sql"))
	code, _, stderr = runCLI(t, nil, "migrate", "create", "--root", root, "next")
	if code != exitFailure || !strings.Contains(stderr, "out of step") || !strings.Contains(stderr, "hint: every migration has one file per dialect") {
		t.Errorf("create with dialects out of step: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "migrate", "create", "--root", t.TempDir(), "x"); code != exitFailure ||
		!strings.Contains(stderr, "repository root") {
		t.Errorf("create outside the repository: exit %d, stderr %q", code, stderr)
	}
}

// seedArgs is how the tests seed a store: PostgreSQL only with --force.
func seedArgs(store string) []string {
	if store == "postgres" {
		return []string{"seed", "--force"}
	}
	return []string{"seed"}
}

func TestSeedIsIdempotent(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{"sqlite": sqliteEnv(t), "postgres": postgresEnv(t)} {
		t.Run(name, func(t *testing.T) {
			if name == "postgres" {
				if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
					t.Fatalf("migrate up: %s", stderr)
				}
			}
			code, stdout, stderr := runCLI(t, env, seedArgs(name)...)
			if code != exitOK || !strings.Contains(stdout, "3 demo account(s) created") || !strings.Contains(stdout, DemoPassword) {
				t.Fatalf("first seed: exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
			before := snapshot(t, env)
			code, stdout, _ = runCLI(t, env, seedArgs(name)...)
			if code != exitOK || !strings.Contains(stdout, "0 demo account(s) created, 3 already present") {
				t.Fatalf("second seed: exit %d, stdout %q", code, stdout)
			}
			if after := snapshot(t, env); after != before {
				t.Errorf("second seed changed the data:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestSeedRefusesPostgreSQL: the demo accounts are active and verified with
// a published password, so seed refuses the database production runs on
// unless --force says it is not one.
func TestSeedRefusesPostgreSQL(t *testing.T) {
	t.Parallel()
	env := postgresEnv(t)
	if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("migrate up: %s", stderr)
	}
	code, stdout, stderr := runCLI(t, env, "seed")
	if code != exitFailure || stdout != "" || strings.Count(stderr, "\n") != 2 ||
		!strings.Contains(stderr, "hint:") || !strings.Contains(stderr, "--force") {
		t.Errorf("seed on PostgreSQL: exit %d, stdout %q, stderr %q; want 1, one line and a hint naming --force", code, stdout, stderr)
	}
	db, err := openDatabase(context.Background(), configOf(t, env), atHead, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, a := range demoAccounts {
		if _, err := db.UserByEmail(context.Background(), a.email); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("a refused seed left %s behind (%v)", a.email, err)
		}
	}
	if code, stdout, stderr := runCLI(t, env, "seed", "--force"); code != exitOK || !strings.Contains(stdout, "3 demo account(s) created") {
		t.Errorf("seed --force on PostgreSQL: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// snapshot describes the demo data: each account and its events.
func snapshot(t *testing.T, env map[string]string) string {
	t.Helper()
	ctx := context.Background()
	cfg := configOf(t, env)
	db, err := openDatabase(ctx, cfg, atHead, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	for _, a := range demoAccounts {
		u, err := db.UserByEmail(ctx, a.email)
		if err != nil {
			t.Fatalf("demo account %s: %v", a.email, err)
		}
		if ok, _, err := password.Verify(DemoPassword, u.PasswordHash, cfg.Argon2); !ok || err != nil {
			t.Errorf("%s: the printed demo password does not verify (%v)", a.email, err)
		}
		if u.AccountStatus != a.status || u.IsLocked(time.Now()) != (a.status == authd.StatusLocked) {
			t.Errorf("%s: status %s, IsLocked %v", a.email, u.AccountStatus, u.IsLocked(time.Now()))
		}
		logs, err := db.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: u.ID})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s %s %d;", u.ID, u.Email, u.AccountStatus, len(logs))
	}
	all, _ := db.SecurityLogs(ctx, authd.SecurityLogFilter{Limit: authd.MaxListLimit})
	fmt.Fprintf(&b, "total logs %d", len(all))
	return b.String()
}

func TestKeysCLI(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	code, stdout, _ := runCLI(t, env, "keys", "list")
	if code != exitOK || !strings.Contains(stdout, "no keys") {
		t.Errorf("list of an empty directory: %d %q", code, stdout)
	}
	// Nothing to rotate: a mistyped directory is not given a first key.
	code, stdout, stderr := runCLI(t, env, "keys", "rotate")
	if code != exitFailure || !strings.Contains(stderr, "no EdDSA key in") || !strings.Contains(stderr, "keys generate") {
		t.Errorf("rotate in an empty directory: %d %q %q; want it refused", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, env, "keys", "generate")
	if code != exitOK || !strings.Contains(stdout, "generated EdDSA key") || !strings.Contains(stdout, "signs new tokens from now on") {
		t.Fatalf("generate in an empty directory (the key signs at once): %d %q %q", code, stdout, stderr)
	}
	// A rotated-in key is published first and signs once cached JWKS copies
	// have expired; the old key signs until then.
	code, stdout, _ = runCLI(t, env, "keys", "rotate")
	if code != exitOK || !strings.Contains(stdout, "generated EdDSA key") || !strings.Contains(stdout, "published in JWKS now, it signs new tokens from ") ||
		!strings.Contains(stdout, "(in 6m0s)") {
		t.Fatalf("rotate: %d %q", code, stdout)
	}
	// The refresh-token key in the same directory is not a signing key.
	if _, err := token.RefreshKey(filepath.Join(env["AUTHD_DATA_DIR"], "keys")); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCLI(t, env, "keys", "list")
	var lines, idLines []string // the EdDSA keys; the RS256 ID-token key rotate made beside them
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		switch {
		case strings.Contains(l, "RS256"):
			idLines = append(idLines, l)
		default:
			lines = append(lines, l)
		}
	}
	if code != exitOK || len(lines) != 3 || !strings.Contains(lines[1], " published ") || !strings.Contains(lines[1], "signing from ") ||
		!strings.Contains(lines[2], " signing ") || !strings.Contains(lines[2], "retiring from ") {
		t.Errorf("list after rotate (newest first: published, then signing): %d\n%s", code, stdout)
	}
	if len(idLines) != 1 || !strings.Contains(idLines[0], " signing ") {
		t.Errorf("list after rotate: the ID-token key %q; want one RS256 key, signing", idLines)
	}
	env["AUTHD_SIGNING_ALG"] = "ES256"
	runCLI(t, env, "keys", "generate")
	_, stdout, _ = runCLI(t, env, "keys", "list")
	if !strings.Contains(stdout, "ES256") || !strings.Contains(stdout, "other algorithm") {
		t.Errorf("list with two algorithms:\n%s", stdout)
	}
	if code, _, _ := runCLI(t, env, "keys", "spin"); code != exitUsage {
		t.Errorf("unknown action: exit %d", code)
	}
}

// TestKeysRotateKeepsKeysOfAnyLifetime: `keys rotate` run without the
// servers' environment (AUTHD_ACCESS_TOKEN_TTL at its 15m default) keeps a
// key that a server with the longest lifetime allowed may still accept
// tokens of, and deletes it once that lifetime has passed too.
func TestKeysRotateKeepsKeysOfAnyLifetime(t *testing.T) {
	t.Parallel()
	// The rotation deletes by the bound the configuration enforces.
	for ttl, ok := range map[time.Duration]bool{token.MaxAccessTokenTTL: true, token.MaxAccessTokenTTL + time.Second: false} {
		env := sqliteEnv(t)
		env["AUTHD_ACCESS_TOKEN_TTL"] = ttl.String()
		if _, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); (err == nil) != ok {
			t.Errorf("AUTHD_ACCESS_TOKEN_TTL=%s: %v; want accepted %v (token.MaxAccessTokenTTL is the bound)", ttl, err, ok)
		}
	}
	for _, tc := range []struct {
		name      string
		age       time.Duration // of the old key's successor
		deleted   bool
		listsNext string
	}{
		{"retired for 15m only", time.Hour, false, "deleted by `authd keys rotate` from "},
		{"retired for any lifetime", token.MaxAccessTokenTTL + time.Hour, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := sqliteEnv(t)
			dir := filepath.Join(env["AUTHD_DATA_DIR"], "keys")
			old, err := token.Generate(dir, "EdDSA", time.Now().Add(-tc.age-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := token.Generate(dir, "EdDSA", time.Now().Add(-tc.age)); err != nil {
				t.Fatal(err)
			}
			if !tc.deleted {
				_, stdout, _ := runCLI(t, env, "keys", "list")
				line := lineWith(stdout, old.ID)
				if !strings.Contains(line, " retired ") || !strings.Contains(line, tc.listsNext) {
					t.Errorf("list shows the old key as %q; want retired (15m lifetime), %q", line, tc.listsNext)
				}
			}
			code, stdout, stderr := runCLI(t, env, "keys", "rotate")
			if code != exitOK {
				t.Fatalf("rotate: %d %q %q", code, stdout, stderr)
			}
			_, statErr := os.Stat(filepath.Join(dir, old.ID+".pem"))
			if gone := os.IsNotExist(statErr); gone != tc.deleted || strings.Contains(stdout, "deleted retired key "+old.ID) != tc.deleted {
				t.Errorf("rotate: old key deleted %v, want %v\n%s", gone, tc.deleted, stdout)
			}
		})
	}
}

// TestKeysListHandNamed: a key added by hand shows no creation time, and
// stops signing once a kid-named key exists, whatever its file time.
func TestKeysListHandNamed(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	dir := filepath.Join(env["AUTHD_DATA_DIR"], "keys")
	src, err := token.Generate(t.TempDir(), "EdDSA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(src.Private)
	os.MkdirAll(dir, 0o700)
	hand := filepath.Join(dir, "by-hand.pem")
	if err := os.WriteFile(hand, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour) // newer than any key made below
	os.Chtimes(hand, future, future)
	_, stdout, _ := runCLI(t, env, "keys", "list")
	if line := lineWith(stdout, "by-hand"); !strings.Contains(line, "unknown (added by hand)") || !strings.Contains(line, " signing ") ||
		!strings.Contains(line, "until a kid-named key exists") {
		t.Errorf("list of a key added by hand alone: %q", line)
	}
	code, stdout, stderr := runCLI(t, env, "keys", "generate")
	if code != exitOK || !strings.Contains(stdout, "signs new tokens from now on") {
		t.Fatalf("generate beside a key added by hand: %d %q %q", code, stdout, stderr)
	}
	_, stdout, _ = runCLI(t, env, "keys", "list")
	if line := lineWith(stdout, "by-hand"); !strings.Contains(line, " retiring ") || !strings.Contains(line, "retired (out of JWKS) from ") {
		t.Errorf("list of a key added by hand beside a kid-named one: %q\n%s", line, stdout)
	}
}

func lineWith(s, sub string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}

// TestServeStopsOnEmptiedKeysDirectory: once every key is removed from
// the directory (as an operator removes a compromised one), a running server
// stops trusting it at its next reread: the token it signed is refused
// though it was verified before, JWKS publishes nothing, and a login fails
// with a problem (logged at error level) instead of signing with it.
func TestServeStopsOnEmptiedKeysDirectory(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	if code, _, stderr := runCLI(t, env, "seed"); code != exitOK {
		t.Fatalf("seed: %s", stderr)
	}
	s := startServe(t, env)
	url, stderr := s.url, s.stderr
	call := func(method, path, bearer, body string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	login := `{"email":"active@demo.authd.dev","password":"` + DemoPassword + `"}`
	code, _, body := call("POST", "/v1/auth/login", "", login)
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &pair) != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	if code, _, body := call("GET", "/v1/users/me", pair.AccessToken, ""); code != http.StatusOK {
		t.Fatalf("me: %d %s", code, body)
	}

	dir := filepath.Join(env["AUTHD_DATA_DIR"], "keys")
	keys, _ := token.Load(dir)
	for _, k := range keys {
		if err := os.Remove(filepath.Join(dir, k.ID+".pem")); err != nil {
			t.Fatal(err)
		}
	}
	// A token naming a kid the server does not know makes it reread the
	// directory at once, as it does every 30 seconds.
	unknownKid := `{"alg":"EdDSA","kid":"20260101T000000.000000000Z-0011aabb","typ":"at+jwt"}`
	forged := base64.RawURLEncoding.EncodeToString([]byte(unknownKid)) + ".e30.c2ln"
	if code, _, body := call("GET", "/v1/users/me", forged, ""); code != http.StatusUnauthorized {
		t.Fatalf("a token of an unknown kid: %d %s", code, body)
	}

	if code, _, body := call("GET", "/v1/users/me", pair.AccessToken, ""); code != http.StatusUnauthorized {
		t.Errorf("a token of the removed key: %d %s, want 401", code, body)
	}
	if code, _, body := call("GET", "/.well-known/jwks.json", "", ""); code != http.StatusOK || strings.TrimSpace(body) != `{"keys":[]}` {
		t.Errorf("JWKS with no key: %d %s, want no key", code, body)
	}
	code, ctype, body := call("POST", "/v1/auth/login", "", login)
	if code != http.StatusInternalServerError || ctype != "application/problem+json" || strings.Contains(body, dir) {
		t.Errorf("login with no key: %d %s %s, want a problem that does not show the directory", code, ctype, body)
	}
	if log := stderr.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "holds no EdDSA key") {
		t.Errorf("the failed login logged no error naming the cause:\n%s", log)
	}
}

// TestServePublishesARotatedKeyAtOnce: the key `authd keys rotate` writes
// is in a running server's JWKS at the next request (SPEC 6.3: "publishes
// the new key in JWKS at once"), not at the server's next periodic reread
// of the directory, 30 s later, as before.
func TestServePublishesARotatedKeyAtOnce(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	s := startServe(t, env)
	jwks := func() string {
		t.Helper()
		resp, err := http.Get(s.url + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	before := jwks()
	code, stdout, stderr := runCLI(t, env, "keys", "rotate")
	fields := strings.Fields(stdout)
	if code != exitOK || len(fields) < 4 || fields[0] != "generated" {
		t.Fatalf("rotate: %d %q %q", code, stdout, stderr)
	}
	kid := fields[3]
	if strings.Contains(before, kid) {
		t.Fatalf("the new key %s was published before it was made: %s", kid, before)
	}
	if after := jwks(); !strings.Contains(after, `"kid":"`+kid+`"`) {
		t.Errorf("JWKS just after keys rotate: %s, want the new key %s", after, kid)
	}
}

// TestServeMetricsAndMail runs the real App: a registration's mail goes
// through the outbox to the development mailer, and /metrics on the admin
// listener reports it.
func TestServeMetricsAndMail(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	cfg := configOf(t, env)
	var logs syncbuf.Buffer
	app := NewApp(cfg, newLogger(cfg, &logs))
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- app.Run(ctx) }()
	base := "http://" + app.Addr().String()
	resp, err := http.Post(base+"/v1/auth/register", "application/json",
		strings.NewReader(`{"email":"m@example.org","password":"a sturdy passphrase","consent":true}`))
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("register: %v %v", resp, err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "verify-email?token=") {
		if time.Now().After(deadline) {
			t.Fatalf("no verification link in the log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if files, _ := filepath.Glob(filepath.Join(cfg.DataDir, "outbox", "*.eml")); len(files) != 1 {
		t.Errorf("%d .eml files in the outbox directory", len(files))
	}
	wants := []string{
		`authd_http_requests_total{route="POST /v1/auth/register",status="202"} 1`,
		`authd_security_events_total{event="registration",result="success"} 1`,
		`authd_mail_deliveries_total{kind="verify_email",outcome="sent"} 1`,
		`authd_mail_outbox_pending 0`, `authd_password_hash_seconds_count 1`, `authd_db_connections_in_use`,
		`authd_connections_open`, `authd_connections_refused_total{reason="client"} 0`,
	}
	// The link is logged as the mail is sent, a moment before the outbox
	// records the delivery: scrape until it has, or the deadline.
	for {
		body := get(t, "http://"+app.AdminAddr().String()+"/metrics")
		var missing []string
		for _, want := range wants {
			if !strings.Contains(body, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("/metrics lacks %q", missing)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	app.Close()
}

func TestAdminAndPurgeCLI(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{"sqlite": sqliteEnv(t), "postgres": postgresEnv(t)} {
		t.Run(name, func(t *testing.T) {
			env["USER"] = "operator"
			if name == "postgres" {
				runCLI(t, env, "migrate", "up")
			}
			if code, _, stderr := runCLI(t, env, seedArgs(name)...); code != exitOK {
				t.Fatalf("seed: %s", stderr)
			}
			steps := []struct {
				args   []string
				code   int
				stdout string
			}{
				{[]string{"admin", "users", "list"}, 0, "locked@demo.authd.dev"},
				{[]string{"admin", "users", "list", "--status", "inactive", "--json"}, 0, `"email": "inactive@demo.authd.dev"`},
				{[]string{"admin", "users", "list", "--limit", "1"}, 0, "more: --cursor "},
				{[]string{"admin", "users", "show", "active@demo.authd.dev"}, 0, "active"},
				{[]string{"admin", "users", "lock", "active@demo.authd.dev", "--until", "2099-01-01T00:00:00Z"}, 0, "locked active@demo.authd.dev"},
				{[]string{"admin", "users", "show", "active@demo.authd.dev", "--json"}, 0, `"account_locked_until": "2099-01-01T00:00:00Z"`},
				{[]string{"admin", "users", "show", "active@demo.authd.dev", "--json"}, 0, `"lock_reason": "admin"`},
				{[]string{"admin", "users", "show", "locked@demo.authd.dev", "--json"}, 0, `"lock_reason": "admin"`},
				{[]string{"admin", "users", "unlock", "active@demo.authd.dev"}, 0, "unlocked"},
				{[]string{"admin", "users", "show", "active@demo.authd.dev", "--json"}, 0, `"lock_reason": null`},
				{[]string{"admin", "users", "revoke-sessions", "active@demo.authd.dev"}, 0, "ended every session"},
				{[]string{"admin", "users", "mfa", "active@demo.authd.dev"}, 0, "recovery codes left: 0"},
				{[]string{"admin", "users", "mfa", "active@demo.authd.dev", "--json"}, 0, `"items": []`},
				{[]string{"admin", "users", "reset-mfa", "active@demo.authd.dev"}, 0, "had no second factor to remove"},
				{[]string{"admin", "logs", "--user", "active@demo.authd.dev", "--json"}, 0, `"action": "reset_mfa"`},
				{[]string{"admin", "users", "delete", "inactive@demo.authd.dev"}, 2, ""},
				{[]string{"admin", "users", "delete", "inactive@demo.authd.dev", "--yes"}, 0, "erased inactive@demo.authd.dev"},
				{[]string{"admin", "users", "show", "inactive@demo.authd.dev"}, 1, ""},
				{[]string{"admin", "logs", "--event", "admin_action"}, 0, "admin_action"},
				{[]string{"admin", "logs", "--user", "active@demo.authd.dev", "--json"}, 0, `"action": "unlock"`},
				{[]string{"admin", "logs", "--since", "yesterday"}, 2, ""},
				{[]string{"admin", "users", "frobnicate", "x"}, 2, ""},
				// A flag the command does not use is refused, not ignored.
				{[]string{"admin", "users", "unlock", "active@demo.authd.dev", "--until", "2099-01-01T00:00:00Z"}, 2, ""},
				{[]string{"admin", "users", "list", "--user", "active@demo.authd.dev"}, 2, ""},
				{[]string{"admin", "users", "show", "active@demo.authd.dev", "--yes"}, 2, ""},
				{[]string{"admin", "logs", "--status", "active"}, 2, ""},
				{[]string{"admin", "mail", "list", "--email", "x"}, 2, ""},
				{[]string{"admin", "users", "show", "nobody@demo.authd.dev"}, 1, ""},
				{[]string{"admin", "mail", "list"}, 0, "ID"},
				{[]string{"admin", "mail", "list", "--dead", "--json"}, 0, `"items": []`},
				{[]string{"admin", "mail", "retry", "nope"}, 2, ""},
				{[]string{"admin", "mail", "retry", "0197c0de-0000-7000-8000-000000000000"}, 1, ""},
				{[]string{"purge", "--dry-run"}, 0, "would delete 0 security logs"},
				{[]string{"purge", "--json"}, 0, `"dry_run":false`},
			}
			for _, s := range steps {
				code, stdout, stderr := runCLI(t, env, s.args...)
				if code != s.code || !strings.Contains(stdout, s.stdout) {
					t.Errorf("authd %s: exit %d, stdout %q, stderr %q; want exit %d and %q",
						strings.Join(s.args, " "), code, stdout, stderr, s.code, s.stdout)
				}
			}
			_, stdout, _ := runCLI(t, env, "admin", "logs", "--event", "admin_action", "--json")
			if !strings.Contains(stdout, "authd admin (cli, operator)") {
				t.Errorf("admin actions do not name the CLI operator: %s", stdout)
			}
		})
	}
}

// TestAdminListener: /metrics is served on the admin listener only, without
// a token, whether or not the admin API is on (its counters would tell an
// outsider whether an address has an account); the admin API needs
// AUTHD_ADMIN_TOKEN; an empty AUTHD_ADMIN_ADDR turns the listener off.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"", "admin-secret-0123456789abcdef0123456789"} {
		env := sqliteEnv(t)
		env["AUTHD_HTTP_ADDR"], env["AUTHD_ADMIN_TOKEN"] = "127.0.0.1:0", token
		cfg := configOf(t, env)
		app := NewApp(cfg, newLogger(cfg, io.Discard))
		ctx, cancel := context.WithCancel(context.Background())
		if err := app.Open(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- app.Run(ctx) }()
		public, admin := "http://"+app.Addr().String(), "http://"+app.AdminAddr().String()

		if resp, err := http.Get(public + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("token %q: public GET /metrics: %v %v; want 404", token, resp, err)
		} else {
			resp.Body.Close()
		}
		if body := get(t, admin+"/metrics"); !strings.Contains(body, "authd_http_requests_total") {
			t.Errorf("token %q: admin GET /metrics without a token lacks the metrics", token)
		}
		get(t, admin+"/healthz")

		status := func(withToken bool) (int, problem) {
			req, _ := http.NewRequest("GET", admin+"/v1/admin/users", nil)
			if withToken {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p problem
			json.NewDecoder(resp.Body).Decode(&p)
			return resp.StatusCode, p
		}
		if token == "" {
			if code, p := status(false); code != http.StatusNotFound || !strings.Contains(p.Detail, "AUTHD_ADMIN_TOKEN") {
				t.Errorf("admin API without AUTHD_ADMIN_TOKEN: %d %+v; want 404 naming AUTHD_ADMIN_TOKEN", code, p)
			}
		} else {
			if code, _ := status(true); code != http.StatusOK {
				t.Errorf("admin API with the token: %d, want 200", code)
			}
			if code, _ := status(false); code != http.StatusUnauthorized {
				t.Errorf("admin API without the token: %d, want 401", code)
			}
		}
		cancel()
		<-done
		app.Close()
	}

	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"], env["AUTHD_ADMIN_ADDR"] = "127.0.0.1:0", ""
	cfg := configOf(t, env)
	app := NewApp(cfg, newLogger(cfg, io.Discard))
	if err := app.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if app.AdminAddr() != nil {
		t.Errorf("AUTHD_ADMIN_ADDR empty: admin listener on %v", app.AdminAddr())
	}
	app.Close()
}

// configOf loads the configuration from env alone.
func configOf(t *testing.T, env map[string]string) *Config {
	t.Helper()
	cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSeedRefusesAnotherSQLiteDatabase: only the zero-set-up database
// (DATABASE_URL unset) is seeded without --force; an SQLite file an operator
// chose may be serving real users, even when it is the default's path.
func TestSeedRefusesAnotherSQLiteDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, path := range []string{filepath.Join(dir, "prod.db"), filepath.Join(data, "authd.db")} {
		chosen := map[string]string{"DATABASE_URL": "sqlite://" + path, "AUTHD_DATA_DIR": data}
		if code, _, stderr := runCLI(t, chosen, "seed"); code != exitFailure || !strings.Contains(stderr, "--force") {
			t.Errorf("seed of %s named in DATABASE_URL: exit %d, stderr %q; want 1 and a hint naming --force", path, code, stderr)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a refused seed created %s", data)
	}
	// Its help says so, not that only PostgreSQL needs --force.
	if _, help, _ := runCLI(t, nil, "seed", "--help"); !strings.Contains(help, "DATABASE_URL unset") ||
		!strings.Contains(help, "PostgreSQL or SQLite") {
		t.Errorf("seed --help does not say that --force is needed for any DATABASE_URL:\n%s", help)
	}
	def := map[string]string{"AUTHD_DATA_DIR": data}
	if code, stdout, stderr := runCLI(t, def, "seed"); code != exitOK || !strings.Contains(stdout, "3 demo account(s) created") {
		t.Errorf("seed of the default database: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestServeRefusesBrokenPageTemplates: an override of the mail-link pages
// that does not parse stops serve before it listens, naming the file.
func TestServeRefusesBrokenPageTemplates(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pages"), 0o700)
	os.WriteFile(filepath.Join(dir, "pages", "pages.html"), []byte(`{{define "layout"}}{{end`), 0o600)
	env["AUTHD_TEMPLATES_DIR"] = dir
	code, _, stderr := runCLI(t, env, "serve")
	if code != exitFailure || !strings.Contains(stderr, filepath.Join(dir, "pages", "pages.html")) || !strings.Contains(stderr, "hint:") {
		t.Errorf("serve with a broken pages.html: exit %d, stderr %q; want 1 naming the file, with a hint", code, stderr)
	}
}

// TestDevMailFilesAreErasedUnderSMTP: the development mailer's files hold
// addresses and links; once AUTHD_SMTP_URL is set on the same data
// directory, an erasure (authd admin users delete) still removes the
// erased address's files and retention (authd purge) the old ones. They
// survived both before, as no mailer reached them.
func TestDevMailFilesAreErasedUnderSMTP(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	if code, _, stderr := runCLI(t, env, seedArgs("sqlite")...); code != exitOK {
		t.Fatalf("seed: %s", stderr)
	}
	env["AUTHD_SMTP_URL"] = "smtp://127.0.0.1:1" // nothing is sent by these commands
	dir := filepath.Join(env["AUTHD_DATA_DIR"], "outbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, to string, at time.Time) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("To: "+to+"\r\nSubject: x\r\n\r\nhttp://127.0.0.1:8080/reset-password?token=secret\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
		return path
	}
	old := write("old.eml", "someone@example.org", time.Now().AddDate(-1, 0, 0))
	erased := write("erased.eml", "inactive@demo.authd.dev", time.Now())
	kept := write("kept.eml", "active@demo.authd.dev", time.Now())
	if code, _, stderr := runCLI(t, env, "admin", "users", "delete", "inactive@demo.authd.dev", "--yes"); code != exitOK {
		t.Fatalf("delete: %s", stderr)
	}
	if code, _, stderr := runCLI(t, env, "purge"); code != exitOK {
		t.Fatalf("purge: %s", stderr)
	}
	for path, gone := range map[string]bool{old: true, erased: true, kept: false} {
		if _, err := os.Stat(path); (err == nil) == gone {
			t.Errorf("%s: stat %v, want it gone %v", filepath.Base(path), err, gone)
		}
	}
}

// TestPurgePastAFailingErasure: a purge past an erasure it cannot finish
// (here a trigger refuses to clear its rows) deletes the rest, prints what
// it did, and exits 1 with the erasure's error; --json prints the counts
// and the error. Before, it printed nothing but the error, every run.
func TestPurgePastAFailingErasure(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	if code, _, stderr := runCLI(t, env, seedArgs("sqlite")...); code != exitOK {
		t.Fatalf("seed: %s", stderr)
	}
	db, err := sql.Open("sqlite", filepath.Join(env["AUTHD_DATA_DIR"], "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var user string
	if err := db.QueryRow(`SELECT id FROM users WHERE email = 'inactive@demo.authd.dev'`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	old := time.Now().AddDate(-1, 0, 0).UTC().Format("2006-01-02T15:04:05.000000Z")
	if _, err := db.Exec(`INSERT INTO security_logs (id, event_type, user_id, "timestamp", ip_address, result)
		VALUES ('00000000-0000-4000-8000-000000000001', 'login_failure', NULL, ?1, '192.0.2.1', 'failure'),
			('00000000-0000-4000-8000-000000000002', 'login_failure', ?2, ?1, '192.0.2.1', 'failure');
		CREATE TRIGGER refuse_clearing BEFORE UPDATE ON security_logs BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`,
		old, user); err != nil {
		t.Fatal(err)
	}
	// Its rows cannot be cleared after the erasure: it stands, pending.
	if code, _, stderr := runCLI(t, env, "admin", "users", "delete", "inactive@demo.authd.dev", "--yes"); code != exitOK {
		t.Fatalf("delete: %s", stderr)
	}
	code, stdout, stderr := runCLI(t, env, "purge")
	if code != exitFailure || !strings.Contains(stdout, "deleted 2 security logs") || !strings.Contains(stderr, user) ||
		!strings.Contains(stdout, "the purge failed") {
		t.Errorf("purge past a failing erasure: exit %d, stdout %q, stderr %q; want 1, what it deleted, and the erasure's error",
			code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, env, "purge", "--json")
	var out struct {
		Result authd.PurgeResult `json:"result"`
		Error  string            `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); code != exitFailure || err != nil || !strings.Contains(out.Error, user) {
		t.Errorf("purge --json past a failing erasure: exit %d, %q (%v); want 1, the counts and the error", code, stdout, err)
	}
}

// TestHangupEndsTheContext: SIGHUP (a closed terminal) ends the context
// serve shuts down gracefully on, as SIGTERM does, instead of killing the
// process mid-request. Not parallel: it signals the test's own process,
// which SIGHUP's default action would end.
func TestHangupEndsTheContext(t *testing.T) {
	if signal.Ignored(syscall.SIGHUP) {
		t.Skip("SIGHUP is ignored in this process (nohup): signalContext leaves it so")
	}
	ctx, stop := signalContext(context.Background())
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not end the context")
	}
	if !errors.Is(context.Cause(ctx), errHangup) {
		t.Errorf("the context's cause %v, want the hangup named (serve logs it)", context.Cause(ctx))
	}
	// A closed terminal sends another, once the shutdown is under way: it
	// is dropped, or it would kill the process mid-shutdown (and this
	// test with it).
	time.Sleep(100 * time.Millisecond) // what ctx's end set off has run
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
}

// TestSecondSignalWhenIgnoredAtStart: a SIGINT ignored at start (a job a
// script ran in the background) still stops serve gracefully, and its
// second ends the process at once (130), as when its default was in place:
// without care it would be ignored again once the first was handled. Not
// parallel: it signals the test's own process.
func TestSecondSignalWhenIgnoredAtStart(t *testing.T) {
	signal.Ignore(os.Interrupt)
	defer signal.Reset(os.Interrupt)
	codes := make(chan int, 1)
	defer func(f func(int)) { exit = f }(exit)
	exit = func(code int) { codes <- code }
	ctx, stop := signalContext(context.Background())
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first SIGINT did not end the context")
	}
	if cause := context.Cause(ctx); cause == nil || !strings.Contains(cause.Error(), "interrupt") {
		t.Errorf("the context's cause %v, want the signal named (serve logs it)", cause)
	}
	time.Sleep(100 * time.Millisecond) // what ctx's end set off has run
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-codes:
		if code != 130 {
			t.Errorf("the second SIGINT exited %d, want 130", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second SIGINT was dropped")
	}
}

// TestEmptyValueMeansUnset: a setting set to nothing (or blanks), as in a
// .env copied from .env.example and half filled in, takes its default, as
// .env.example says; AUTHD_ADMIN_ADDR= alone means something else: the
// admin listener off.
func TestEmptyValueMeansUnset(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	for _, k := range []string{"AUTHD_LOCKOUT_THRESHOLD", "AUTHD_AUDIENCE", "AUTHD_ACCESS_TOKEN_TTL", "AUTHD_RATE_LIMIT"} {
		env[k] = " "
	}
	env["AUTHD_ISSUER"], env["AUTHD_ADMIN_ADDR"] = "", ""
	env["AUTHD_PUBLIC_URL"] = "http://localhost:08080/"
	cfg := configOf(t, env)
	if cfg.PublicURL != "http://localhost:8080" {
		t.Errorf("AUTHD_PUBLIC_URL=http://localhost:08080/ read as %q; want the port as browsers write it", cfg.PublicURL)
	}
	if cfg.LockoutThreshold != 5 || cfg.Audience != "authd" || cfg.AccessTokenTTL != 15*time.Minute || !cfg.RateLimit ||
		cfg.Issuer != cfg.PublicURL || cfg.AdminAddr != "" {
		t.Errorf("empty settings: threshold %d, audience %q, access TTL %s, rate limit %v, issuer %q, admin %q; "+
			"want the defaults, and no admin listener", cfg.LockoutThreshold, cfg.Audience, cfg.AccessTokenTTL, cfg.RateLimit,
			cfg.Issuer, cfg.AdminAddr)
	}
}
