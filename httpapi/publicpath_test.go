package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
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

// proxied is a browser in front of a proxy that serves authd under
// proxyPath: it reads each page's forms and links, which must all lead
// under proxyPath, as every redirect must.
type proxied struct {
	t    *testing.T
	http *http.Client
	last *http.Response
	body string
	page *htmlform.Page
}

func newProxied(t *testing.T) *proxied {
	jar, _ := cookiejar.New(nil)
	return &proxied{t: t, http: &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !strings.HasPrefix(req.URL.Path, proxyPath+"/") {
			t.Errorf("%s %s redirected to %s, outside %s", via[len(via)-1].Method, via[len(via)-1].URL, req.URL, proxyPath)
		}
		return nil
	}}}
}

func (b *proxied) do(req *http.Request) *proxied {
	b.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.last, b.body, b.page = resp, string(body), nil
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if b.page, err = htmlform.Parse(resp.Request.URL, b.body); err != nil {
			b.t.Fatalf("%s: %v", resp.Request.URL, err)
		}
		for _, a := range b.page.Addresses() {
			if !strings.HasPrefix(a.Path, proxyPath+"/") {
				b.t.Errorf("the page at %s sends the browser to %s, outside %s", resp.Request.URL, a, proxyPath)
			}
		}
	}
	return b
}

func (b *proxied) get(u string) *proxied {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

// submit sends the page's first form with an input named name, with its
// hidden fields and set (name, value, …).
func (b *proxied) submit(name string, set ...string) *proxied {
	b.t.Helper()
	var f *htmlform.Form
	if b.page != nil {
		f = b.page.FormWith(name)
	}
	if f == nil {
		b.t.Fatalf("no form with %s at %s: %d %s", name, b.last.Request.URL, b.last.StatusCode, b.body)
	}
	v := url.Values{}
	for k, vs := range f.Fields {
		v[k] = vs
	}
	for i := 0; i+1 < len(set); i += 2 {
		v.Set(set[i], set[i+1])
	}
	req, _ := http.NewRequest(f.Method, f.Action.String(), strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var (
	// constRE finds a script's string constants; fetchRE its fetch(ADDRESS,
	// …), ADDRESS string literals, constants and the path its api function
	// takes, joined by +; apiRE the path of the page's call of api that
	// begins a passkey sign-in.
	constRE = regexp.MustCompile(`const (\w+) = ("[^"]*");`)
	fetchRE = regexp.MustCompile(`fetch\(([^,]+),`)
	apiRE   = regexp.MustCompile(`api\("POST", ("[^"]*/passkey/begin")`)
)

// fetched is the address that the page's script fetches to begin a
// passkey sign-in, computed from its string literals as the script does.
func (b *proxied) fetched() *url.URL {
	b.t.Helper()
	script := strings.Join(b.page.Scripts, "\n")
	values := map[string]string{}
	for _, m := range constRE.FindAllStringSubmatch(script, -1) {
		var v string
		if json.Unmarshal([]byte(m[2]), &v) == nil {
			values[m[1]] = v
		}
	}
	call, fetch := apiRE.FindStringSubmatch(script), fetchRE.FindStringSubmatch(script)
	var path string
	if call == nil || fetch == nil || json.Unmarshal([]byte(call[1]), &path) != nil {
		b.t.Fatalf("no call of the API in the script of %s", b.page.URL)
	}
	values["path"] = path
	var address string
	for part := range strings.SplitSeq(fetch[1], "+") {
		part = strings.TrimSpace(part)
		v, ok := values[part]
		if !ok && json.Unmarshal([]byte(part), &v) != nil {
			b.t.Fatalf("the script fetches %s: %s is unknown", fetch[1], part)
		}
		address += v
	}
	u, err := b.page.URL.Parse(address)
	if err != nil {
		b.t.Fatal(err)
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
	b := newProxied(t)

	want(t, "register", e.send(public, "POST", "/v1/auth/register",
		map[string]any{"email": "p@example.org", "password": goodPassword, "consent": true}), 202, "")
	link := e.mail.last(t, authd.MailVerifyEmail, "p@example.org").Link
	if b.get(link).submit("token"); b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "Your email address is confirmed") {
		t.Fatalf("confirming the address from %s: %d at %s %s", link, b.last.StatusCode, b.last.Request.URL, b.body)
	}
	// The link again: expired, with the form that mails a new one; that
	// form's address opened in the address bar asks for a link.
	if b.get(link).submit("email", "email", "p@example.org"); b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "on its way") {
		t.Errorf("a new link from the expired page: %d at %s %s", b.last.StatusCode, b.last.Request.URL, b.body)
	}
	if b.get(b.last.Request.URL.String()); b.last.StatusCode != http.StatusOK || b.page == nil || b.page.FormWith("email") == nil {
		t.Errorf("the new-link form's address opened: %d at %s %s; want the page asking for a link",
			b.last.StatusCode, b.last.Request.URL, b.body)
	}

	want(t, "forgot", e.send(public, "POST", "/v1/auth/password/forgot", map[string]string{"email": "p@example.org"}), 202, "")
	link = e.mail.last(t, authd.MailPasswordReset, "p@example.org").Link
	b.get(link).submit("new_password", "new_password", "a new sturdy phrase", "confirm_password", "a new sturdy phrase")
	if b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "Your password was changed") {
		t.Fatalf("resetting the password from %s: %d at %s %s", link, b.last.StatusCode, b.last.Request.URL, b.body)
	}
	// A path with a dot segment is redirected to its clean form, under the
	// public URL's path.
	if b.get(public + "/passkeys/../reset-password"); b.last.StatusCode != http.StatusOK || b.last.Request.URL.Path != proxyPath+"/reset-password" {
		t.Errorf("a path with ..: %d at %s; want the reset page under %s", b.last.StatusCode, b.last.Request.URL, proxyPath)
	}

	// The passkey pages link each other, and their script calls the API
	// under the page's path.
	b.get(public + "/passkeys")
	if b.page == nil || len(b.page.Links) == 0 {
		t.Fatalf("the passkeys page: %d %s", b.last.StatusCode, b.body)
	}
	if b.get(b.page.Links[0].String()); b.last.StatusCode != http.StatusOK || !strings.Contains(b.body, "Sign in with a passkey") {
		t.Errorf("the passkeys page's sign-in link: %d at %s", b.last.StatusCode, b.last.Request.URL)
	}
	api := b.fetched()
	if r := e.send("http://"+api.Host, "POST", api.Path, map[string]any{}); api.Path != proxyPath+"/v1/auth/passkey/begin" ||
		r.status != http.StatusOK {
		t.Errorf("the passkey script's request to %s: %d %s; want the options under %s", api, r.status, r.raw, proxyPath)
	}
}
