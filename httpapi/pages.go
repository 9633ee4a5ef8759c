package httpapi

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/authd/authd"
	"github.com/authd/authd/templates"
)

// The pages that mail links open (SPEC §7): server-rendered, no script, no
// external asset, a strict CSP with a per-response nonce for the one inline
// style. A GET never consumes a token, because mail scanners follow links:
// the user presses a button (verify) or submits the form (reset).

//go:embed pages/pages.html
var pageDir embed.FS

// pageFiles holds the embedded pages.html at its root.
var pageFiles = func() fs.FS {
	sub, err := fs.Sub(pageDir, "pages")
	if err != nil {
		panic(err)
	}
	return sub
}()

// Pages are the parsed page templates: for each "*-content" template, the
// layout with that content.
type Pages map[string]*template.Template

// embeddedPages are the pages built in, parsed once at start.
var embeddedPages = func() Pages {
	p, err := LoadPages("")
	if err != nil {
		panic(err) // the embedded file is ours: a test renders every page
	}
	return p
}()

// PagesFile is the file of page templates; an operator's copy in the
// directory given to LoadPages replaces the embedded one.
const PagesFile = "pages.html"

// LoadPages parses the page templates: the embedded file, then
// dir/pages.html when dir is not empty and has one (an operator's override,
// as AUTHD_TEMPLATES_DIR/pages/). The override's {{define}}s replace the
// embedded ones of the same name, and what it does not define (a page added
// by a later version, such as the passkey pages) stays the embedded one, so
// an upgrade never breaks an operator's copy. Each page is rendered once
// with sample data, so a broken override stops start-up naming the file
// rather than failing in front of a user.
func LoadPages(dir string) (Pages, error) {
	embedded, err := fs.ReadFile(pageFiles, PagesFile)
	if err != nil {
		return nil, err
	}
	base, err := template.New(PagesFile).Parse(string(embedded))
	if err != nil {
		return nil, fmt.Errorf("page templates: the embedded %s: %w", PagesFile, err)
	}
	source := "the embedded " + PagesFile
	if dir != "" {
		text, err := templates.Read(pageFiles, dir, PagesFile)
		if err != nil {
			return nil, err
		}
		source = filepath.Join(dir, PagesFile)
		if _, err := base.Parse(text); err != nil {
			return nil, fmt.Errorf("page templates %s: %w", source, err)
		}
	}
	out := Pages{}
	for _, name := range pageNames {
		page, err := base.Clone()
		if err == nil {
			_, err = page.New("content").Parse(`{{template "` + name + `" .}}`)
		}
		if err == nil {
			err = page.ExecuteTemplate(io.Discard, "layout", samplePage)
		}
		if err != nil {
			return nil, fmt.Errorf("page templates %s, page %s: %w", source, name, err)
		}
		out[name] = page
	}
	return out, nil
}

// pageNames are the pages authd renders.
var pageNames = []string{"verify-content", "verified-content", "reset-content", "reset-done-content",
	"expired-content", "new-link-content", "problem-content", "passkeys-content", "passkey-sign-in-content"}

// samplePage is what LoadPages renders each page with.
var samplePage = page{Title: "Sample", BasePath: "/base", Nonce: "bm9uY2U=", Token: "token", Error: "An error.", MinLength: 12,
	NewLinkAction: "/verify-email/new-link", NewEmail: "new@example.net", AskCode: true, AskTOTP: true,
	AskPasskey: true, Script: true}

// page is the data of every page.
type page struct {
	Title string
	// BasePath is the public URL's path ("" or "/idp", never a final "/"),
	// which begins every address of authd's that a page links, posts or
	// fetches to: action="{{.BasePath}}/reset-password". A proxy in front
	// strips it; at the root it is empty, and an override that writes
	// "/reset-password" works as before there.
	BasePath  string
	Nonce     string
	Token     string
	Error     string
	MinLength int
	// NewLinkAction is the route of the expired page's form; renderPage
	// puts BasePath before it, so that the page posts where a browser
	// reaches it.
	NewLinkAction string
	// NewEmail, on the verification pages, is the address a link that
	// changes it moves the account to ("" for one that confirms it).
	NewEmail string
	// AskCode, AskTOTP and AskPasskey: the second factor a link that
	// changes the address asks for (askFactor).
	AskCode, AskTOTP, AskPasskey bool
	// Script: the page runs its inline scripts (under the nonce) and calls
	// this origin's API; the other pages have no script at all.
	Script bool
	// NoLink: the page asking for a link was opened without one (the
	// register notice's), not by a dead link.
	NoLink  bool
	content string
}

