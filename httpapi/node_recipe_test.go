package httpapi_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/authd/authd/internal/faultnet"
	"github.com/authd/authd/internal/syncbuf"
	"github.com/authd/authd/token"
)

// nodeRecipe writes the README's Node recipe (its js block after
// "**Node**"), with examples/node-recipe's driver, to a directory whose
// node_modules is that example's, or skips the test (fails it under CI,
// whose .ci/run installs them) when Node or the packages are missing.
func nodeRecipe(t *testing.T) (node, dir string) {
	t.Helper()
	example, err := filepath.Abs("../examples/node-recipe")
	if err != nil {
		t.Fatal(err)
	}
	node, err = exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(example, "node_modules", "jose", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Node or the recipe's packages are missing (%v): CI must run this test (.ci/run installs them)", err)
		}
		t.Skipf("Node or the recipe's packages are missing (%v): skipping (cd examples/node-recipe && npm ci)", err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n**Node** (or any language)")
	if ok {
		_, after, ok = strings.Cut(after, "\n```js\n")
	}
	recipe, _, closed := strings.Cut(after, "\n```\n")
	if !ok || !closed {
		t.Fatal("README.md has no ```js block after **Node** (or any language)")
	}
	driver, err := os.ReadFile(filepath.Join(example, "driver.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	for name, content := range map[string]string{"recipe.mjs": recipe + "\n", "driver.mjs": string(driver)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(example, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return node, dir
}

// runRecipe starts the recipe's driver against authd at url with
// serviceToken and returns the function that asks it about a token: "ok
// SUB" or "error MESSAGE".
func runRecipe(t *testing.T, node, dir, url, serviceToken string) (ask func(token string) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel) // after the Cleanup below has waited for node
	cmd := exec.CommandContext(ctx, node, "driver.mjs")
	cmd.Dir = dir
	// Nothing of the test's own environment (CI's database URLs) reaches npm's code.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, "AUTHD_URL="+url, "AUTHD_ISSUER=https://auth.example.org",
		"AUTHD_SIGNING_ALG=EdDSA", "AUTHD_CLIENTS=", "AUTHD_SERVICE_TOKEN="+serviceToken)
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the driver exits at the end of its input
		if err := cmd.Wait(); err != nil {
			t.Errorf("node: %v\n%s", err, stderr.String())
		}
	})
	answers := bufio.NewScanner(stdout)
	return func(token string) string {
		t.Helper()
		if _, err := io.WriteString(stdin, token+"\n"); err != nil {
			t.Fatalf("node: %v\n%s", err, stderr.String())
		}
		if !answers.Scan() {
			t.Fatalf("node answered nothing: %v\n%s", answers.Err(), stderr.String())
		}
		return answers.Text()
	}
}

