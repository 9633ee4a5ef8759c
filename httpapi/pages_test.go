package httpapi_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/authd/authd"
)

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

func (e *env) post(path, body string) response {
	e.t.Helper()
	return e.do("POST", path, body, "Content-Type", "application/x-www-form-urlencoded")
}

func TestVerifyPage(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "p@example.org", "password": goodPassword, "consent": true}), 202, "")
		link := e.mail.last(t, authd.MailVerifyEmail, "p@example.org").Link
		tok := tokenOf(t, e.mail.last(t, authd.MailVerifyEmail, "p@example.org"))
		path := strings.TrimPrefix(link, "https://auth.example.org")

		for range 3 { // mail scanners follow links: a GET never consumes the token
			r := e.do("GET", path, nil)
			if r.status != 200 || !strings.Contains(r.raw, `action="/verify-email"`) || !strings.Contains(r.raw, tok) ||
				!strings.Contains(r.raw, "If you did not sign up, close this page") {
				t.Fatalf("verify page: %d %s; want the form, and the warning for who did not sign up", r.status, r.raw)
			}
			csp := r.header.Get("Content-Security-Policy")
			if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(csp, "default-src 'none'") ||
				!strings.Contains(csp, "form-action 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
				strings.Contains(csp, "unsafe-inline") || strings.Contains(r.raw, "<script") {
				t.Errorf("page headers: %v", r.header)
			}
		}
		if e.user("p@example.org").EmailVerified {
			t.Fatal("opening the page verified the address")
		}
		// A field given twice is refused, whichever of the two is right.
		r := e.post("/verify-email", form("token", tok)+"&"+form("token", "junk"))
		if r.status != 400 || !strings.Contains(r.raw, "The form sends a field more than once.") ||
			e.user("p@example.org").EmailVerified {
			t.Fatalf("a token given twice: %d %s", r.status, r.raw)
		}
		r = e.post("/verify-email", form("token", tok))
		if r.status != 200 || !strings.Contains(r.raw, "confirmed") {
			t.Fatalf("pressing the button: %d %s", r.status, r.raw)
		}
		if !e.user("p@example.org").EmailVerified {
			t.Error("the button did not verify the address")
		}
		for _, r := range []response{e.do("GET", path, nil), e.post("/verify-email", form("token", tok)), e.do("GET", "/verify-email?token=junk", nil)} {
			// Its user may have followed it already (an answer lost, a
			// second click): the page says that is done.
			if r.status != 400 || !strings.Contains(r.raw, "expired or was already used") || !strings.Contains(r.raw, "it did its work") ||
				!strings.Contains(r.raw, `action="/verify-email/new-link"`) {
				t.Errorf("used link: %d %s", r.status, r.raw)
			}
		}
		r = e.post("/verify-email/new-link", form("email", "not an address"))
		if r.status != 400 || !strings.Contains(r.raw, "valid email address") {
			t.Errorf("new link with a bad address: %d %s", r.status, r.raw)
		}
		for _, email := range []string{"p@example.org", "nobody@example.org"} {
			if r := e.post("/verify-email/new-link", form("email", email)); r.status != 200 || !strings.Contains(r.raw, "on its way") {
				t.Errorf("new link for %s: %d %s", email, r.status, r.raw)
			}
		}
	})
}

func TestResetPage(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("r@example.org", goodPassword)
		want(t, "forgot", e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "r@example.org"}), 202, "")
		tok := tokenOf(t, e.mail.last(t, authd.MailPasswordReset, "r@example.org"))

		r := e.do("GET", "/reset-password?token="+tok, nil)
		if r.status != 200 || !strings.Contains(r.raw, `name="new_password"`) || !strings.Contains(r.raw, `name="confirm_password"`) ||
			!strings.Contains(r.raw, `<label for="new_password">`) {
			t.Fatalf("reset page: %d %s", r.status, r.raw)
		}
		r = e.post("/reset-password", form("token", tok, "new_password", "a new sturdy phrase", "confirm_password", "a new sturdy phrasE"))
		if r.status != 400 || !strings.Contains(r.raw, "do not match") || !strings.Contains(r.raw, `name="new_password"`) {
			t.Errorf("mismatch: %d %s", r.status, r.raw)
		}
		r = e.post("/reset-password", form("token", tok, "new_password", "short", "confirm_password", "short"))
		// The policy error inline (SPEC §7): the form again, its link in it.
		if r.status != 400 || !strings.Contains(r.raw, "at least 12 characters") || !strings.Contains(r.raw, `role="alert"`) ||
			!strings.Contains(r.raw, `name="new_password"`) || !strings.Contains(r.raw, tok) {
			t.Errorf("weak password: %d %s; want the form again with the error", r.status, r.raw)
		}
		r = e.post("/reset-password", form("token", tok, "new_password", "a new sturdy phrase", "confirm_password", "a new sturdy phrase"))
		if r.status != 200 || !strings.Contains(r.raw, "Password changed") {
			t.Fatalf("reset: %d %s", r.status, r.raw)
		}
		e.login("r@example.org", "a new sturdy phrase")
		r = e.post("/reset-password", form("token", tok, "new_password", "another sturdy phrase", "confirm_password", "another sturdy phrase"))
		if r.status != 400 || !strings.Contains(r.raw, `action="/reset-password/new-link"`) {
			t.Errorf("reused link: %d %s", r.status, r.raw)
		}
		if r := e.post("/reset-password/new-link", form("email", "r@example.org")); r.status != 200 {
			t.Errorf("new reset link: %d", r.status)
		}
		if n := e.mail.count(authd.MailPasswordReset, "r@example.org"); n != 2 {
			t.Errorf("%d reset mails, want 2", n)
		}
		// Without a link (a register notice's "ask for a reset link"): the
		// form for one, not "link expired"; an empty token is a dead link.
		r = e.do("GET", "/reset-password", nil)
		if r.status != 200 || !strings.Contains(r.raw, "Reset your password") || strings.Contains(r.raw, "expired") ||
			!strings.Contains(r.raw, `action="/reset-password/new-link"`) {
			t.Errorf("reset page without a token: %d %s", r.status, r.raw)
		}
		if r := e.do("GET", "/reset-password?token=", nil); r.status != 400 || !strings.Contains(r.raw, "This link has expired or was already used") {
			t.Errorf("reset page with an empty token: %d %s", r.status, r.raw)
		}
		// The query string is only carried into the form: it never resets.
		want(t, "JSON reset with the token in the query only", e.do("POST", "/v1/auth/password/reset?token="+tok, map[string]string{"new_password": "x y z w v u t"}), 400, "validation_failed")
	})
}

