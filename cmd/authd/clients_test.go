package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/token"
)

// TestClientsCLI registers, lists, shows, rotates and deletes clients with
// the CLI on both stores, and checks that the secret it prints is the one a
// server (the same keys directory) accepts.
func TestClientsCLI(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{"sqlite": sqliteEnv(t), "postgres": postgresEnv(t)} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, env, "migrate", "up"); code != exitOK {
				t.Fatalf("migrate up: %s", stderr)
			}
			cli := func(wantCode int, args ...string) string {
				t.Helper()
				code, stdout, stderr := runCLI(t, env, args...)
				if code != wantCode {
					t.Fatalf("authd %s: exit %d (%s%s), want %d", strings.Join(args, " "), code, stdout, stderr, wantCode)
				}
				return stdout + stderr
			}
			out := cli(exitOK, "clients", "create", "--json", "--id", "proxy", "--name", "oauth2-proxy", "--type", "confidential",
				"--redirect-uri", "https://app.example.org/oauth2/callback", "--redirect-uri", "http://127.0.0.1:4180/oauth2/callback",
				"--post-logout-uri", "https://app.example.org/")
			var created struct {
				ClientID     string   `json:"client_id"`
				ClientSecret string   `json:"client_secret"`
				RedirectURIs []string `json:"redirect_uris"`
			}
			if err := json.Unmarshal([]byte(out), &created); err != nil || created.ClientID != "proxy" ||
				created.ClientSecret == "" || len(created.RedirectURIs) != 2 {
				t.Fatalf("create --json: %s (%v)", out, err)
			}
			out = cli(exitOK, "clients", "create", "--id", "spa", "--name", "SPA", "--type", "public", "--redirect-uri", "http://localhost:5173/cb", "--first-party")
			if !strings.Contains(out, "SPA") || strings.Contains(out, "client_secret") {
				t.Errorf("create public: %s; want no secret", out)
			}
			// A well-formed command the client refuses: a failure, not a usage error.
			if out := cli(exitFailure, "clients", "rotate-secret", "spa"); !strings.HasPrefix(out, "authd clients: a public client has no secret to rotate\nhint: ") {
				t.Errorf("rotate-secret of a public client: %s; want why, and a hint", out)
			}
			if out := cli(exitOK, "clients", "list"); !strings.Contains(out, "proxy") || !strings.Contains(out, "SPA") {
				t.Errorf("list: %s", out)
			}
			if out := cli(exitOK, "clients", "show", "proxy"); !strings.Contains(out, "http://127.0.0.1:4180/oauth2/callback") ||
				strings.Contains(out, created.ClientSecret) {
				t.Errorf("show: %s", out)
			}
			out = cli(exitOK, "clients", "rotate-secret", "proxy")
			fresh := strings.TrimSpace(strings.SplitN(strings.SplitN(out, "client_secret:", 2)[1], "\n", 2)[0])
			if fresh == "" || fresh == created.ClientSecret {
				t.Fatalf("rotate-secret: %s", out)
			}
			// A secret shown once is not shown to the null device (nor to a
			// closed stdout, which the Go runtime makes it): refused before
			// anything changes (the fresh secret goes on working, below).
			null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer null.Close()
			for _, args := range [][]string{{"clients", "rotate-secret", "proxy"}, {"clients", "create", "--id", "lost",
				"--name", "Lost", "--type", "confidential", "--redirect-uri", "https://app.example.org/cb"}} {
				var stderr strings.Builder
				code := run(context.Background(), args, null, &stderr, asEnviron(env))
				if code != exitFailure || !strings.Contains(stderr.String(), "stdout is "+os.DevNull) {
					t.Errorf("authd %s > %s: exit %d, %s; want refused", strings.Join(args, " "), os.DevNull, code, stderr.String())
				}
			}
			cli(exitFailure, "clients", "show", "lost")
			// Nor is a rotation whose secret cannot be written (a pipe
			// closed, a full disk) kept: the fresh secret stays in force.
			for _, args := range [][]string{{"clients", "rotate-secret", "proxy"}, {"clients", "rotate-secret", "--json", "proxy"}} {
				var stderr strings.Builder
				code := run(context.Background(), args, failingWriter{}, &stderr, asEnviron(env))
				if code != exitFailure || !strings.Contains(stderr.String(), "could not be written") ||
					!strings.Contains(stderr.String(), "the old secret stays in force") {
					t.Errorf("authd %s, stdout failing: exit %d, %s; want refused, the old secret kept", strings.Join(args, " "), code, stderr.String())
				}
			}

			// A taken id is told as such, not in the store's words.
			if out := cli(exitFailure, "clients", "create", "--id", "spa", "--name", "Again", "--type", "public",
				"--redirect-uri", "http://localhost:5173/cb"); !strings.Contains(out, "a client with this id exists") ||
				strings.Contains(out, "constraint") || strings.Contains(out, "SQLSTATE") {
				t.Errorf("create with a taken id: %s; want why, without the database's wording", out)
			}
			// A keys directory other than the servers' (a typo) is refused
			// while clients exist, before a secret is digested under a key
			// made there, which no server would accept.
			wrongKeys := filepath.Join(t.TempDir(), "keys")
			typo := maps.Clone(env)
			typo["AUTHD_KEYS_DIR"] = wrongKeys
			code, stdout, stderr := runCLI(t, typo, "clients", "rotate-secret", "proxy")
			if code != exitFailure || !strings.Contains(stderr, "holds no refresh-token.key") || stdout != "" {
				t.Errorf("rotate-secret with another keys directory: exit %d, %s%s; want refused, no secret", code, stdout, stderr)
			}
			// A command that digests no secret needs no key, and makes none.
			if code, stdout, stderr := runCLI(t, typo, "clients", "list"); code != exitOK || !strings.Contains(stdout, "proxy") {
				t.Errorf("list with another keys directory: exit %d, %s%s; want the clients", code, stdout, stderr)
			}
			if _, err := os.Stat(filepath.Join(wrongKeys, token.RefreshKeyFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused command or list left a key in the other directory: %v", err)
			}

			// A service on the same database and keys directory accepts the new secret only.
			ctx := context.Background()
			cfg := configOf(t, env)
			db, err := openDatabase(ctx, cfg, atHead, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			svcCfg := cfg.service()
			if svcCfg.RefreshKey, err = token.RefreshKey(cfg.KeysDir); err != nil {
				t.Fatal(err)
			}
			svc := authd.NewService(svcCfg, authd.Deps{Store: db, Logger: slog.New(slog.DiscardHandler)})
			if _, err := svc.AuthenticateClient(ctx, authd.Client{}, "proxy", fresh, "client_secret_post"); err != nil {
				t.Errorf("the rotated secret: %v", err)
			}
			if _, err := svc.AuthenticateClient(ctx, authd.Client{}, "proxy", created.ClientSecret, "client_secret_post"); err == nil {
				t.Error("the first secret still works after rotate-secret")
			}

			// PKCE: optional for the confidential client until required, always for the public one.
			pkceOf := func(id string) string {
				t.Helper()
				var c struct {
					RequirePKCE *bool `json:"require_pkce"`
				}
				out := cli(exitOK, "clients", "show", id, "--json")
				if err := json.Unmarshal([]byte(out), &c); err != nil || c.RequirePKCE == nil {
					t.Fatalf("show --json %s: %s (%v)", id, out, err)
				}
				return map[bool]string{true: "required", false: "optional"}[*c.RequirePKCE]
			}
			if got := pkceOf("proxy") + " " + pkceOf("spa"); got != "optional required" {
				t.Errorf("PKCE of the confidential and the public client: %s; want optional required", got)
			}
			if out := cli(exitUsage, "clients", "update", "proxy", "--require-pkce", "--type", "public"); !strings.Contains(out, "--type does not apply to clients update") {
				t.Errorf("update with a flag only create uses: %s; want it refused, named", out)
			}
			cli(exitUsage, "clients", "update", "proxy")
			if out := cli(exitUsage, "clients", "update", "proxy", "--type", "public"); !strings.Contains(out, "--type does not apply to clients update") {
				t.Errorf("update with --type alone: %s; want it told as not applying, not as nothing to change", out)
			}
			cli(exitUsage, "clients", "update", "--require-pkce")
			if out := cli(exitOK, "clients", "update", "proxy", "--require-pkce"); !regexp.MustCompile(`proxy\s.*\srequired\s`).MatchString(out) {
				t.Errorf("update --require-pkce: %s; want the client, PKCE required", out)
			}
			if got := pkceOf("proxy"); got != "required" {
				t.Errorf("PKCE after update --require-pkce: %s", got)
			}
			if out := cli(exitUsage, "clients", "update", "spa", "--require-pkce=false"); !strings.HasPrefix(out, "authd clients update: ") ||
				!strings.Contains(out, "--require-pkce must be true for a public client") {
				t.Errorf("update of a public client to go without PKCE: %s; want the reason, naming the flag", out)
			}
			cli(exitOK, "clients", "update", "proxy", "--require-pkce=false")
			if got := pkceOf("proxy"); got != "optional" {
				t.Errorf("PKCE after update --require-pkce=false: %s", got)
			}
			// The rest of what may change in place: given flags only, lists replaced whole.
			cli(exitOK, "clients", "update", "proxy", "--name", "Proxy 2", "--redirect-uri", "https://new.example.org/cb",
				"--redirect-uri", "https://new.example.org/cb2", "--post-logout-uri", "", "--first-party=false")
			out = cli(exitOK, "clients", "show", "proxy")
			if !strings.Contains(out, "Proxy 2") || !strings.Contains(out, "redirect URIs:    https://new.example.org/cb https://new.example.org/cb2\n") ||
				!strings.Contains(out, "post-logout URIs: -\n") {
				t.Errorf("show after update: %s; want the new name and URIs, no post-logout URI", out)
			}
			if out := cli(exitUsage, "clients", "update", "proxy", "--redirect-uri", "http://example.org/cb"); !strings.Contains(out, "loopback") {
				t.Errorf("update with plain http: %s; want the reason, as a usage error", out)
			}
			if out := cli(exitUsage, "clients", "update", "proxy", "--name", " padded"); !strings.Contains(out, "--name must be") {
				t.Errorf("update with a padded name: %s; want it refused, naming the flag", out)
			}

			cli(exitUsage, "clients", "delete", "proxy")
			cli(exitOK, "clients", "delete", "proxy", "--yes")
			if out := cli(exitFailure, "clients", "show", "proxy"); !strings.Contains(out, "no such client") {
				t.Errorf("show after delete: %s", out)
			}
			if out := cli(exitUsage, "clients", "create", "--name", "X", "--type", "public", "--redirect-uri", "http://example.org/cb"); !strings.Contains(out, "loopback") {
				t.Errorf("create with plain http: %s; want the reason, as a usage error", out)
			}
			// Bytes that are not UTF-8 would be stored as U+FFFD: not the URI given.
			if out := cli(exitUsage, "clients", "create", "--name", "X", "--type", "public", "--redirect-uri",
				"https://app.example.org/\xff"); !strings.Contains(out, "UTF-8") {
				t.Errorf("create with a redirect URI that is not UTF-8: %s; want it refused", out)
			}
			if out := cli(exitUsage, "clients", "delete", "proxy", "--yes", "--json"); !strings.Contains(out, "--json does not apply to clients delete") {
				t.Errorf("delete --json: %s; want it refused, as delete prints one line", out)
			}
			cli(exitUsage, "clients", "create", "--name", "X")
			cli(exitUsage, "clients", "frobnicate")
			cli(exitUsage, "clients")

			logs, err := db.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: 50})
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for i := len(logs) - 1; i >= 0; i-- {
				actions = append(actions, logs[i].AdditionalContext["action"].(string))
			}
			if got, want := strings.Join(actions, " "), "create_client create_client rotate_client_secret update_client update_client update_client delete_client"; got != want {
				t.Errorf("admin_action rows: %s; want %s", got, want)
			}
		})
	}
}

