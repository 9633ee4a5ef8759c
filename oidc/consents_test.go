package oidc_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"
)

// goneClientStore answers that the client gone does not exist once told
// to, as when it is deleted between two reads.
type goneClientStore struct {
	authd.Store
	gone string
	on   atomic.Bool
}

func (s *goneClientStore) OAuthClient(ctx context.Context, id string) (*authd.OAuthClient, error) {
	if s.on.Load() && id == s.gone {
		return nil, authd.Errorf(authd.ENotFound, "no such client")
	}
	return s.Store.OAuthClient(ctx, id)
}

// TestConsentsOfADeletedClient: a client deleted while its consents are
// listed is left out of the list, which still answers.
func TestConsentsOfADeletedClient(t *testing.T) {
	t.Parallel()
	store := &goneClientStore{Store: openSQLite(t), gone: "gone"}
	e := newEnv(t, store)
	u := e.user("dora@example.org")
	for _, id := range []string{"gone", "kept"} {
		e.client(id, authd.ClientConfidential, false)
		if err := e.store.SaveConsent(context.Background(), &authd.Consent{ID: authd.NewID(), UserID: u.ID, ClientID: id,
			Scopes: []string{authd.ScopeOpenID}, GrantedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := e.svc.Login(context.Background(), authd.Client{}, "dora@example.org", goodPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	store.on.Store(true)
	status, body := e.call("GET", "/v1/users/me/consents", pair.AccessToken)
	if status != http.StatusOK || strings.Contains(body, `"client_id":"gone"`) || !strings.Contains(body, `"client_id":"kept"`) {
		t.Errorf("consents with a client deleted meanwhile: %d %s; want only kept's", status, body)
	}
}

// TestClientDeletionCountsTheSessionsItEnds: the administrator's row of a
// client's deletion says how many sessions it ended, as a consent
// withdrawal's does.
func TestClientDeletionCountsTheSessionsItEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	c, cs := e.client("doomed", authd.ClientConfidential, true)
	r := e.rp(c, cs)
	for _, email := range []string{"del1@example.org", "del2@example.org"} {
		e.user(email)
		verifier := oauth2.GenerateVerifier()
		if _, err := r.cfg.Exchange(r.ctx, r.login(t, e.browser(), email, "s", "n", verifier), oauth2.VerifierOption(verifier)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.DeleteClient(context.Background(), authd.Client{}, c.ID); err != nil {
		t.Fatal(err)
	}
	logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventAdminAction})
	if err != nil || len(logs) == 0 || logs[0].AdditionalContext["action"] != "delete_client" ||
		logs[0].AdditionalContext["sessions_revoked"] != float64(2) {
		t.Errorf("the deletion's row: %v, %v; want delete_client with sessions_revoked 2", logs, err)
	}
}

// TestClientDeletionEndsItsTokensAtOnce: deleting a client ends the
// sessions it started everywhere, at once: the access token its code
// redemption gave stops being active before it expires (a revocation is
// published, not only the session rows ended), and its refresh token is
// refused.
func TestClientDeletionEndsItsTokensAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	c, cs := e.client("doomed", authd.ClientConfidential, true)
	r := e.rp(c, cs, authd.ScopeOfflineAccess)
	e.user("gone@example.org")
	verifier := oauth2.GenerateVerifier()
	tok, err := r.cfg.Exchange(r.ctx, r.login(t, e.browser(), "gone@example.org", "s", "n", verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.me(tok.AccessToken); got != http.StatusOK {
		t.Fatalf("the client's access token before the deletion: %d, want active", got)
	}
	if err := e.svc.DeleteClient(context.Background(), authd.Client{}, c.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.me(tok.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("the deleted client's access token: %d, want inactive at once (its session revoked everywhere)", got)
	}
	if got := e.jsonRefresh(tok.RefreshToken); got == http.StatusOK {
		t.Errorf("the deleted client's refresh token: %d, want refused", got)
	}
}

// logOutageStore fails security-log writes outside a transaction while
// down is set, as in a database outage.
type logOutageStore struct {
	authd.Store
	down atomic.Bool
}

func (s *logOutageStore) CreateSecurityLog(ctx context.Context, l *authd.SecurityLog) error {
	if s.down.Load() {
		return authd.Errorf(authd.EUnavailable, "the database is down")
	}
	return s.Store.CreateSecurityLog(ctx, l)
}

// InTx fails the transaction's security-log rows too.
func (s *logOutageStore) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(&logOutageQueries{Queries: q, down: &s.down}) })
}

type logOutageQueries struct {
	authd.Queries
	down *atomic.Bool
}

func (q *logOutageQueries) CreateSecurityLog(ctx context.Context, l *authd.SecurityLog) error {
	if q.down.Load() {
		return authd.Errorf(authd.EUnavailable, "the database is down")
	}
	return q.Queries.CreateSecurityLog(ctx, l)
}

// consentPage runs a new browser through sign-in to the consent page of a
// client that is not first-party and returns it with the page's form.
func (e *env) consentPage(email string) (*browser, url.Values) {
	e.t.Helper()
	e.user(email)
	c, err := e.store.OAuthClient(context.Background(), "third")
	var cs string // not needed to reach the page
	if authd.ErrorCode(err) == authd.ENotFound {
		c, cs = e.client("third", authd.ClientConfidential, false)
	} else if err != nil {
		e.t.Fatal(err)
	}
	r := e.rp(c, cs, "email")
	b := e.browser()
	b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).signIn(email, goodPassword)
	if !strings.Contains(b.body, `name="decision"`) {
		e.t.Fatalf("no consent page: %d %s", b.last.StatusCode, b.last.Header.Get("Location"))
	}
	f := b.form()
	f.Set("decision", "deny")
	return b, f
}

// TestDeniedConsentIsLogged: a user who denies a client on the consent page
// leaves an oidc_consent_granted row with result failure, reason "consent
// denied", the client and the scopes (SPEC 6.10), and the client gets
// access_denied. The decision is final: the request ends, and the same
// form sent again with Allow gets no code.
func TestDeniedConsentIsLogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		b, f := e.consentPage("deny@example.org")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("error") != "access_denied" || cb.Get("state") != "s" {
			t.Fatalf("deny: %d %v; want error=access_denied with the state", b.last.StatusCode, cb)
		}
		f.Set("decision", "allow")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb != nil {
			t.Errorf("the denied request allowed after all: %d %v; want no answer to the client", b.last.StatusCode, cb)
		}
		logs, err := e.store.SecurityLogs(context.Background(),
			authd.SecurityLogFilter{UserID: e.userByEmail("deny@example.org").ID, Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(logs, func(l *authd.SecurityLog) bool { return l.EventType == authd.EventOIDCConsentGranted })
		if i < 0 {
			t.Fatalf("a denied consent left no oidc_consent_granted row: %v", e.events(e.userByEmail("deny@example.org")))
		}
		l := logs[i]
		if l.Result != authd.ResultFailure || l.FailureReason != "consent denied" ||
			l.AdditionalContext["client_id"] != "third" || l.AdditionalContext["scopes"] != "openid email" {
			t.Errorf("the denial's row: %s %q %v; want failure, \"consent denied\", client_id third, scopes \"openid email\"",
				l.Result, l.FailureReason, l.AdditionalContext)
		}
	})
}

