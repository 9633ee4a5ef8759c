package oidc

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/authd/authd"
)

// The sign-in page's links: create an account, forgot password, and (to a
// sign-in refused for an unverified address) send the link again. They
// call Register, ForgotPassword and ResendVerification, so the mails,
// limits and enumeration safety are the JSON API's; the mails' links open
// the existing verify and reset pages, after which the user comes back to
// sign in.

// accountForm is one of those pages: a form for a saved request that
// calls the service and then says to check the mail, whatever the address
// (SPEC 6.6).
type accountForm struct {
	name   string // the CSRF purpose and the template's "<name>-content"
	title  string
	notice string // shown once the form is accepted
	// noticeOpen, when set, is the notice while logins do not wait for a
	// verified address (AUTHD_REQUIRE_VERIFIED_EMAIL off).
	noticeOpen string
	// resend offers the resend page on the notice, for a mail that does
	// not come (when logins wait for it).
	resend bool
	submit func(p *Provider, r *http.Request, form url.Values) error
}

var (
	signUpForm = accountForm{name: "signup", title: "Create an account",
		notice:     "We sent a link to confirm the address. Open it, then come back here to sign in.",
		noticeOpen: "We sent a link to confirm the address. You can sign in now.", resend: true,
		submit: func(p *Provider, r *http.Request, form url.Values) error {
			return p.svc.Register(r.Context(), client(r.Context()), form.Get("email"), form.Get("password"),
				form.Get("consent") == "yes")
		}}
	forgotForm = accountForm{name: "forgot", title: "Reset your password",
		notice: "If an account has this address, we sent it a link to choose a new password. Then come back here to sign in.",
		submit: func(p *Provider, r *http.Request, form url.Values) error {
			return p.svc.ForgotPassword(r.Context(), client(r.Context()), form.Get("email"))
		}}
	resendForm = accountForm{name: "resend", title: "Confirm your email address",
		notice: "If an account with this address waits for confirmation, we sent it a new link. Open it, then come back here to sign in.",
		submit: func(p *Provider, r *http.Request, form url.Values) error {
			return p.svc.ResendVerification(r.Context(), client(r.Context()), form.Get("email"))
		}}
)

// filled is the form for req, with email filled in.
func (f accountForm) filled(p *Provider, w http.ResponseWriter, r *http.Request, req *authd.AuthRequest, oc *authd.OAuthClient, email string) page {
	return page{Title: f.title, Client: oc.Name, Request: req.ID.String(), Email: email,
		CSRF: p.csrfToken(w, r, f.name, req.ID.String()), content: f.name + "-content"}
}

// show answers the GET: the empty form.
func (f accountForm) show(p *Provider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, oc, ok := p.savedRequest(w, r, r.URL.Query().Get("request"))
		if !ok {
			return
		}
		p.render(w, http.StatusOK, f.filled(p, w, r, req, oc, ""))
	}
}

// post answers the POST: the notice, or the form again with what was
// wrong.
func (f accountForm) post(p *Provider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		form, req, oc, ok := p.requestForm(w, r, f.name)
		if !ok {
			return
		}
		if err := f.submit(p, r, form); err != nil {
			p.formFailed(w, r, f.filled(p, w, r, req, oc, form.Get("email")), err)
			return
		}
		notice, waits := f.notice, p.svc.VerificationRequired()
		if f.noticeOpen != "" && !waits {
			notice = f.noticeOpen
		}
		p.render(w, http.StatusOK, page{Title: "Check your email", Request: req.ID.String(), Notice: notice,
			OfferResend: f.resend && waits, content: "notice-content"})
	}
}

// formFailed shows a form again with what was wrong with it.
func (p *Provider) formFailed(w http.ResponseWriter, r *http.Request, again page, err error) {
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
		again.Error, again.lockedFor = authd.ErrorMessage(err), authd.RetryAfterSeconds(err)
		p.render(w, http.StatusTooManyRequests, again)
	default:
		p.unavailable(w, r, err)
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