// TestServeRefusesKeysDirWithoutTheRowsKeys: serve does not make a
// refresh-token.key while confidential clients' secrets were digested
// under another, nor an mfa.key while second factors were made under
// another (a mistyped or unmounted AUTHD_KEYS_DIR): it refuses to start,
// saying which, and leaves the directory without them. An empty database
// starts on an empty directory, making them, as a first start does.
func TestServeRefusesKeysDirWithoutTheRowsKeys(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	db, u := migratedWithUser(t, env, "keyed@example.org")
	ctx := context.Background()
	serveWith := func(keys string) (int, string) {
		t.Helper()
		e := maps.Clone(env)
		e["AUTHD_KEYS_DIR"] = keys
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		code, _, stderr := runCLIContext(ctx, t, e, "serve")
		return code, stderr
	}
	fresh := sqliteEnv(t)
	fresh["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	s := startServe(t, fresh)
	if code := s.stop(t); code != exitOK {
		t.Fatalf("serve on an empty database and keys directory: exit %d, %s", code, s.stderr.String())
	}

	if err := db.CreateClient(ctx, &authd.OAuthClient{ID: "conf", Name: "Conf", Type: authd.ClientConfidential,
		SecretDigest: "digest", RedirectURIs: []string{"https://app.example/cb"}, PostLogoutRedirectURIs: []string{},
		CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "keys")
	if code, stderr := serveWith(empty); code != exitFailure || !strings.Contains(stderr, "holds no refresh-token.key") ||
		!strings.Contains(stderr, "1 clients") || !strings.Contains(stderr, "hint: set AUTHD_KEYS_DIR") {
		t.Errorf("serve with a confidential client and an empty keys directory: exit %d, %s; want refused", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(empty, token.RefreshKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused serve left a refresh-token.key: %v", err)
	}

	// The refresh key restored, but no mfa.key, while a TOTP factor exists.
	if _, err := token.RefreshKey(empty); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateFactor(ctx, &authd.Factor{ID: authd.NewID(), UserID: u.ID, Kind: authd.FactorTOTP, Secret: "sealed",
		CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if code, stderr := serveWith(empty); code != exitFailure || !strings.Contains(stderr, "holds no mfa.key") {
		t.Errorf("serve with a TOTP factor and no mfa.key: exit %d, %s; want refused", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(empty, token.MFAKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused serve left an mfa.key: %v", err)
	}
	// Refused before anything was recorded: the refresh key it would have
	// adopted could be as wrong as the directory.
	if rows, err := db.KeyedRows(ctx); err != nil || len(rows.Checks) != 0 {
		t.Errorf("the refused serve recorded checks %v (%v); want none", rows.Checks, err)
	}

	// Lost for good: keys secrets makes one only when told, saying what it
	// voids, and serve starts.
	e := maps.Clone(env)
	e["AUTHD_KEYS_DIR"] = empty
	code, stdout, stderr := runCLI(t, e, "keys", "secrets")
	if code != exitFailure || !strings.Contains(stderr, "holds no mfa.key") || !strings.Contains(stderr, "--replace-lost") {
		t.Errorf("keys secrets for a key the rows need: exit %d, %s%s; want refused, --replace-lost named", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, e, "keys", "secrets", "--replace-lost")
	if code != exitOK || !strings.Contains(stdout, "made "+filepath.Join(empty, token.MFAKeyFile)+" in place of the lost key; every TOTP factor") ||
		!strings.Contains(stdout, token.RefreshKeyFile+" is there; recorded its check") {
		t.Fatalf("keys secrets --replace-lost: exit %d, %s%s; want mfa.key made, refresh-token.key recorded", code, stdout, stderr)
	}
	s = startServe(t, e)
	if code := s.stop(t); code != exitOK {
		t.Errorf("serve once the key was made on purpose: exit %d, %s", code, s.stderr.String())
	}
}

// TestServeRefusesForeignSecrets: the first start records the check values
// of its refresh-token.key and mfa.key; a later start with a keys directory
// that lacks them, or holds others (another installation's, another
// instance's), is refused even with no row made under them, and left as it
// was. `authd keys secrets` refuses to adopt a foreign key, but makes a lost
// one on purpose, after which the old directory is the foreign one.
func TestServeRefusesForeignSecrets(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	with := func(keys string) map[string]string {
		e := maps.Clone(env)
		e["AUTHD_KEYS_DIR"] = keys
		return e
	}
	serveWith := func(keys string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code, _, stderr := runCLIContext(ctx, t, with(keys), "serve")
		return code, stderr
	}
	first := filepath.Join(t.TempDir(), "keys")
	s := startServe(t, with(first))
	if code := s.stop(t); code != exitOK {
		t.Fatalf("first start: exit %d, %s", code, s.stderr.String())
	}

	// Another instance's directory, empty: nothing is made in it.
	empty := filepath.Join(t.TempDir(), "keys")
	if code, stderr := serveWith(empty); code != exitFailure || !strings.Contains(stderr, "holds no refresh-token.key, yet the database recorded the check of one") ||
		!strings.Contains(stderr, "hint: set AUTHD_KEYS_DIR") {
		t.Errorf("serve with an empty keys directory: exit %d, %s; want refused", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(empty, token.RefreshKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused serve left a refresh-token.key: %v", err)
	}
	// Another installation's key, each in turn beside the right other one.
	secs := []token.Secret{token.RefreshSecret, token.MFASecret}
	for i, sec := range secs {
		foreign := t.TempDir()
		right := secs[1-i]
		if err := os.WriteFile(filepath.Join(foreign, right.File), readFile(t, filepath.Join(first, right.File)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := sec.Load(foreign); err != nil {
			t.Fatal(err)
		}
		before := readFile(t, filepath.Join(foreign, sec.File))
		code, stderr := serveWith(foreign)
		if code != exitFailure || !strings.Contains(stderr, filepath.Join(foreign, sec.File)+" is not the key whose check value the database recorded") ||
			!strings.Contains(stderr, "run `authd keys secrets --replace-lost`") {
			t.Errorf("serve with another installation's %s: exit %d, %s; want refused", sec.File, code, stderr)
		}
		// keys secrets does not adopt it either, even when told to replace.
		code, stdout, stderr := runCLI(t, with(foreign), "keys", "secrets", "--replace-lost")
		if code != exitFailure || !strings.Contains(stderr, sec.File+" is not the key") {
			t.Errorf("keys secrets with another installation's %s: exit %d, %s%s; want refused", sec.File, code, stdout, stderr)
		}
		if after := readFile(t, filepath.Join(foreign, sec.File)); !bytes.Equal(after, before) {
			t.Errorf("the refused commands changed %s", sec.File)
		}
	}

	// A mistyped directory does not replace the recorded keys unasked.
	code, stdout, stderr := runCLI(t, with(empty), "keys", "secrets")
	if code != exitFailure || !strings.Contains(stderr, "holds no refresh-token.key, yet the database recorded") {
		t.Errorf("keys secrets in an empty directory: exit %d, %s%s; want refused", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(empty, token.RefreshKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused keys secrets made a refresh-token.key: %v", err)
	}
	// Lost for good: keys secrets makes both when told, saying what they
	// void; serve starts with them, and the first directory is now foreign.
	code, stdout, stderr = runCLI(t, with(empty), "keys", "secrets", "--replace-lost")
	if code != exitOK || strings.Count(stdout, "in place of the lost key") != 2 ||
		!strings.Contains(stdout, "no confidential client's secret was digested under it") ||
		!strings.Contains(stdout, "no second factor was made under it") {
		t.Fatalf("keys secrets in an empty directory: exit %d, %s%s; want both made in place of the recorded ones", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, with(empty), "keys", "secrets"); code != exitOK || strings.Count(stdout, "is there and matches the check the database recorded") != 2 {
		t.Errorf("keys secrets again: exit %d, %s%s; want both left as they are", code, stdout, stderr)
	}
	s = startServe(t, with(empty))
	if code := s.stop(t); code != exitOK {
		t.Errorf("serve with the keys made on purpose: exit %d, %s", code, s.stderr.String())
	}
	if code, stderr := serveWith(first); code != exitFailure || !strings.Contains(stderr, "is not the key whose check value the database recorded") ||
		!strings.Contains(stderr, "--adopt") {
		t.Errorf("serve with the replaced directory: exit %d, %s; want refused, --adopt named", code, stderr)
	}
	// The first directory was the right one after all: adopted on purpose.
	code, stdout, stderr = runCLI(t, with(first), "keys", "secrets", "--adopt")
	if code != exitOK || strings.Count(stdout, "is there; recorded its check in place of the one recorded") != 2 {
		t.Fatalf("keys secrets --adopt: exit %d, %s%s; want both adopted", code, stdout, stderr)
	}
	s = startServe(t, with(first))
	if code := s.stop(t); code != exitOK {
		t.Errorf("serve with the adopted keys: exit %d, %s", code, s.stderr.String())
	}
}

// raceLost is a store on which another start, with other keys, records
// its checks just before this one does (or the record fails, with fail).
type raceLost struct {
	authd.Store
	fail bool
}

func (r raceLost) RecordKeyChecks(ctx context.Context, checks []authd.KeyCheck) (map[string]authd.KeyCheck, error) {
	if r.fail {
		return nil, errors.New("the database went away")
	}
	other := make([]authd.KeyCheck, len(checks))
	for i, c := range checks {
		other[i] = authd.KeyCheck{Name: c.Name, Value: "another start's", RecordedAt: c.RecordedAt}
	}
	if _, err := r.Store.RecordKeyChecks(ctx, other); err != nil {
		return nil, err
	}
	return r.Store.RecordKeyChecks(ctx, checks)
}

// TestSharedSecretsLosingTheRace: a start that loses the record to another
// start with other keys is refused and removes the keys it made, not one
// it found (a start sharing its directory made it); a record that fails
// removes nothing (the next start records the keys).
func TestSharedSecretsLosingTheRace(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	db, _ := migratedWithUser(t, env, "race@example.org")
	ctx := context.Background()
	secs := []token.Secret{token.RefreshSecret, token.MFASecret}
	dir := t.TempDir()
	if _, err := sharedSecrets(ctx, raceLost{Store: db, fail: true}, dir, time.Now(), "where", secs...); err == nil {
		t.Fatal("sharedSecrets with a failing record: no error")
	}
	for _, sec := range secs {
		if keyMissing(dir, sec.File) {
			t.Errorf("a failed record removed %s", sec.File)
		}
	}
	if err := os.Remove(filepath.Join(dir, token.MFAKeyFile)); err != nil { // found: refresh-token.key; made: mfa.key
		t.Fatal(err)
	}
	_, err := sharedSecrets(ctx, raceLost{Store: db}, dir, time.Now(), "where", secs...)
	if err == nil || !strings.Contains(err.Error(), "is not the key whose check value the database recorded") {
		t.Fatalf("sharedSecrets losing the race: %v; want refused", err)
	}
	if keyMissing(dir, token.RefreshKeyFile) || !keyMissing(dir, token.MFAKeyFile) {
		t.Errorf("after the lost race: refresh-token.key there %v, mfa.key there %v; want the found one kept, the made one removed",
			!keyMissing(dir, token.RefreshKeyFile), !keyMissing(dir, token.MFAKeyFile))
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestKeysSecretsBeforeAnyDatabase: keys for a mounted secret can be made
// before the default database exists; the first start records them, and
// the database is not made by keys secrets. --replace-lost is for secrets.
func TestKeysSecretsBeforeAnyDatabase(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	path := filepath.Join(env["AUTHD_DATA_DIR"], "authd.db")
	code, stdout, stderr := runCLI(t, env, "keys", "secrets")
	if code != exitOK || strings.Count(stdout, "(no database at "+path+" yet: the first `authd serve` records it)") != 2 {
		t.Fatalf("keys secrets without a database: exit %d, %s%s; want both made, the record left to serve", code, stdout, stderr)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("keys secrets made the database: %v", err)
	}
	s := startServe(t, env)
	if code := s.stop(t); code != exitOK {
		t.Fatalf("serve with the keys made before: exit %d, %s", code, s.stderr.String())
	}
	if code, stdout, stderr := runCLI(t, env, "keys", "secrets"); code != exitOK || strings.Count(stdout, "matches the check the database recorded") != 2 {
		t.Errorf("keys secrets after serve: exit %d, %s%s; want both recorded by serve", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, env, "keys", "rotate", "--replace-lost"); code != exitUsage || !strings.Contains(stderr, "--replace-lost and --adopt are for secrets alone") {
		t.Errorf("rotate --replace-lost: exit %d, %s; want a usage error", code, stderr)
	}
}

// TestReadyzAfterKeysReplaced: an instance up while `keys secrets
// --replace-lost` replaces the database's keys holds keys no later
// instance does: its /readyz turns 503 (the load balancer stops sending it
// requests) until it is restarted with the new ones.
func TestReadyzAfterKeysReplaced(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["AUTHD_HTTP_ADDR"] = "127.0.0.1:0"
	ready := func(s *serving) (int, string) {
		t.Helper()
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	s := startServe(t, env)
	if code, body := ready(s); code != http.StatusOK {
		t.Fatalf("readyz: %d %s", code, body)
	}
	replaced := maps.Clone(env)
	replaced["AUTHD_KEYS_DIR"] = filepath.Join(t.TempDir(), "keys")
	if code, stdout, stderr := runCLI(t, replaced, "keys", "secrets", "--replace-lost"); code != exitOK {
		t.Fatalf("keys secrets --replace-lost: exit %d, %s%s", code, stdout, stderr)
	}
	if code, body := ready(s); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") ||
		strings.Contains(body, "refresh-token.key") {
		t.Errorf("readyz once the keys were replaced: %d %s; want 503 saying why, naming no file", code, body)
	}
	if !strings.Contains(s.stderr.String(), "check of refresh-token.key was replaced") {
		t.Errorf("the log does not say which check was replaced: %s", s.stderr.String())
	}
	s.stop(t)
	s = startServe(t, replaced)
	if code, body := ready(s); code != http.StatusOK {
		t.Errorf("readyz of an instance restarted with the new keys: %d %s", code, body)
	}
}
