package oidc

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/authd/authd"
	"github.com/authd/authd/templates"
)

// The hosted pages: server-rendered, no external asset, a strict CSP with a
// per-response nonce for the one inline style and the few inline scripts
// (the passkey button's, consent's arming of Allow, the sign-in steps'
// guard against a form sent twice); the pages work without them. Every form
// carries a CSRF token: an HMAC, under the shared form key, of a random
// cookie of this browser, the form's purpose and what it acts on, so a
// page of another site can neither read nor forge it.

//go:embed pages/*.html
var pageFiles embed.FS

// pageNames are the page templates, one file each: NAME.html defines
// "NAME-content", and layout.html defines "layout" around it.
var pageNames = []string{"signin", "mfa", "consent", "logout", "signed-out", "error", "signup", "forgot", "resend", "notice"}

// loadPages parses the page templates: the embedded ones, each replaced by
// dir/NAME.html when that file exists (dir empty: none), rendered once with
// sample data so that a broken override stops start-up naming its file.
func loadPages(dir string) (map[string]*template.Template, error) {
	embedded, err := fs.Sub(pageFiles, "pages")
	if err != nil {
		return nil, err
	}
	return templates.Pages(embedded, dir, pageNames, page{AppName: "authd", BasePath: "/base", Title: "Sample", Client: "App",
		Request: "r", Email: "user@example.org", Method: "totp", TOTP: true, Scopes: []string{"openid"}, Error: "e", Notice: "n",
		PasskeyCSRF: "p", ResendCSRF: "r", OfferResend: true, MFAToken: "m",
		Logout: logoutForm{ClientID: "c", PostLogoutRedirectURI: "https://rp.example.org/", State: "s", IDTokenHint: "h", Dropped: true}})
}

// page is the data of every page.
type page struct {
	AppName string
	// BasePath is the public URL's path ("" or "/idp", never a final "/"),
	// which begins every address of authd's that a page links, posts or
	// fetches to: action="{{.BasePath}}/signin". A proxy in front strips it
	// (README, OpenID Connect); at the root it is empty, and an override
	// that writes "/signin" works as before there.
	BasePath  string
	Color     template.CSS // validated #RRGGBB
	Logo      string
	Title     string
	Nonce     string
	CSRF      string
	Error     string
	Notice    string
	Request   string // the authorization request id
	Client    string // the client's name
	Email     string
	MFAToken  string
	Method    string
	TOTP      bool // the user has an authenticator app (the second-factor page)
	Scopes    []string
	Logout    logoutForm
	content   string
	formTo    []string // origins the page's forms may lead to, besides 'self'
	lockedFor int      // Retry-After seconds, when the account is locked

	// ResendCSRF is the token of the sign-in page's "send the link again"
	// form, shown (set) to a sign-in refused for an unverified address.
	ResendCSRF string
	// OfferResend links the notice, or a sign-in refused for an unverified
	// address without one typed (a passkey's), to the resend page.
	OfferResend bool

	// PasskeyCSRF is the passkey form's token; set, the page shows the
	// passkey button and may run its script.
	PasskeyCSRF string
	// SendOnce runs the layout's script that keeps a form from being sent
	// twice (render sets it for the pages of sendOnce).
	SendOnce bool
}

// sendOnce are the pages whose forms start a session, issue a code or send
// a mail: a second sending, its answer replacing the first's, strands the
// first (or spends another of the address's three mails an hour, or mails
// the new user that someone tried to register with the address).
var sendOnce = map[string]bool{"signin-content": true, "mfa-content": true, "consent-content": true,
	"signup-content": true, "forgot-content": true, "resend-content": true}

type logoutForm struct {
	ClientID, PostLogoutRedirectURI, State, IDTokenHint string
	// Dropped: the request named a return address that could not be
	// checked (no client named, an unknown one) or that its client has
	// not registered, so the sign-out ends here.
	Dropped bool
}