// TestCrossSitePageForms: a page form that another site's page sends —
// as its browser says (Sec-Fetch-Site), or by an Origin that is not this
// host — is refused (403) and does nothing: "send me a new link" would
// otherwise let any site mail any address a new link from its visitors'
// browsers. The same form sent from the page itself, or by a client that
// is no browser, works.
func TestCrossSitePageForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("x@example.org", goodPassword)
	before := e.mail.count(authd.MailPasswordReset, "x@example.org")
	for name, h := range map[string][]string{
		"Sec-Fetch-Site cross-site": {"Sec-Fetch-Site", "cross-site"},
		"Sec-Fetch-Site same-site":  {"Sec-Fetch-Site", "same-site"},
		"another Origin":            {"Origin", "https://evil.example"},
	} {
		for _, path := range []string{"/reset-password/new-link", "/verify-email/new-link", "/reset-password", "/verify-email"} {
			r := e.do("POST", path, form("email", "x@example.org"), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, h...)...)
			if r.status != 403 || !strings.Contains(r.raw, "sent from another site") {
				t.Errorf("%s to %s: %d %s, want 403", name, path, r.status, r.raw)
			}
		}
	}
	if n := e.mail.count(authd.MailPasswordReset, "x@example.org"); n != before {
		t.Errorf("cross-site forms sent %d reset mails", n-before)
	}
	for name, h := range map[string][]string{
		"from the page":       {"Sec-Fetch-Site", "same-origin"},
		"typed or bookmarked": {"Sec-Fetch-Site", "none"},
		"no browser":          nil,
		// A browser without Sec-Fetch-Site (Safari before 16.4) names
		// the page's origin: this host's, or AUTHD_PUBLIC_URL's where a
		// proxy rewrote Host.
		"Origin of this host":        {"Origin", e.srv.URL},
		"Origin of AUTHD_PUBLIC_URL": {"Origin", "https://auth.example.org"},
	} {
		r := e.do("POST", "/reset-password/new-link", form("email", "x@example.org"), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, h...)...)
		if r.status != 200 {
			t.Errorf("new link %s: %d %s, want 200", name, r.status, r.raw)
		}
	}
	// The pages name their origin on their forms' POST: under
	// no-referrer a browser sends Origin: null, which is refused.
	// (A <meta name="referrer"> in the page would override the header.)
	if r := e.do("GET", "/reset-password?token=x", nil); r.header.Get("Referrer-Policy") != "same-origin" ||
		!strings.Contains(r.raw, `<meta name="referrer" content="same-origin">`) {
		t.Errorf("a page's Referrer-Policy %q, its meta %v; want same-origin in both",
			r.header.Get("Referrer-Policy"), regexp.MustCompile(`<meta name="referrer"[^>]*>`).FindAllString(r.raw, -1))
	}
	for _, path := range []string{"/reset-password?token=x", "/verify-email?token=x", "/passkeys"} {
		if r := e.do("GET", path, nil); r.header.Get("Cross-Origin-Opener-Policy") != "same-origin" {
			t.Errorf("GET %s: Cross-Origin-Opener-Policy %q, want same-origin", path, r.header.Get("Cross-Origin-Opener-Policy"))
		}
	}
}

// TestNewLinkAddressOpened: a new-link form's address opened in the
// address bar (Enter after its answer) goes on to the page that asks for a
// link, which has that form, not to the API's 405.
func TestNewLinkAddressOpened(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, page := range []string{"/verify-email", "/reset-password"} {
		r := e.do("GET", page+"/new-link", nil) // followed to page
		if r.status != 200 || !strings.Contains(r.raw, `action="`+page+`/new-link"`) || strings.Contains(r.raw, "expired") {
			t.Errorf("GET %s: %d %s; want the form that asks for a link", page, r.status, r.raw)
		}
		// 303 See Other: a GET of the page, whatever sent the browser here.
		resp, err := noRedirects.Get(e.srv.URL + page + "/new-link")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
			t.Errorf("GET %s/new-link: %d to %q, want 303 to %s", page, resp.StatusCode, resp.Header.Get("Location"), page)
		}
	}
}
