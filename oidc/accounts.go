package oidc

import (
	"errors"
	"net/http"
	"strings"

	"github.com/authd/authd"
)

// The sign-in page's links: create an account and forgot password. They
// call Register and ForgotPassword, so the mails, limits and enumeration
// safety are the JSON API's; the mails' links open the existing verify and
// reset pages, after which the user comes back to sign in.

func (p *Provider) signUpPage(w http.ResponseWriter, r *http.Request) {
	req, oc, ok := p.savedRequest(w, r, r.URL.Query().Get("request"))
	if !ok {
		return
	}
	p.render(w, http.StatusOK, page{Title: "Create an account", Client: oc.Name, Request: req.ID.String(),
		CSRF: p.csrfToken(w, r, "signup", req.ID.String()), content: "signup-content"})
}

func (p *Provider) signUp(w http.ResponseWriter, r *http.Request) {
	form, req, oc, ok := p.requestForm(w, r, "signup")
	if !ok {
		return
	}
	again := page{Title: "Create an account", Client: oc.Name, Request: req.ID.String(), Email: form.Get("email"),
		CSRF: p.csrfToken(w, r, "signup", req.ID.String()), content: "signup-content"}
	err := p.svc.Register(r.Context(), client(r.Context()), form.Get("email"), form.Get("password"), form.Get("consent") == "yes")
	if err != nil {
		p.formFailed(w, again, err)
		return
	}
	// The same answer whether or not the address had an account (SPEC 6.6).
	p.render(w, http.StatusOK, page{Title: "Check your email", Request: req.ID.String(),
		Notice: "We sent a link to confirm the address. Open it, then come back here to sign in.", content: "notice-content"})
}

func (p *Provider) forgotPage(w http.ResponseWriter, r *http.Request) {
	req, oc, ok := p.savedRequest(w, r, r.URL.Query().Get("request"))
	if !ok {
		return
	}
	p.render(w, http.StatusOK, page{Title: "Reset your password", Client: oc.Name, Request: req.ID.String(),
		CSRF: p.csrfToken(w, r, "forgot", req.ID.String()), content: "forgot-content"})
}

func (p *Provider) forgot(w http.ResponseWriter, r *http.Request) {
	form, req, oc, ok := p.requestForm(w, r, "forgot")
	if !ok {
		return
	}
	again := page{Title: "Reset your password", Client: oc.Name, Request: req.ID.String(), Email: form.Get("email"),
		CSRF: p.csrfToken(w, r, "forgot", req.ID.String()), content: "forgot-content"}
	if err := p.svc.ForgotPassword(r.Context(), client(r.Context()), form.Get("email")); err != nil {
		p.formFailed(w, again, err)
		return
	}
	p.render(w, http.StatusOK, page{Title: "Check your email", Request: req.ID.String(),
		Notice:  "If an account has this address, we sent it a link to choose a new password. Then come back here to sign in.",
		content: "notice-content"})
}

// formFailed shows a form again with what was wrong with it.
func (p *Provider) formFailed(w http.ResponseWriter, again page, err error) {
	var e *authd.Error
	switch authd.ErrorCode(err) {
	case authd.EInvalid, authd.EWeakPassword:
		var msgs []string
		if errors.As(err, &e) {
			for _, f := range e.Fields {
				msgs = append(msgs, fieldLabel(f.Field)+" "+f.Message+".")
			}
		}
		again.Error = strings.Join(msgs, " ")
		if again.Error == "" {
			again.Error = authd.ErrorMessage(err)
		}
		p.render(w, http.StatusBadRequest, again)
	case authd.ERateLimited:
		again.Error, again.lockedFor = authd.ErrorMessage(err), retryAfter(err)
		p.render(w, http.StatusTooManyRequests, again)
	default:
		p.unavailable(w, err)
	}
}

func fieldLabel(field string) string {
	switch field {
	case "email":
		return "The email address"
	case "password":
		return "The password"
	case "consent":
		return "Consent"
	}
	return field
}