// TestClientNamesAreIsolated: a client's name is shown inside <bdi>, so
// one stored before names were checked (a right-to-left override in it)
// cannot reorder the page's own words around it.
func TestClientNamesAreIsolated(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		b, _ := e.consentPage("bidi@example.org")
		c, err := e.store.OAuthClient(context.Background(), "third")
		if err != nil {
			t.Fatal(err)
		}
		c.Name = "Evil\u202eCo"
		if err := e.store.UpdateClient(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		b.get(b.last.Request.URL.String())
		if want := "<strong><bdi>Evil\u202eCo</bdi></strong>"; !strings.Contains(b.body, want) {
			t.Errorf("the consent page does not isolate the client's name (want %q):\n%s", want, b.body)
		}
	})
}

// decision is what a decision sent from a consent page works on: its
// request, as the page read it before another decision committed, and
// the browser session it was shown for.
func (e *env) decision(email string, f url.Values) (*authd.AuthRequest, *authd.Session) {
	e.t.Helper()
	ctx := context.Background()
	id, err := uuid.Parse(f.Get("request"))
	if err != nil {
		e.t.Fatal(err)
	}
	req, _, err := e.svc.AuthRequest(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	live, err := e.store.Sessions(ctx, e.userByEmail(email).ID, e.clock.Now())
	if err != nil || len(live) != 1 {
		e.t.Fatalf("the browser session: %v, %v; want one", live, err)
	}
	return req, live[0]
}

// denied reports whether the user's security log has a denied consent.
func (e *env) denied(u *authd.User) bool {
	e.t.Helper()
	logs, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{UserID: u.ID, Limit: 200})
	if err != nil {
		e.t.Fatal(err)
	}
	return slices.ContainsFunc(logs, func(l *authd.SecurityLog) bool {
		return l.EventType == authd.EventOIDCConsentGranted && l.Result == authd.ResultFailure
	})
}

