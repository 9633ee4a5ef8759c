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

// TestNodeRecipe: the README's Node recipe, as written, takes authd's
// access tokens once it has caught up with the feed, refuses junk, and
// learns a logout's and a logout-all's revocations from the feed.
func TestNodeRecipe(t *testing.T) {
	t.Parallel()
	node, dir := nodeRecipe(t)
	e := newEnv(t, openSQLite(t), atWallClock()) // jose checks exp against the wall clock
	const email = "node@example.org"
	e.registerVerified(email, goodPassword)
	first, _ := e.login(email, goodPassword)
	second, _ := e.login(email, goodPassword)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "driver.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AUTHD_URL="+e.srv.URL, "AUTHD_ISSUER=https://auth.example.org",
		"AUTHD_SERVICE_TOKEN="+serviceToken)
	var stderr strings.Builder
	cmd.Stderr = &stderr
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
		stdin.Close()
		if err := cmd.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("node: %v\n%s", err, stderr.String())
		}
	})
	answers := bufio.NewScanner(stdout)
	ask := func(token string) string {
		t.Helper()
		if _, err := io.WriteString(stdin, token+"\n"); err != nil {
			t.Fatalf("node: %v\n%s", err, stderr.String())
		}
		if !answers.Scan() {
			t.Fatalf("node answered nothing: %v\n%s", answers.Err(), stderr.String())
		}
		return answers.Text()
	}
	// until asks token until the answer has want as its prefix, for at
	// most 10 s: the recipe's feed connection, and its revocations, are a
	// wait, not a measure.
	until := func(what, token, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := ask(token); !strings.HasPrefix(got, want); got = ask(token) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the recipe answers %q, want %q within 10 s\n%s", what, got, want, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	sub := "ok " + e.user(email).ID.String()
	until("a fresh token once the feed has caught up", first, sub)
	if got := ask(second); got != sub {
		t.Errorf("the second session's token: %q, want %q", got, sub)
	}
	if got := ask("x.y.z"); !strings.HasPrefix(got, "error ") {
		t.Errorf("a junk token: %q, want an error", got)
	}

	want(t, "logout", e.do("POST", "/v1/auth/logout", nil, bearer(first)...), 204, "")
	until("the logged-out session's token", first, "error revoked")
	if got := ask(second); got != sub {
		t.Errorf("after the first session's logout, the second's token: %q, want %q", got, sub)
	}

	want(t, "logout-all", e.do("POST", "/v1/auth/logout-all", nil, bearer(second)...), 204, "")
	until("after logout-all, the second session's token", second, "error revoked")
	third, _ := e.login(email, goodPassword)
	if got := ask(third); got != sub {
		t.Errorf("a login after logout-all: %q, want %q", got, sub)
	}
}
