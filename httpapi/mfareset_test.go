package httpapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/mail"
	"github.com/google/uuid"
)

// pendingMails are the outbox's mails waiting to go out, of any kind.
func (e *env) pendingMails() []*authd.OutboxMail {
	e.t.Helper()
	mails, err := e.store.Mails(context.Background(), authd.MailFilter{Limit: authd.MaxListLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	return mails
}

// TestAdminResetMFANotifiesTheUser: a reset that removes factors queues
// exactly one mfa_reset mail to the account's address, in the reset's
// transaction, naming what went and when, with no factor material; a reset
// of a user without factors, or of a deleted account, queues none.
func TestAdminResetMFANotifiesTheUser(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, codes := e.mfaUser("notice@example.org")
		u := e.user("notice@example.org")
		e.mail.flush() // what enrolment queued goes out first
		if n := len(e.pendingMails()); n != 0 {
			t.Fatalf("%d mails pending before the reset", n)
		}

		want(t, "reset", e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/reset-mfa", nil), 204, "")
		pending := e.pendingMails()
		if len(pending) != 1 || pending[0].Kind != authd.MailMFAReset || pending[0].To != u.Email ||
			pending[0].UserID != u.ID {
			t.Fatalf("outbox after the reset: %+v; want one mfa_reset mail to %s", pending, u.Email)
		}
		wantRemoved := authd.MFARemoval{TOTP: true, RecoveryCodes: len(codes)}
		if pending[0].Removed != wantRemoved || !pending[0].CreatedAt.Equal(e.clock.Now()) {
			t.Errorf("queued %+v at %s; want removed %+v at %s", pending[0].Removed, pending[0].CreatedAt, wantRemoved, e.clock.Now())
		}

		sent := e.mail.last(t, authd.MailMFAReset, u.Email)
		renderer, err := mail.NewRenderer("https://auth.example.org", "")
		if err != nil {
			t.Fatal(err)
		}
		r, err := renderer.Render(sent)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{r.Subject, r.Text, r.HTML} {
			for _, s := range append([]string{secret, secret[:8]}, codes...) {
				if strings.Contains(part, s) {
					t.Errorf("the notice holds factor material %q:\n%s", s, part)
				}
			}
		}
		for _, s := range []string{"authenticator app", "10 unused recovery codes", e.clock.Now().UTC().Format("2006-01-02 15:04 UTC"),
			"did not ask"} {
			if !strings.Contains(r.Text, s) || !strings.Contains(r.HTML, s) {
				t.Errorf("the notice does not say %q:\n%s", s, r.Text)
			}
		}

		// Nothing left to remove: nothing to tell.
		want(t, "second reset", e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/reset-mfa", nil), 204, "")
		e.registerVerified("plain@example.org", goodPassword)
		plain := e.user("plain@example.org")
		e.mail.flush()
		want(t, "reset without factors", e.admin("POST", "/v1/admin/users/"+plain.ID.String()+"/reset-mfa", nil), 204, "")
		if n := len(e.pendingMails()); n != 0 {
			t.Errorf("%d mails queued by resets that removed nothing", n)
		}

		// A notice not yet sent goes with an erasure; a deleted account gets
		// no reset and no mail.
		e.mfaUser("gone@example.org")
		gone := e.user("gone@example.org")
		e.mail.flush()
		want(t, "reset before the erasure", e.admin("POST", "/v1/admin/users/"+gone.ID.String()+"/reset-mfa", nil), 204, "")
		want(t, "delete", e.admin("DELETE", "/v1/admin/users/"+gone.ID.String(), nil), 204, "")
		for _, m := range e.pendingMails() {
			if m.Kind != authd.MailAccountDeleted {
				t.Errorf("a %s mail to %s outlived the erasure", m.Kind, m.To)
			}
		}
		if n := e.mail.count(authd.MailMFAReset, "gone@example.org"); n != 0 {
			t.Errorf("%d mfa_reset mails sent to an erased account", n)
		}
		want(t, "reset of a deleted account", e.admin("POST", "/v1/admin/users/"+gone.ID.String()+"/reset-mfa", nil), 404, "not_found")
		want(t, "reset of an unknown user", e.admin("POST", "/v1/admin/users/"+uuid.NewString()+"/reset-mfa", nil), 404, "not_found")
		if n := len(e.pendingMails()); n != 0 {
			t.Errorf("%d mails queued by refused resets", n)
		}
	})
}

// TestAdminResetMFANoticeIgnoresTheMailBudget: anyone can spend an
// address's mail budget with forgot-password requests; the notice of a reset
// (a social-engineered one above all) is queued all the same, and the
// reset's audit row says so.
func TestAdminResetMFANoticeIgnoresTheMailBudget(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t), withRateLimit())
		e.mfaUser("budget@example.org")
		u := e.user("budget@example.org")
		e.mail.flush()
		for range 3 {
			e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": u.Email})
		}
		if r := e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": u.Email}); r.status != 429 {
			t.Fatalf("a 4th forgot-password request: %d, want 429 (the budget spent)", r.status)
		}
		want(t, "reset", e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/reset-mfa", nil), 204, "")
		var notices int
		for _, m := range e.pendingMails() {
			if m.Kind == authd.MailMFAReset && m.To == u.Email {
				notices++
			}
		}
		if notices != 1 {
			t.Errorf("%d mfa_reset mails queued after the budget was spent, want 1", notices)
		}
		logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, EventType: authd.EventAdminAction})
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) == 0 || logs[0].AdditionalContext["notice_mailed"] != true {
			t.Errorf("the reset's audit row does not say the notice was queued (%d rows)", len(logs))
		}
	})
}

// TestAdminResetMFAOfAnEnrolmentNeverConfirmed: a TOTP enrolment the user
// began and never confirmed protected nothing: the reset removes it, but
// it is not reported as an authenticator removed and no mfa_reset notice
// is queued (one would tell the user a factor they never had was taken).
func TestAdminResetMFAOfAnEnrolmentNeverConfirmed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("halfway@example.org", goodPassword)
	access, _ := e.login("halfway@example.org", goodPassword)
	want(t, "enrol", e.do("POST", "/v1/users/me/mfa/totp", map[string]string{"password": goodPassword}, bearer(access)...), 200, "")
	u := e.user("halfway@example.org")
	e.mail.flush()
	want(t, "reset", e.admin("POST", "/v1/admin/users/"+u.ID.String()+"/reset-mfa", nil), 204, "")
	if pending := e.pendingMails(); len(pending) != 0 {
		t.Errorf("outbox after the reset of an unconfirmed enrolment: %+v; want nothing", pending)
	}
	if n := e.mail.count(authd.MailMFAReset, "halfway@example.org"); n != 0 {
		t.Errorf("%d mfa_reset mails for an enrolment never confirmed, want none", n)
	}
}