// askUntil asks token until the answer is want, for at most wait: the
// recipe's feed connection, and its revocations, are a wait, not a
// measure.
func askUntil(t *testing.T, ask func(string) string, wait time.Duration, what, token, want string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for got := ask(token); got != want; got = ask(token) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the recipe answers %q, want %q within %v", what, got, want, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const proxiedEmail = "proxied@example.org"

// recipeBehindProxy runs the recipe against an authd reached through a
// faultnet proxy, with a user's access token it has taken (so, caught up
// with the feed).
func recipeBehindProxy(t *testing.T) (e *env, proxy *faultnet.Proxy, ask func(string) string, access string) {
	t.Helper()
	node, dir := nodeRecipe(t)
	e = newEnv(t, openSQLite(t), atWallClock())
	proxy, url, err := faultnet.ListenURL(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	e.registerVerified(proxiedEmail, goodPassword)
	access, _ = e.login(proxiedEmail, goodPassword)
	ask = runRecipe(t, node, dir, url, serviceToken)
	askUntil(t, ask, 10*time.Second, "a fresh token once the feed has caught up", access, "ok "+e.user(proxiedEmail).ID.String())
	return e, proxy, ask, access
}

// TestNodeRecipeSilentFeed: a feed connection gone silent (a proxy that
// drops what it carries, closing nothing) is given up after 15 s without
// a heartbeat, and the recipe resumes and learns the revocation made
// meanwhile; left to fetch, it would trust the silence for 300 s.
func TestNodeRecipeSilentFeed(t *testing.T) {
	t.Parallel()
	e, proxy, ask, access := recipeBehindProxy(t)
	proxy.Stall() // the feed's connection, open, carries nothing from now on
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
	askUntil(t, ask, 30*time.Second, "a session logged out while the feed was silent", access, "error revoked")
}

// TestNodeRecipeUnansweredReconnection: a reconnection that gets no
// answer at all (a server that takes the connection and never sends its
// headers) is given up as a silent stream is, and the next one, answered,
// brings the revocation made meanwhile; left to fetch, it would wait 300 s
// for the headers.
func TestNodeRecipeUnansweredReconnection(t *testing.T) {
	t.Parallel()
	e, proxy, ask, access := recipeBehindProxy(t)
	gone, _ := e.login(proxiedEmail, goodPassword)
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(gone)...), 204, "")
	askUntil(t, ask, 10*time.Second, "a session logged out before the outage", gone, "error revoked")
	proxy.SetSilent(true)
	proxy.Cut() // EventSource reconnects at once, into the silence
	for deadline := time.Now().Add(10 * time.Second); proxy.Hushed() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the recipe did not reconnect within 10 s of the cut")
		}
	}
	askUntil(t, ask, 10*time.Second, "a good token once the feed is lost past its grace", access, "error revocation state unknown")
	if got := ask(gone); got != "error revoked" {
		t.Errorf("a token known to be revoked, while the state is unknown: %q, want it told revoked", got)
	}
	proxy.SetSilent(false) // the unanswered connection stays so; the next is answered
	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
	askUntil(t, ask, 40*time.Second, "a session logged out while the reconnection went unanswered", access, "error revoked")
}

// TestNodeRecipeWithdrawnKey: the recipe trusts a key withdrawn from
// authd's JWKS for no longer than the JWKS's max-age (300 s), as the Go
// package does (jose, reading no Cache-Control, would keep it 10 minutes).
func TestNodeRecipeWithdrawnKey(t *testing.T) {
	t.Parallel()
	node, dir := nodeRecipe(t)
	e := newEnv(t, openSQLite(t), atWallClock()) // jose checks exp against the wall clock
	const email = "withdrawn@example.org"
	e.registerVerified(email, goodPassword)
	tok, _ := e.login(email, goodPassword)
	ask := runRecipe(t, node, dir, e.srv.URL, serviceToken)
	sub := "ok " + e.user(email).ID.String()
	askUntil(t, ask, 10*time.Second, "a token before its key is withdrawn", tok, sub)

	old := e.keys.Signing(e.clock.Now())
	if _, err := token.Generate(e.keysDir, "EdDSA", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.keysDir, old.ID+".pem")); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Reload(); err != nil {
		t.Fatal(err)
	}
	if jwks := e.do("GET", "/.well-known/jwks.json", nil); jwks.status != 200 || strings.Contains(jwks.raw, old.ID) {
		t.Fatalf("the JWKS still holds the withdrawn key %s", old.ID)
	}
	if got := ask(tok); got != sub {
		t.Errorf("within the cached JWKS's max-age, a token of a key since withdrawn: %q, want %q (the cache trusted)", got, sub)
	}
	if got := ask("+clock 301"); got != "ok clock" {
		t.Fatalf("the driver's clock: %q", got)
	}
	if got := ask(tok); !strings.HasPrefix(got, "error ") {
		t.Errorf("301 s later, a token of a key withdrawn from the JWKS: %q, want it refused", got)
	}
}