// TestAllowAfterADenial: Allow and Deny sent from one consent page (two
// tabs, a double submit) each read the request before the other ended it.
// A denial that committed first leaves no consent for the Allow to save,
// and no code.
func TestAllowAfterADenial(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		const email = "denied-first@example.org"
		b, f := e.consentPage(email)
		req, sess := e.decision(email, f) // the Allow's reads
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("error") != "access_denied" {
			t.Fatalf("deny: %d %v", b.last.StatusCode, cb)
		}
		ctx := context.Background()
		if code, _, err := e.svc.AllowConsent(ctx, authd.Client{}, req.ID, sess); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("an Allow after the denial: %q, %v; want ENotFound", code, err)
		}
		if c, err := e.store.Consent(ctx, sess.UserID, "third"); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the denied client has a consent: %v %v", c, err)
		}
	})
}

// TestDenialAfterACode: the other order: an Allow that got its code is not
// denied after it (the client would hear both), nor logged as denied.
func TestDenialAfterACode(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		const email = "allowed-first@example.org"
		b, f := e.consentPage(email)
		req, sess := e.decision(email, f) // the Deny's reads
		f.Set("decision", "allow")
		if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("code") == "" {
			t.Fatalf("allow: %d %v", b.last.StatusCode, cb)
		}
		if err := e.svc.DenyConsent(context.Background(), authd.Client{}, sess.UserID, req); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("a Deny after the code: %v; want ENotFound", err)
		}
		if u := e.userByEmail(email); e.denied(u) {
			t.Errorf("the Allow that got its code was logged as denied too: %v", e.events(u))
		}
	})
}

// TestConsentDecisionsAtOnce: Allow and Deny of one page sent at the same
// moment: exactly one wins, and the account shows that one only — a code
// and the consent, or the denial and no consent (a consent saved by an
// Allow whose code a Deny then beat would let the client in next time
// without asking).
func TestConsentDecisionsAtOnce(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for i := range 6 {
			email := fmt.Sprintf("both-%d@example.org", i)
			_, f := e.consentPage(email)
			req, sess := e.decision(email, f)
			var allowed, denied error
			var wg sync.WaitGroup
			wg.Go(func() { _, _, allowed = e.svc.AllowConsent(ctx, authd.Client{}, req.ID, sess) })
			wg.Go(func() { denied = e.svc.DenyConsent(ctx, authd.Client{}, sess.UserID, req) })
			wg.Wait()
			_, consentErr := e.store.Consent(ctx, sess.UserID, "third")
			consented, loggedDenial := consentErr == nil, e.denied(e.userByEmail(email))
			switch {
			case allowed == nil && authd.ErrorCode(denied) == authd.ENotFound && consented && !loggedDenial:
			case denied == nil && authd.ErrorCode(allowed) == authd.ENotFound && !consented && loggedDenial:
			default:
				t.Errorf("round %d: allow %v, deny %v, consent kept %v (%v), denial logged %v; want one decision, only its trace",
					i, allowed, denied, consented, consentErr, loggedDenial)
			}
		}
	})
}