// renderPage writes an HTML page; the content template is chosen by name.
func (s *Server) renderPage(w http.ResponseWriter, status int, p page) error {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	p.Nonce = base64.StdEncoding.EncodeToString(nonce)
	p.BasePath = s.basePath
	if p.NewLinkAction != "" {
		p.NewLinkAction = s.basePath + p.NewLinkAction
	}
	pages := s.opts.Pages
	if pages == nil {
		pages = embeddedPages
	}
	t, ok := pages[p.content]
	if !ok {
		return fmt.Errorf("no page content %q", p.content)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Referrer-Policy", "same-origin") // see errCrossSiteForm
	// No window that opened a page keeps a handle on it (the passkeys page
	// holds an access token): these pages are opened from mail and links,
	// never as a relying party's popup, which the OpenID pages may be.
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	script := ""
	if p.Script {
		script = "script-src 'nonce-" + p.Nonce + "'; connect-src 'self'; "
	}
	h.Set("Content-Security-Policy", "default-src 'none'; "+script+"style-src 'nonce-"+p.Nonce+"'; form-action 'self'; "+
		"frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
	return nil
}

// Page forms that another site's page sent are refused (Server.pageForms:
// its Sec-Fetch-Site, or an Origin that is neither this host nor
// AUTHD_PUBLIC_URL's): the verification and reset forms carry their token,
// but "send me a new link" carries only an address, and another site could
// otherwise make its visitors' browsers mail any address a new link
// (voiding the pending one) from their own IPs. Requests without either
// header (curl, mail clients) are no browser's cross-site request and pass.
// The pages are served with Referrer-Policy: same-origin, under which a
// browser names their origin on the forms' POST (no-referrer makes it
// "null").
var errCrossSiteForm = authd.Errorf(authd.EForbidden,
	"This form was sent from another site. Open the page on this server and send it from there.")

// readForm reads a bounded application/x-www-form-urlencoded body; the
// query string is never read.
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if err := s.pageForms.Check(r); err != nil {
		return nil, errCrossSiteForm
	}
	body, err := readBody(w, r, "application/x-www-form-urlencoded")
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalid("", "is not a valid form")
	}
	// A field given twice is refused, as in a JSON body and the OpenID
	// pages' forms: which of the two a check reads must not be left to
	// chance (a token, a password).
	for _, k := range slices.Sorted(maps.Keys(form)) {
		if len(form[k]) > 1 {
			return nil, &authd.Error{Code: authd.EInvalid, Message: "The form sends a field more than once.",
				Fields: []authd.FieldError{{Field: k, Message: "appears twice"}}}
		}
	}
	return form, nil
}

// pageError renders a domain error as a page: expired tokens offer a new
// link, policy errors go back to the form, and the rest get a plain message.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error, p page) error {
	code := authd.ErrorCode(err)
	switch code {
	case authd.EInvalidToken:
		p.Title, p.content = "Link expired", "expired-content"
		return s.renderPage(w, http.StatusBadRequest, p)
	case authd.EInternal:
		s.logger.ErrorContext(r.Context(), "page failed", "path", r.URL.Path, "request_id", RequestID(r.Context()), "err", err)
	}
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if n := authd.RetryAfterSeconds(err); n > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(n))
	}
	p.Title, p.Error, p.content = "Something went wrong", authd.ErrorMessage(err), "problem-content"
	return s.renderPage(w, status, p)
}

