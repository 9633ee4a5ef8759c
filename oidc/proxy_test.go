package oidc_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

// oauth2Proxy finds the oauth2-proxy binary ($OAUTH2_PROXY, else on PATH),
// or skips the test (fails it under CI, whose .ci/run builds v7.15.6).
func oauth2Proxy(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("OAUTH2_PROXY"); p != "" {
		return p
	}
	if p, err := exec.LookPath("oauth2-proxy"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("oauth2-proxy is not installed: CI must run this test (.ci/run builds it)")
	}
	t.Skip("oauth2-proxy is not installed: skipping (go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6, or set OAUTH2_PROXY)")
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestOAuth2Proxy points a relying party nobody here wrote, oauth2-proxy,
// at authd by configuration alone, in front of a tiny upstream; a
// cookie-jar client signs in through it and the upstream sees the email.
func TestOAuth2Proxy(t *testing.T) {
	bin := oauth2Proxy(t)
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	// oauth2-proxy checks the ID token against its own clock.
	e.clock.mu.Lock()
	e.clock.now = time.Now().UTC()
	e.clock.mu.Unlock()
	e.user("proxy-user@example.org")

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream sees %s", r.Header.Get("X-Forwarded-Email"))
	}))
	t.Cleanup(upstream.Close)
	addr := freePort(t)
	proxyURL := "http://" + addr
	c, secret, err := e.svc.CreateClient(context.Background(), authd.Client{}, authd.ClientSpec{ID: "proxy",
		Name: "oauth2-proxy", Type: authd.ClientConfidential, RedirectURIs: []string{proxyURL + "/oauth2/callback"},
		FirstParty: true, RequirePKCE: true}) // as the README advises, with --code-challenge-method=S256
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out strings.Builder
	cmd := exec.CommandContext(ctx, bin,
		"--http-address="+addr, "--provider=oidc", "--oidc-issuer-url="+e.srv.URL,
		"--client-id="+c.ID, "--client-secret="+secret, "--redirect-url="+proxyURL+"/oauth2/callback",
		"--upstream="+upstream.URL, "--email-domain=*", "--cookie-secret=0123456789abcdef0123456789abcdef",
		"--cookie-secure=false", "--scope=openid email", "--code-challenge-method=S256",
		"--skip-provider-button=true")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ready := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if resp, err := http.Get(proxyURL + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = true
				break
			}
		}
		time.Sleep(50 * time.Millisecond) // polling the process's readiness; nothing to wait on
	}
	if !ready {
		t.Fatalf("oauth2-proxy did not come up:\n%s", out.String())
	}

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.Get(proxyURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b := &browser{t: t, e: e, http: client, last: resp, body: string(page)}
	if !strings.HasPrefix(resp.Request.URL.String(), e.srv.URL+"/signin") {
		t.Fatalf("oauth2-proxy did not send the browser to authd's sign-in page: %s\n%s", resp.Request.URL, out.String())
	}
	b.signIn("proxy-user@example.org", goodPassword)
	if b.last.StatusCode != http.StatusOK || b.body != "upstream sees proxy-user@example.org" {
		t.Fatalf("after signing in through oauth2-proxy: %d %q\n%s", b.last.StatusCode, b.body, out.String())
	}
}