// TestDecisionsForARemovedRedirectURI: a consent page whose client's
// redirect URI an administrator removed while it was shown gets neither
// decision through, even past the page's own read of the request: Allow
// saves no consent and makes no code, Deny sends no access_denied there.
func TestDecisionsForARemovedRedirectURI(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		const email = "moved-page@example.org"
		_, f := e.consentPage(email)
		req, sess := e.decision(email, f) // both decisions' reads, before the change
		ctx := context.Background()
		if _, err := e.svc.UpdateClient(ctx, authd.Client{}, req.ClientID,
			authd.ClientChange{RedirectURIs: []string{"https://rp.example.org/elsewhere"}}); err != nil {
			t.Fatal(err)
		}
		// The pages' own read of the request finds it gone: no page is shown
		// for a request that cannot finish.
		if _, _, err := e.svc.AuthRequest(ctx, req.ID); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("the pages' read of a request for the removed URI: %v; want ENotFound", err)
		}
		if err := e.svc.DenyConsent(ctx, authd.Client{}, sess.UserID, req); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("a Deny for the removed URI: %v; want ENotFound", err)
		}
		if code, _, err := e.svc.AllowConsent(ctx, authd.Client{}, req.ID, sess); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("an Allow for the removed URI: %q, %v; want ENotFound", code, err)
		}
		if c, err := e.store.Consent(ctx, sess.UserID, req.ClientID); authd.ErrorCode(err) != authd.ENotFound {
			t.Errorf("a consent was kept: %v %v", c, err)
		}
		if u := e.userByEmail(email); e.denied(u) {
			t.Errorf("a denial was logged for a request that could not be answered: %v", e.events(u))
		}
	})
}

// TestDeniedConsentDuringAnOutage: a denial that cannot be logged is an
// outage (503, Retry-After), not access_denied sent to the client.
func TestDeniedConsentDuringAnOutage(t *testing.T) {
	t.Parallel()
	s := &logOutageStore{Store: openSQLite(t)}
	e := newEnv(t, s)
	b, f := e.consentPage("down@example.org")
	s.down.Store(true)
	b.post(oidc.ConsentPath, f)
	if b.last.StatusCode != http.StatusServiceUnavailable || b.last.Header.Get("Retry-After") == "" {
		t.Errorf("a denial that could not be logged: %d %q; want 503 with Retry-After", b.last.StatusCode, b.last.Header.Get("Location"))
	}
}

// TestConsentIsTheSignedInUsersOwn: a consent page shown to alice, whose
// Allow is sent after the same browser signed in as bob in another tab,
// grants nothing: bob never saw it. The form is bound to the session it
// was shown for, and the decision gets the expired-form page — no consent
// of bob's, no code.
func TestConsentIsTheSignedInUsersOwn(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("alice@example.org")
		bob := e.user("bob@example.org")
		third, secret := e.client("third", authd.ClientConfidential, false)
		app, appSecret := e.client("app", authd.ClientConfidential, true)
		rt, ra := e.rp(third, secret), e.rp(app, appSecret)

		b := e.browser()
		b.get(rt.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))).signIn("alice@example.org", goodPassword)
		if !strings.Contains(b.body, `name="decision"`) || !strings.Contains(b.body, "alice@example.org") {
			t.Fatalf("no consent page for alice: %d %s", b.last.StatusCode, b.body)
		}
		consentForm := b.form()

		// Another tab: bob signs in to a first-party app (no consent page).
		e.clock.Advance(time.Second)
		b.get(ra.cfg.AuthCodeURL("x", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("prompt", "login"))).signIn("bob@example.org", goodPassword)
		if b.callback() == nil {
			t.Fatalf("bob's sign-in to app: %d", b.last.StatusCode)
		}

		consentForm.Set("decision", "allow")
		b.post(oidc.ConsentPath, consentForm)
		if b.last.StatusCode != http.StatusForbidden || b.callback() != nil {
			t.Errorf("alice's Allow sent as bob: %d to %q; want the expired-form page (403), no redirect",
				b.last.StatusCode, b.last.Header.Get("Location"))
		}
		if need, err := e.svc.NeedsConsent(context.Background(), third, bob.ID, []string{authd.ScopeOpenID}); err != nil || !need {
			t.Errorf("bob never saw third's consent page, yet a consent of his is recorded (need %v, %v)", need, err)
		}
	})
}

