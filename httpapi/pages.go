package httpapi

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/authd/authd"
)

// The pages that mail links open (SPEC §7): server-rendered, no script, no
// external asset, a strict CSP with a per-response nonce for the one inline
// style. A GET never consumes a token, because mail scanners follow links:
// the user presses a button (verify) or submits the form (reset).

//go:embed pages/pages.html
var pageFiles embed.FS

// pageTemplates holds, for each "*-content" template, the layout with that
// content, parsed once at start.
var pageTemplates = func() map[string]*template.Template {
	base := template.Must(template.ParseFS(pageFiles, "pages/pages.html"))
	out := map[string]*template.Template{}
	for _, t := range base.Templates() {
		if name := t.Name(); strings.HasSuffix(name, "-content") {
			page := template.Must(base.Clone())
			template.Must(page.New("content").Parse(`{{template "` + name + `" .}}`))
			out[name] = page
		}
	}
	return out
}()

// page is the data of every page.
type page struct {
	Title         string
	Nonce         string
	Token         string
	Error         string
	MinLength     int
	NewLinkAction string
	// Script: the page runs its inline scripts (under the nonce) and calls
	// this origin's API; the other pages have no script at all.
	Script  bool
	content string
}

// renderPage writes an HTML page; the content template is chosen by name.
func (s *Server) renderPage(w http.ResponseWriter, status int, p page) error {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	p.Nonce = base64.StdEncoding.EncodeToString(nonce)
	t, ok := pageTemplates[p.content]
	if !ok {
		return fmt.Errorf("no page content %q", p.content)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
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

// readForm reads a bounded application/x-www-form-urlencoded body; the
// query string is never read.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	body, err := readBody(w, r, "application/x-www-form-urlencoded")
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalid("", "is not a valid form")
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
		s.logger.ErrorContext(r.Context(), "page failed", "path", r.URL.Path, "request_id", requestID(r.Context()), "err", err)
	}
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if e, ok := err.(*authd.Error); ok && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e.RetryAfter))
	}
	p.Title, p.Error, p.content = "Something went wrong", authd.ErrorMessage(err), "problem-content"
	return s.renderPage(w, status, p)
}

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("token")
	p := page{Title: "Confirm your email address", Token: token, NewLinkAction: "/verify-email/new-link"}
	if err := s.svc.CheckToken(r.Context(), token, authd.VerifyEmail); err != nil {
		return s.pageError(w, r, err, p)
	}
	p.content = "verify-content"
	return s.renderPage(w, http.StatusOK, p)
}

func (s *Server) verifySubmit(w http.ResponseWriter, r *http.Request) error {
	p := page{Title: "Confirm your email address", NewLinkAction: "/verify-email/new-link"}
	form, err := readForm(w, r)
	if err != nil {
		return s.pageError(w, r, err, p)
	}
	if err := s.svc.VerifyEmail(r.Context(), client(r), form.Get("token")); err != nil {
		return s.pageError(w, r, err, p)
	}
	p.Title, p.content = "Email address confirmed", "verified-content"
	return s.renderPage(w, http.StatusOK, p)
}

func (s *Server) resetPage(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("token")
	p := page{Title: "Choose a new password", Token: token, MinLength: s.opts.PasswordMinLength,
		NewLinkAction: "/reset-password/new-link"}
	if err := s.svc.CheckToken(r.Context(), token, authd.PasswordReset); err != nil {
		return s.pageError(w, r, err, p)
	}
	p.content = "reset-content"
	return s.renderPage(w, http.StatusOK, p)
}

func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request) error {
	p := page{Title: "Choose a new password", MinLength: s.opts.PasswordMinLength, NewLinkAction: "/reset-password/new-link"}
	form, err := readForm(w, r)
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

// newLink answers the "send me a new link" form of an expired page alike
// for every address.
func (s *Server) newLink(action string, send func(*http.Request, string) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p := page{Title: "Check your mail", NewLinkAction: action, content: "new-link-content"}
		form, err := readForm(w, r)
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

// passkeysPage is where a signed-in user adds passkeys, and
// passkeySignInPage where anyone signs in with one (WebAuthn needs a page
// on the relying party's origin and a little script).
func (s *Server) passkeysPage(w http.ResponseWriter, _ *http.Request) error {
	return s.renderPage(w, http.StatusOK, page{Title: "Passkeys", Script: true, content: "passkeys-content"})
}

func (s *Server) passkeySignInPage(w http.ResponseWriter, _ *http.Request) error {
	return s.renderPage(w, http.StatusOK, page{Title: "Sign in", Script: true, content: "passkey-sign-in-content"})
}
