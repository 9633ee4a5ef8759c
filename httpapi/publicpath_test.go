package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/htmlform"
)

// proxyPath is the path of the public URL in TestPagesUnderAPublicPath,
// which its proxy strips.
const proxyPath = "/idp"

// apiRE finds the path of the passkey page's call of its api function
// that begins a passkey sign-in (which the function fetches).
var apiRE = regexp.MustCompile(`api\("POST", ("[^"]*/passkey/begin")`)

// fetched is the address that the page's script fetches to begin a
// passkey sign-in, computed from its string literals as the script does.
func fetched(t *testing.T, p *htmlform.Page) *url.URL {
	t.Helper()
	script := strings.Join(p.Scripts, "\n")
	var path string
	if call := apiRE.FindStringSubmatch(script); call == nil || json.Unmarshal([]byte(call[1]), &path) != nil {
		t.Fatalf("no call of the API in the script of %s", p.URL)
	}
	u, err := p.Fetched(map[string]string{"path": path})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestPagesUnderAPublicPath: with a public URL that has a path, behind a
// proxy that strips it, a browser that goes only where the mails, the
// pages and the redirects send it confirms an address, asks for a new
// link, resets a password and reaches the passkey pages and the API their
// script calls. Every address a page or a redirect gives is under the
// path: one at the root misses the proxy.
func TestPagesUnderAPublicPath(t *testing.T) {
	t.Parallel()
	front := httptest.NewUnstartedServer(nil)
	public := "http://" + front.Listener.Addr().String() + proxyPath
	e := newEnv(t, openSQLite(t), withConfig(func(c *authd.Config) { c.PublicURL = public }))
	front.Config.Handler = http.StripPrefix(proxyPath, e.api)
	front.Start()
	t.Cleanup(front.Close)
	b := htmlform.NewBrowser(t, strings.TrimPrefix(front.URL, "http://"), proxyPath)

	want(t, "register", e.send(public, "POST", "/v1/auth/register",
		map[string]any{"email": "p@example.org", "password": goodPassword, "consent": true}), 202, "")
	link := e.mail.last(t, authd.MailVerifyEmail, "p@example.org").Link
	if b.Get(link).Submit(b.Form("token")); b.Last.StatusCode != http.StatusOK || !strings.Contains(b.Body, "Your email address is confirmed") {
		t.Fatalf("confirming the address from %s: %d at %s %s", link, b.Last.StatusCode, b.Last.Request.URL, b.Body)
	}
	// The link again: expired, with the form that mails a new one; that
	// form's address opened in the address bar asks for a link.
	if b.Get(link).Submit(b.Form("email"), "email", "p@example.org"); b.Last.StatusCode != http.StatusOK || !strings.Contains(b.Body, "on its way") {
		t.Errorf("a new link from the expired page: %d at %s %s", b.Last.StatusCode, b.Last.Request.URL, b.Body)
	}
	if b.Get(b.Last.Request.URL.String()); b.Last.StatusCode != http.StatusOK || b.Page == nil || b.Page.FormWith("email") == nil {
		t.Errorf("the new-link form's address opened: %d at %s %s; want the page asking for a link",
			b.Last.StatusCode, b.Last.Request.URL, b.Body)
	}

	want(t, "forgot", e.send(public, "POST", "/v1/auth/password/forgot", map[string]string{"email": "p@example.org"}), 202, "")
	link = e.mail.last(t, authd.MailPasswordReset, "p@example.org").Link
	b.Get(link).Submit(b.Form("new_password"), "new_password", "a new sturdy phrase", "confirm_password", "a new sturdy phrase")
	if b.Last.StatusCode != http.StatusOK || !strings.Contains(b.Body, "Your password was changed") {
		t.Fatalf("resetting the password from %s: %d at %s %s", link, b.Last.StatusCode, b.Last.Request.URL, b.Body)
	}
	// A path with a dot segment is redirected to its clean form, under the
	// public URL's path.
	if b.Get(public + "/passkeys/../reset-password"); b.Last.StatusCode != http.StatusOK || b.Last.Request.URL.Path != proxyPath+"/reset-password" {
		t.Errorf("a path with ..: %d at %s; want the reset page under %s", b.Last.StatusCode, b.Last.Request.URL, proxyPath)
	}
	// The admin listener is not behind the proxy: its own paths.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noFollow.Get(e.adminSrv.URL + "//healthz"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.Header.Get("Location") != "/healthz" {
		t.Errorf("the admin listener's //healthz: %d to %q; want /healthz, not under %s", resp.StatusCode, resp.Header.Get("Location"), proxyPath)
	}

	// The passkey pages link each other, and their script calls the API
	// under the page's path.
	b.Get(public + "/passkeys")
	if b.Page == nil || len(b.Page.Links) == 0 {
		t.Fatalf("the passkeys page: %d %s", b.Last.StatusCode, b.Body)
	}
	if b.Get(b.Page.Links[0].String()); b.Last.StatusCode != http.StatusOK || !strings.Contains(b.Body, "Sign in with a passkey") {
		t.Errorf("the passkeys page's sign-in link: %d at %s", b.Last.StatusCode, b.Last.Request.URL)
	}
	api := fetched(t, b.Page)
	if r := e.send("http://"+api.Host, "POST", api.Path, map[string]any{}); api.Path != proxyPath+"/v1/auth/passkey/begin" ||
		r.status != http.StatusOK {
		t.Errorf("the passkey script's request to %s: %d %s; want the options under %s", api, r.status, r.raw, proxyPath)
	}
}