// TestConsentCoversOnlyItsScopes: a consent covers the scopes the user
// granted, not more: a request for a scope beyond them shows the consent
// page again, and allowing it adds the scope to those granted before (a
// later request for any of them, old or new, asks nothing).
func TestConsentCoversOnlyItsScopes(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("scopes@example.org")
		c, cs := e.client("third", authd.ClientConfidential, false)
		b := e.browser()
		// consented reports whether the browser's request for scopes got its
		// code with no consent page; allow answers the page when one shows.
		consented := func(allow bool, scopes ...string) bool {
			t.Helper()
			r := e.rp(c, cs, scopes...)
			b.get(r.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if b.callback() == nil && strings.Contains(b.body, `name="password"`) {
				b.signIn("scopes@example.org", goodPassword)
			}
			if cb := b.callback(); cb != nil && cb.Get("code") != "" {
				return true
			}
			if !strings.Contains(b.body, `name="decision"`) {
				t.Fatalf("scopes %v: neither a code nor the consent page: %d %s", scopes, b.last.StatusCode, b.body)
			}
			if allow {
				f := b.form()
				f.Set("decision", "allow")
				if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("code") == "" {
					t.Fatalf("scopes %v: allow gave %d %v, want a code", scopes, b.last.StatusCode, cb)
				}
			}
			return false
		}
		if consented(true, "email") {
			t.Fatal("a first request of a third-party client asked no consent")
		}
		if !consented(false, "email") {
			t.Error("a request for the scopes consented to asked again")
		}
		if consented(true, authd.ScopeOfflineAccess) {
			t.Error("a request for offline_access, never granted, asked no consent: a consent covered a scope it lacks")
		}
		for _, scopes := range [][]string{{"email"}, {authd.ScopeOfflineAccess}, {"email", authd.ScopeOfflineAccess}} {
			if !consented(false, scopes...) {
				t.Errorf("a request for %v after both consents asked again: the second consent dropped the first's scopes", scopes)
			}
		}
		consent, err := e.store.Consent(context.Background(), e.userByEmail("scopes@example.org").ID, "third")
		if err != nil || !slices.Equal(consent.Scopes, []string{"openid", "email", "offline_access"}) {
			t.Errorf("the consent kept: %+v, %v; want openid email offline_access", consent, err)
		}
	})
}

// TestConsentRevocationEndsOnlyItsUsersSessions: a user who withdraws their
// consent to a client ends the sessions the client holds for them, and
// only those: another user's sessions of the same client go on.
func TestConsentRevocationEndsOnlyItsUsersSessions(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		c, cs := e.client("third", authd.ClientConfidential, false)
		r := e.rp(c, cs, authd.ScopeOfflineAccess)
		tokens := map[string]*oauth2.Token{}
		for _, email := range []string{"leaver@example.org", "stayer@example.org"} {
			e.user(email)
			verifier := oauth2.GenerateVerifier()
			code, status := signInCode(e.browser(), r, email, verifier)
			if code == "" {
				t.Fatalf("%s: no code (%d)", email, status)
			}
			tok, err := r.cfg.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			tokens[email] = tok
		}
		_, claims := e.login("leaver@example.org")
		if err := e.svc.RevokeConsent(context.Background(), authd.Client{}, claims, "third"); err != nil {
			t.Fatal(err)
		}
		if got := e.me(tokens["leaver@example.org"].AccessToken); got != http.StatusUnauthorized {
			t.Errorf("the client's token of the user who withdrew consent: %d, want 401", got)
		}
		if got := e.me(tokens["stayer@example.org"].AccessToken); got != http.StatusOK {
			t.Errorf("another user's token of the same client: %d, want it live", got)
		}
		if !r.refreshes(tokens["stayer@example.org"].RefreshToken) {
			t.Error("another user's refresh token of the same client is refused, want it live")
		}
	})
}

// TestOnlyAllowIssuesACode: the consent form gives a code only for
// decision=allow, spelled exactly; a form without a decision, or with any
// other value (an empty one, "Allow", "yes"), is a denial: access_denied
// back to the client with the state, and no code.
func TestOnlyAllowIssuesACode(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		for i, decision := range []string{"", "Allow", "yes", "allow "} {
			b, f := e.consentPage(fmt.Sprintf("decision%d@example.org", i))
			f.Set("decision", decision)
			if decision == "" {
				f.Del("decision")
			}
			if cb := b.post(oidc.ConsentPath, f).callback(); cb == nil || cb.Get("error") != "access_denied" ||
				cb.Get("code") != "" || cb.Get("state") != "s" {
				t.Errorf("decision %q: %d %v; want error=access_denied with the state and no code", decision, b.last.StatusCode, cb)
			}
		}
	})
}