// askFactor makes p, a link's page that changes the address, ask for the
// second factor by the methods its user has.
func (p *page) askFactor(methods []string) {
	p.AskTOTP = slices.Contains(methods, authd.MethodTOTP)
	p.AskPasskey = slices.Contains(methods, authd.MethodPasskey)
	p.AskCode = p.AskTOTP || slices.Contains(methods, authd.MethodRecoveryCode)
	p.Script = p.AskPasskey
}

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("token")
	p := page{Title: "Confirm your email address", Token: token, NewLinkAction: "/verify-email/new-link"}
	if !r.URL.Query().Has("token") {
		// No link followed (the new-link form's address opened): the page
		// that asks for one.
		p.Title, p.NoLink, p.content = "Send a new link", true, "expired-content"
		return s.renderPage(w, http.StatusOK, p)
	}
	newEmail, err := s.svc.CheckToken(r.Context(), client(r), token, authd.VerifyEmail)
	if err == nil && newEmail != "" {
		var methods []string
		methods, err = s.svc.EmailChangeMethods(r.Context(), token)
		p.askFactor(methods)
	}
	if authd.ErrorCode(err) == authd.EInvalidToken && authd.IsChangeLink(token) {
		return s.deadChangeLink(w, p, err)
	}
	if err != nil {
		return s.pageError(w, r, err, p)
	}
	p.NewEmail, p.content = newEmail, "verify-content"
	return s.renderPage(w, http.StatusOK, p)
}

// deadChangeLink answers err, a dead link that would have moved an account
// to a new address: the expired page's "new verification link" does not
// help with that, and its owner must ask for the change again. A link this
// very request voided says why.
func (s *Server) deadChangeLink(w http.ResponseWriter, p page, err error) error {
	p.Title, p.content = "This link no longer works", "problem-content"
	p.Error = "This link to move an account to a new address no longer works: it expired, was used, was " +
		"replaced by a newer request or cancelled, or ran out of password attempts. Ask for the change again from your account."
	if authd.LinkVoided(err) {
		p.Error = authd.ErrorMessage(err)
	}
	return s.renderPage(w, http.StatusBadRequest, p)
}

// formAgain are the refusals of a link that moves an account after which
// its page shows the form again (verifySubmit).
var formAgain = []authd.Code{authd.EInvalid, authd.EInvalidCredentials, authd.EMFARequired,
	authd.ERateLimited, authd.EAccountLocked}

func (s *Server) verifySubmit(w http.ResponseWriter, r *http.Request) error {
	p := page{Title: "Confirm your email address", NewLinkAction: "/verify-email/new-link"}
	form, err := s.readForm(w, r)
	if err != nil {
		return s.pageError(w, r, err, p)
	}
	token := form.Get("token")
	proof := authd.StepUp{Code: form.Get("code"), Passkey: []byte(form.Get("passkey"))}
	newEmail, err := s.svc.VerifyEmail(r.Context(), client(r), token, form.Get("password"), proof)
	switch code := authd.ErrorCode(err); {
	case authd.LinkVoided(err): // a lock this attempt met or set may be the answer too
		return s.deadChangeLink(w, p, err)
	case newEmail != "" && slices.Contains(formAgain, code):
		// A link that moves the account, without its right password or
		// second factor, or refused for now (a limit, a lock): the form
		// again, the link still good.
		status := http.StatusBadRequest
		if code == authd.ERateLimited || code == authd.EAccountLocked {
			status = statuses[code]
			if n := authd.RetryAfterSeconds(err); n > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(n))
			}
		}
		p.Token, p.NewEmail, p.Error, p.content = token, newEmail, authd.ErrorMessage(err), "verify-content"
		switch e, _ := errors.AsType[*authd.Error](err); {
		case form.Get("password") == "":
			p.Error = "Enter your account's password."
		case code == authd.EMFARequired:
			p.Error = "Prove your second factor too."
		case code == authd.EInvalid && len(e.Fields) > 0 && e.Message == authd.InvalidFields:
			p.Error = "The " + strings.ReplaceAll(e.Fields[0].Field, "_", " ") + " " + e.Fields[0].Message + "."
		}
		if m, ok := errors.AsType[*authd.MFARequired](err); ok {
			p.askFactor(m.Methods)
		} else if methods, err := s.svc.EmailChangeMethods(r.Context(), token); err == nil {
			p.askFactor(methods)
		}
		return s.renderPage(w, status, p)
	case code == authd.EInvalidToken && authd.IsChangeLink(token):
		return s.deadChangeLink(w, p, err)
	}
	if err != nil {
		return s.pageError(w, r, err, p)
	}
	p.Title, p.NewEmail, p.content = "Email address confirmed", newEmail, "verified-content"
	return s.renderPage(w, http.StatusOK, p)
}