func (p *Provider) render(w http.ResponseWriter, status int, pg page) {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	pg.Nonce = base64.StdEncoding.EncodeToString(nonce)
	pg.AppName, pg.Color, pg.Logo = p.opts.AppName, template.CSS(p.opts.BrandColor), p.opts.LogoURL
	pg.BasePath = p.basePath
	pg.SendOnce = sendOnce[pg.content]
	t, ok := p.pages[pg.content]
	if !ok {
		t, pg = p.pages["error-content"], page{AppName: p.opts.AppName, BasePath: p.basePath, Nonce: pg.Nonce, Title: "Something went wrong",
			Error: "This page could not be shown.", content: "error-content"}
		status = http.StatusInternalServerError
	}
	if pg.lockedFor > 0 && pg.Error != "" {
		pg.Error += " " + tryAgainIn(pg.lockedFor) // what Retry-After tells a program
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", pg); err != nil {
		p.opts.Logger.Error("render page", "page", pg.content, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// Chrome applies form-action to the redirects a form submission leads
	// to: the client's redirect URI must be allowed, and nothing else.
	formAction := "'self'"
	for _, o := range pg.formTo {
		formAction += " " + o
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	script := ""
	switch {
	case pg.PasskeyCSRF != "": // the passkey button's inline script, and its fetch of the request options
		script = "; script-src 'nonce-" + pg.Nonce + "'; connect-src 'self'"
	case pg.SendOnce: // the layout's guard, and consent's script that arms Allow (consent.html)
		script = "; script-src 'nonce-" + pg.Nonce + "'"
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+pg.Nonce+"'"+script+"; img-src "+p.imgSrc()+
		"; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	if pg.lockedFor > 0 {
		h.Set("Retry-After", strconv.Itoa(pg.lockedFor))
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// imgSrc is the CSP source list of the pages' images: the logo's origin,
// never widened to its scheme (origin's fallback for a redirect) — a logo
// on a host CSP cannot name is not shown.
func (p *Provider) imgSrc() string {
	if p.opts.LogoURL == "" {
		return "'none'"
	}
	if o := origin(p.opts.LogoURL); strings.Contains(o, "://") {
		return o
	}
	return "'none'"
}

// validColor reports whether c is a #RRGGBB colour, safe in the style sheet.
func validColor(c string) bool {
	return len(c) == 7 && c[0] == '#' && strings.Trim(c[1:], "0123456789abcdefABCDEF") == ""
}

// tryAgainIn says, for a page, how long a lock or rate limit lasts:
// seconds, rounded up to the unit that reads best.
func tryAgainIn(seconds int) string {
	n, unit := seconds, "second"
	for _, u := range []struct {
		from, size int
		name       string
	}{{2 * 86400, 86400, "day"}, {2 * 3600, 3600, "hour"}, {60, 60, "minute"}} {
		if seconds >= u.from {
			n, unit = (seconds+u.size-1)/u.size, u.name
			break
		}
	}
	if n != 1 {
		unit += "s"
	}
	return "Try again in " + strconv.Itoa(n) + " " + unit + "."
}

// formOnly answers a GET of a path that takes only a page's form (Enter in
// the address bar after the form's answer, a bookmark): a page that says
// so, rather than the API's problem+json.
func (p *Provider) formOnly(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	p.errorPage(w, http.StatusMethodNotAllowed, "Nothing to show here",
		"This address only takes what a sign-in page sends; it cannot be opened on its own.")
}

// errorPage answers a request that cannot be sent back to a client: an
// unknown client, a redirect URI it did not register, an expired request.
func (p *Provider) errorPage(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, page{Title: title, Error: msg, content: "error-content"})
}

// origin is what form-action must allow for a redirect to uri: its origin,
// or its scheme for a native app's private-use scheme, and for a host CSP
// cannot name (an IPv6 literal such as RFC 8252's [::1], a name with an
// underscore, one in Unicode): browsers drop such a source, and with it
// the redirect after Allow, its code spent.
func origin(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	if (u.Scheme == "http" || u.Scheme == "https") && cspHost(u.Hostname()) {
		if port := u.Port(); port != "" {
			return u.Scheme + "://" + u.Hostname() + ":" + port
		}
		return u.Scheme + "://" + u.Hostname() // an empty port (host:) is no port-part
	}
	return u.Scheme + ":"
}

// cspHost reports whether host can stand in a CSP host-source naming the
// host the browser goes to: an IPv4 address, or a DNS host name whose last
// label is no number (authd.DNSHostName). Registration takes no other https
// host (an IPv6 literal aside); this keeps clients registered before it
// working.
func cspHost(host string) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Is4()
	}
	return authd.DNSHostName(host)
}

// cookie names: __Host- (Secure, Path=/, no Domain) when the public URL is
// https; a plain name on http, where browsers refuse __Host- cookies.
func (p *Provider) cookieName(name string) string {
	if p.secure {
		return "__Host-" + name
	}
	return name
}

const (
	sessionCookie = "authd_session"
	csrfCookie    = "authd_csrf"
)

func (p *Provider) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: p.cookieName(name), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
}

// cookie returns the first usable value of the cookie name: a junk one
// (too long) before it is passed over, so that a seed ensureSeed added to
// r is found again in the same answer.
func (p *Provider) cookie(r *http.Request, name string) string {
	for _, c := range r.CookiesNamed(p.cookieName(name)) {
		if c.Value != "" && len(c.Value) <= 128 {
			return c.Value
		}
	}
	return ""
}

// csrfToken returns the form token for purpose and binding, setting this
// browser's CSRF cookie first when it has none.
func (p *Provider) csrfToken(w http.ResponseWriter, r *http.Request, purpose, binding string) string {
	return p.formMAC(p.ensureSeed(w, r), purpose, binding)
}

// ensureSeed returns this browser's CSRF cookie (its seed), setting a new
// one when it has none. The new seed is added to r as well, so that every
// token and binding of the same answer uses it.
func (p *Provider) ensureSeed(w http.ResponseWriter, r *http.Request) string {
	if seed := p.cookie(r, csrfCookie); seed != "" {
		return seed
	}
	b := make([]byte, 32)
	rand.Read(b)
	seed := base64.RawURLEncoding.EncodeToString(b)
	p.setCookie(w, csrfCookie, seed, 0)
	r.AddCookie(&http.Cookie{Name: p.cookieName(csrfCookie), Value: seed})
	return seed
}

func (p *Provider) formMAC(seed, purpose, binding string) string {
	m := hmac.New(sha256.New, p.opts.FormKey)
	m.Write([]byte("authd form v1\x00" + seed + "\x00" + purpose + "\x00" + binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether the form's token is this browser's for purpose
// and binding.
func (p *Provider) checkCSRF(r *http.Request, form url.Values, purpose, binding string) bool {
	return p.thisBrowsers(r, form.Get("csrf"), purpose, binding)
}

// thisBrowsers reports whether mac is formMAC of this browser's seed for
// purpose and binding; never for a browser without a seed or an empty mac.
func (p *Provider) thisBrowsers(r *http.Request, mac, purpose, binding string) bool {
	seed := p.cookie(r, csrfCookie)
	if seed == "" || mac == "" {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(p.formMAC(seed, purpose, binding)))
}

// readForm reads a bounded urlencoded form body (never the query string).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return nil, false
	}
	if limitForm(w, r) {
		return nil, false
	}
	if err := r.ParseForm(); err != nil {
		formTooLarge(w, err) // the page's answer closes the connection then
		return nil, false
	}
	if repeated(r.PostForm) {
		return nil, false
	}
	return r.PostForm, true
}

// repeated reports whether a parameter is given more than once, which
// every endpoint and form refuses (RFC 6749 §3.1, §3.2): the checks read
// one value, and which one must not be left to chance.
func repeated(q url.Values) bool {
	for _, vs := range q {
		if len(vs) > 1 {
			return true
		}
	}
	return false
}