// TestNodeRecipe: the README's Node recipe, as written, takes authd's
// access tokens once it has caught up with the feed (none before),
// refuses what the Go package refuses (junk, another client's token, one
// expired by a few seconds, one issued in the future, one without a session, an ID
// token's type), and learns a logout's and a logout-all's revocations from
// the feed: of the sessions named, and of tokens issued before the
// user's revocation though their session is not named.
func TestNodeRecipe(t *testing.T) {
	t.Parallel()
	node, dir := nodeRecipe(t)
	e := newEnv(t, openSQLite(t), atWallClock()) // jose checks exp against the wall clock
	const email = "node@example.org"
	e.registerVerified(email, goodPassword)
	first, _ := e.login(email, goodPassword)
	second, _ := e.login(email, goodPassword)
	user := e.user(email).ID.String()
	// sign makes a token as authd would, but for claims changed by change
	// and its typ: with the instance's signing key.
	sign := func(typ string, change func(jwt.MapClaims)) string {
		t.Helper()
		now := time.Now()
		c := jwt.MapClaims{"iss": "https://auth.example.org", "aud": []string{"authd"}, "sub": user,
			"sid": uuid.NewString(), "jti": uuid.NewString(), "amr": []string{"pwd"},
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(15 * time.Minute).Unix()}
		change(c)
		key := e.keys.Signing(e.clock.Now())
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"], tok.Header["typ"] = key.ID, typ
		signed, err := tok.SignedString(key.Private)
		if err != nil {
			t.Fatal(err)
		}
		return signed
	}
	unnamed := sign("at+jwt", func(c jwt.MapClaims) { c["iat"] = e.clock.Now().Add(-time.Minute).Unix() })

	// Never caught up (the feed refuses its token): no token passes.
	if got := runRecipe(t, node, dir, e.srv.URL, "not-the-service-token")(first); got != "error revocation state unknown" {
		t.Errorf("a good token while the recipe has not caught up: %q, want the state unknown", got)
	}

	ask := runRecipe(t, node, dir, e.srv.URL, serviceToken)
	until := func(what, token, want string) { t.Helper(); askUntil(t, ask, 10*time.Second, what, token, want) }
	sub := "ok " + user
	until("a fresh token once the feed has caught up", first, sub)
	for name, tok := range map[string]string{"the second session's token": second, "a session unknown to the feed": unnamed} {
		if got := ask(tok); got != sub {
			t.Errorf("%s: %q, want %q", name, got, sub)
		}
	}
	for name, tok := range map[string]string{
		"junk":                        "x.y.z",
		"another client's token":      sign("at+jwt", func(c jwt.MapClaims) { c["client_id"], c["scope"] = "app", "openid" }),
		"a token expired 5 s ago":     sign("at+jwt", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-5 * time.Second).Unix() }), // exp exactly, not within jose's leeway
		"a token issued in 2 minutes": sign("at+jwt", func(c jwt.MapClaims) { c["iat"] = time.Now().Add(2 * time.Minute).Unix() }),
		"a token without a session":   sign("at+jwt", func(c jwt.MapClaims) { delete(c, "sid") }),
		"a token whose iat is text":   sign("at+jwt", func(c jwt.MapClaims) { c["iat"] = "yesterday" }),
		"an ID token's type":          sign("JWT", func(jwt.MapClaims) {}),
	} {
		if got := ask(tok); !strings.HasPrefix(got, "error ") || got == "error revoked" {
			t.Errorf("%s: %q, want it refused (not as revoked)", name, got)
		}
	}

	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(first)...), 204, "")
	until("the logged-out session's token", first, "error revoked")
	if got := ask(second); got != sub {
		t.Errorf("after the first session's logout, the second's token: %q, want %q", got, sub)
	}

	e.clock.Advance(time.Second) // the user's revocation is of tokens issued before its second
	want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(second)...), 204, "")
	until("after logout-all, the second session's token", second, "error revoked")
	if got := ask(unnamed); got != "error revoked" {
		t.Errorf("after logout-all, a token of a session the feed never named, issued before: %q, want revoked", got)
	}
	third, _ := e.login(email, goodPassword)
	if got := ask(third); got != sub {
		t.Errorf("a login after logout-all: %q, want %q", got, sub)
	}
}