func (s *Server) resetPage(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("token")
	p := page{Title: "Choose a new password", Token: token, MinLength: s.opts.PasswordMinLength,
		NewLinkAction: "/reset-password/new-link"}
	if !r.URL.Query().Has("token") {
		// No link followed: the page a mail without one (someone tried to
		// register with the address) sends the user to, asking for a link.
		p.Title, p.NoLink, p.content = "Reset your password", true, "expired-content"
		return s.renderPage(w, http.StatusOK, p)
	}
	if _, err := s.svc.CheckToken(r.Context(), client(r), token, authd.PasswordReset); err != nil {
		return s.pageError(w, r, err, p)
	}
	p.content = "reset-content"
	return s.renderPage(w, http.StatusOK, p)
}

func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request) error {
	p := page{Title: "Choose a new password", MinLength: s.opts.PasswordMinLength, NewLinkAction: "/reset-password/new-link"}
	form, err := s.readForm(w, r)
	if err != nil {
		return s.pageError(w, r, err, p)
	}
	p.Token = form.Get("token")
	pw := form.Get("new_password")
	if pw != form.Get("confirm_password") {
		p.Error, p.content = "The two passwords do not match.", "reset-content"
		return s.renderPage(w, http.StatusBadRequest, p)
	}
	err = s.svc.ResetPassword(r.Context(), client(r), p.Token, pw)
	if authd.ErrorCode(err) == authd.EWeakPassword || authd.ErrorCode(err) == authd.EInvalid {
		p.Error, p.content = authd.ErrorMessage(err), "reset-content"
		return s.renderPage(w, http.StatusBadRequest, p)
	}
	if err != nil {
		return s.pageError(w, r, err, p)
	}
	p.Title, p.content = "Password changed", "reset-done-content"
	return s.renderPage(w, http.StatusOK, p)
}

// seeOther sends a browser on to the page at the route path, under the
// public URL's path.
func (s *Server) seeOther(path string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		http.Redirect(w, r, s.basePath+path, http.StatusSeeOther)
		return nil
	}
}

// newLink answers the "send me a new link" form of an expired page alike
// for every address.
func (s *Server) newLink(action string, send func(*http.Request, string) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := page{Title: "Check your mail", NewLinkAction: action, content: "new-link-content"}
		form, err := s.readForm(w, r)
		if err == nil {
			err = send(r, form.Get("email"))
		}
		switch authd.ErrorCode(err) {
		case "":
			return s.renderPage(w, http.StatusOK, p)
		case authd.EInvalid:
			p.Title, p.Error = "Send a new link", "Enter a valid email address, such as name@example.org."
			return s.renderPage(w, http.StatusBadRequest, p)
		}
		return s.pageError(w, r, err, p)
	}
}

// passkeyPage renders a passkey page: passkeys-content, where a signed-in
// user adds passkeys, or passkey-sign-in-content, where anyone signs in
// with one (WebAuthn needs a page on the relying party's origin and a
// little script). With passkeys off it answers 404, as the passkey routes
// of the API do.
func (s *Server) passkeyPage(title, content string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !s.svc.PasskeysEnabled() {
			return s.pageError(w, r, errPasskeyPagesOff, page{})
		}
		return s.renderPage(w, http.StatusOK, page{Title: title, Script: true, content: content})
	}
}

var errPasskeyPagesOff = authd.Errorf(authd.ENotFound, "Passkeys are not enabled on this server.")
