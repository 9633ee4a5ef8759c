package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func newClient(id string, typ authd.ClientType) *authd.OAuthClient {
	c := &authd.OAuthClient{ID: id, Name: "App " + id, Type: typ,
		RedirectURIs:           []string{"https://app.example.org/callback", "http://127.0.0.1:9000/cb"},
		PostLogoutRedirectURIs: []string{}, CreatedAt: Epoch, UpdatedAt: Epoch}
	if typ == authd.ClientConfidential {
		c.SecretDigest = "digest-of-" + id
	}
	return c
}

func mustCreateClient(t *testing.T, s authd.Queries, c *authd.OAuthClient) {
	t.Helper()
	if err := s.CreateClient(context.Background(), c); err != nil {
		t.Fatalf("CreateClient(%s): %v", c.ID, err)
	}
}

func testClients(t *testing.T, s authd.Store) {
	ctx := context.Background()
	if got, err := s.OAuthClients(ctx); err != nil || len(got) != 0 {
		t.Fatalf("OAuthClients of an empty store = %v, %v; want none", got, err)
	}
	conf := newClient("conf", authd.ClientConfidential)
	conf.PostLogoutRedirectURIs = []string{"https://app.example.org/bye"}
	conf.FirstParty = true
	mustCreateClient(t, s, conf)
	pub := newClient("pub", authd.ClientPublic)
	pub.CreatedAt = Epoch.Add(time.Second)
	mustCreateClient(t, s, pub)
	wantCode(t, "CreateClient with a taken id", s.CreateClient(ctx, newClient("conf", authd.ClientPublic)), authd.EConflict)
	bad := newClient("bad", authd.ClientPublic)
	bad.SecretDigest = "a public client has no secret"
	wantCode(t, "CreateClient of a public client with a secret", s.CreateClient(ctx, bad), authd.EInvalid)

	got, err := s.OAuthClients(ctx)
	if err != nil {
		t.Fatalf("OAuthClients: %v", err)
	}
	if diff := cmp.Diff([]*authd.OAuthClient{conf, pub}, got); diff != "" {
		t.Errorf("OAuthClients, oldest first (-want +got):\n%s", diff)
	}
	one, err := s.OAuthClient(ctx, "pub")
	if err != nil {
		t.Fatalf("OAuthClient: %v", err)
	}
	if diff := cmp.Diff(pub, one); diff != "" {
		t.Errorf("public client round trip (-want +got):\n%s", diff)
	}
	_, err = s.OAuthClient(ctx, "nobody")
	wantCode(t, "OAuthClient of an unknown id", err, authd.ENotFound)
	if err := s.InTx(ctx, func(tx authd.Queries) error {
		shared, err := tx.SharedClient(ctx, "pub")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(pub, shared); diff != "" {
			t.Errorf("SharedClient (-want +got):\n%s", diff)
		}
		_, err = tx.SharedClient(ctx, "nobody")
		wantCode(t, "SharedClient of an unknown id", err, authd.ENotFound)
		return nil
	}); err != nil {
		t.Fatalf("SharedClient: %v", err)
	}

	conf.SecretDigest, conf.Name, conf.UpdatedAt = "rotated", "Renamed", Epoch.Add(time.Hour)
	conf.RequirePKCE = true
	conf.RedirectURIs = []string{"https://new.example.org/cb"}
	err = s.InTx(ctx, func(tx authd.Queries) error {
		if _, err := tx.OAuthClient(ctx, conf.ID); err != nil { // locks it
			return err
		}
		return tx.UpdateClient(ctx, conf)
	})
	if err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	if one, _ := s.OAuthClient(ctx, conf.ID); !cmp.Equal(conf, one) {
		t.Errorf("after UpdateClient: %s", cmp.Diff(conf, one))
	}
	wantCode(t, "UpdateClient of an unknown client", s.UpdateClient(ctx, newClient("nobody", authd.ClientPublic)), authd.ENotFound)

	if err := s.DeleteClient(ctx, "pub"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	wantCode(t, "DeleteClient again", s.DeleteClient(ctx, "pub"), authd.ENotFound)
	if got, _ := s.OAuthClients(ctx); len(got) != 1 {
		t.Errorf("OAuthClients after a delete = %d, want 1", len(got))
	}
}

func testConsents(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "cora@example.org")
	mustCreateClient(t, s, newClient("app", authd.ClientPublic))
	_, err := s.Consent(ctx, u.ID, "app")
	wantCode(t, "Consent before any", err, authd.ENotFound)

	c := &authd.Consent{ID: authd.NewID(), UserID: u.ID, ClientID: "app", Scopes: []string{"openid"}, GrantedAt: Epoch}
	if err := s.SaveConsent(ctx, c); err != nil {
		t.Fatalf("SaveConsent: %v", err)
	}
	// A second grant replaces the first: one row per user and client.
	again := &authd.Consent{ID: authd.NewID(), UserID: u.ID, ClientID: "app", Scopes: []string{"openid", "email"},
		GrantedAt: Epoch.Add(time.Minute)}
	if err := s.SaveConsent(ctx, again); err != nil {
		t.Fatalf("SaveConsent again: %v", err)
	}
	got, err := s.Consent(ctx, u.ID, "app")
	if err != nil {
		t.Fatalf("Consent: %v", err)
	}
	want := *again
	want.ID = c.ID
	if list, err := s.Consents(ctx, u.ID); err != nil || len(list) != 1 || !cmp.Equal(&want, list[0]) {
		t.Errorf("Consents = %v, %v; want the one consent", list, err)
	}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("consent after a second grant (-want +got):\n%s", diff)
	}
	ghost := *c
	ghost.ID, ghost.ClientID = authd.NewID(), "nobody"
	wantCode(t, "SaveConsent for an unknown client", s.SaveConsent(ctx, &ghost), authd.ENotFound)

	if err := s.DeleteConsent(ctx, u.ID, "app"); err != nil {
		t.Fatalf("DeleteConsent: %v", err)
	}
	wantCode(t, "DeleteConsent again", s.DeleteConsent(ctx, u.ID, "app"), authd.ENotFound)

	// Deleting the client takes its consents along.
	if err := s.SaveConsent(ctx, c); err != nil {
		t.Fatalf("SaveConsent: %v", err)
	}
	if err := s.DeleteClient(ctx, "app"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	_, err = s.Consent(ctx, u.ID, "app")
	wantCode(t, "Consent of a deleted client", err, authd.ENotFound)
}

func testAuthRequests(t *testing.T, s authd.Store) {
	ctx := context.Background()
	mustCreateClient(t, s, newClient("app", authd.ClientPublic))
	full := &authd.AuthRequest{ID: authd.NewID(), ClientID: "app", RedirectURI: "https://app.example.org/callback",
		Scopes: []string{"openid", "email", "offline_access"}, State: "st", Nonce: "n-0S6_WzA2Mj",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256",
		MinAuthTime: Epoch, ForceConsent: true, BrowserBinding: "X3n2JYp0Ue5iQm8uYVzE7b1cKk4sHqT9rWdLfA6oGjM",
		HintSubject: authd.NewID(), CreatedAt: Epoch, ExpiresAt: Epoch.Add(10 * time.Minute)}
	bare := &authd.AuthRequest{ID: authd.NewID(), ClientID: "app", RedirectURI: "https://app.example.org/callback",
		Scopes: []string{"openid"}, CreatedAt: Epoch, ExpiresAt: Epoch.Add(10 * time.Minute)}
	for _, r := range []*authd.AuthRequest{full, bare} {
		if err := s.CreateAuthRequest(ctx, r); err != nil {
			t.Fatalf("CreateAuthRequest: %v", err)
		}
		got, err := s.AuthRequest(ctx, r.ID)
		if err != nil {
			t.Fatalf("AuthRequest: %v", err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("auth request round trip (-want +got):\n%s", diff)
		}
	}
	ghost := *bare
	ghost.ID, ghost.ClientID = authd.NewID(), "nobody"
	wantCode(t, "CreateAuthRequest for an unknown client", s.CreateAuthRequest(ctx, &ghost), authd.ENotFound)
	if err := s.DeleteAuthRequest(ctx, full.ID); err != nil {
		t.Fatalf("DeleteAuthRequest: %v", err)
	}
	wantCode(t, "DeleteAuthRequest again", s.DeleteAuthRequest(ctx, full.ID), authd.ENotFound)
	_, err := s.AuthRequest(ctx, full.ID)
	wantCode(t, "AuthRequest after delete", err, authd.ENotFound)
}

func newAuthCode(u *authd.User, sess *authd.Session, client, digest string) *authd.AuthCode {
	return &authd.AuthCode{ID: authd.NewID(), Digest: digest, ClientID: client, UserID: u.ID, SessionID: sess.ID,
		RedirectURI: "https://app.example.org/callback", Scopes: []string{"openid"}, AuthTime: Epoch,
		AMR: []string{authd.AMRPassword}, CreatedAt: Epoch, ExpiresAt: Epoch.Add(time.Minute)}
}

func testAuthCodes(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "cody@example.org")
	browser := newSession(u)
	issued := newSession(u)
	for _, sess := range []*authd.Session{browser, issued} {
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
	}
	// As the service makes them (the purges below keep them): a browser
	// sign-in's session, and one a code started, with its refresh token.
	refresh := newToken(u, issued, authd.TokenRefresh, "issued-refresh")
	refresh.ExpiresAt = Epoch.Add(168 * time.Hour)
	if err := errors.Join(s.SetBrowserDigest(ctx, browser.ID, "browser-digest"), s.CreateToken(ctx, refresh)); err != nil {
		t.Fatal(err)
	}
	mustCreateClient(t, s, newClient("app", authd.ClientConfidential))

	c := newAuthCode(u, browser, "app", "code-digest")
	c.CodeChallenge, c.CodeChallengeMethod, c.Nonce = "challenge", "S256", "nonce"
	c.Scopes, c.AMR = []string{"openid", "email"}, []string{"pwd", "otp", "mfa"}
	if err := s.CreateAuthCode(ctx, c); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	wantCode(t, "CreateAuthCode with a taken digest", s.CreateAuthCode(ctx, newAuthCode(u, browser, "app", "code-digest")),
		authd.EConflict)
	wantCode(t, "CreateAuthCode for an unknown client",
		s.CreateAuthCode(ctx, newAuthCode(u, browser, "nobody", "other")), authd.ENotFound)
	got, err := s.AuthCode(ctx, "code-digest")
	if err != nil {
		t.Fatalf("AuthCode: %v", err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("code round trip (-want +got):\n%s", diff)
	}
	_, err = s.AuthCode(ctx, "no such digest")
	wantCode(t, "AuthCode of an unknown digest", err, authd.ENotFound)

	err = s.InTx(ctx, func(tx authd.Queries) error {
		c, err := tx.AuthCode(ctx, "code-digest") // locks it
		if err != nil {
			return err
		}
		c.UsedAt, c.IssuedSessionID = Epoch.Add(time.Second), issued.ID
		return tx.UpdateAuthCode(ctx, c)
	})
	if err != nil {
		t.Fatalf("UpdateAuthCode: %v", err)
	}
	got, _ = s.AuthCode(ctx, "code-digest")
	if !got.UsedAt.Equal(Epoch.Add(time.Second)) || got.IssuedSessionID != issued.ID {
		t.Errorf("after UpdateAuthCode: used_at %v, issued session %v; want %v, %v", got.UsedAt,
			got.IssuedSessionID, Epoch.Add(time.Second), issued.ID)
	}
	missing := newAuthCode(u, browser, "app", "never stored")
	wantCode(t, "UpdateAuthCode of an unknown code", s.UpdateAuthCode(ctx, missing), authd.ENotFound)

	// Retention deletes the codes and requests that expired before its cut-off.
	req := &authd.AuthRequest{ID: authd.NewID(), ClientID: "app", RedirectURI: "https://app.example.org/callback",
		Scopes: []string{"openid"}, CreatedAt: Epoch, ExpiresAt: Epoch.Add(10 * time.Minute)}
	gone := newAuthCode(u, browser, "app", "expired-code")
	if err := errors.Join(s.CreateAuthRequest(ctx, req), s.CreateAuthCode(ctx, gone)); err != nil {
		t.Fatalf("rows to purge: %v", err)
	}
	res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: Epoch.Add(-time.Hour), ExpiredBefore: Epoch.Add(5 * time.Minute),
		Batch: 10, DryRun: true})
	if err != nil || res.AuthCodes != 2 || res.AuthRequests != 0 {
		t.Errorf("Purge dry run: %+v, %v; want 2 codes, no request", res, err)
	}
	res, err = s.Purge(ctx, authd.PurgeRequest{LogsBefore: Epoch.Add(-time.Hour), ExpiredBefore: Epoch.Add(time.Hour), Batch: 10})
	if err != nil || res.AuthCodes != 2 || res.AuthRequests != 1 {
		t.Errorf("Purge: %+v, %v; want 2 codes and 1 request", res, err)
	}
	_, err = s.AuthRequest(ctx, req.ID)
	wantCode(t, "AuthRequest after purge", err, authd.ENotFound)
	c = newAuthCode(u, browser, "app", "code-digest")
	if err := s.CreateAuthCode(ctx, c); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}

	// The export reads the user's consents and codes; erasure takes them.
	consent := &authd.Consent{ID: authd.NewID(), UserID: u.ID, ClientID: "app", Scopes: []string{"openid"}, GrantedAt: Epoch}
	if err := s.SaveConsent(ctx, consent); err != nil {
		t.Fatalf("SaveConsent: %v", err)
	}
	var exported []string
	err = s.UserData(ctx, u.ID, authd.UserRows{
		Consents:  func(c *authd.Consent) error { exported = append(exported, "consent "+c.ID.String()); return nil },
		AuthCodes: func(c *authd.AuthCode) error { exported = append(exported, "code "+c.ID.String()); return nil },
	})
	if want := []string{"consent " + consent.ID.String(), "code " + c.ID.String()}; err != nil || !cmp.Equal(want, exported) {
		t.Errorf("UserData consents and codes = %v, %v; want %v", exported, err, want)
	}
	if err := s.InTx(ctx, func(tx authd.Queries) error { return tx.ErasePersonalData(ctx, u.ID) }); err != nil {
		t.Fatalf("ErasePersonalData: %v", err)
	}
	_, err = s.AuthCode(ctx, "code-digest")
	wantCode(t, "AuthCode after erasure", err, authd.ENotFound)
	_, err = s.Consent(ctx, u.ID, "app")
	wantCode(t, "Consent after erasure", err, authd.ENotFound)
}

func testClientAndBrowserSessions(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "bess@example.org")
	mustCreateClient(t, s, newClient("app", authd.ClientPublic))
	browser, forApp, forApp2, other := newSession(u), newSession(u), newSession(u), newSession(u)
	forApp.ClientID, forApp2.ClientID = "app", "app"
	forApp.Scopes = []string{"openid", "email"}
	forApp2.RevokedAt = Epoch // already ended: not revoked again
	for _, sess := range []*authd.Session{browser, forApp, forApp2, other} {
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
	}
	got, err := s.Session(ctx, forApp.ID)
	if err != nil || !cmp.Equal(forApp, got) {
		t.Errorf("session with a client round trip: %v\n%s", err, cmp.Diff(forApp, got))
	}

	_, err = s.BrowserSession(ctx, "cookie-digest")
	wantCode(t, "BrowserSession before any", err, authd.ENotFound)
	if err := s.SetBrowserDigest(ctx, browser.ID, "cookie-digest"); err != nil {
		t.Fatalf("SetBrowserDigest: %v", err)
	}
	wantCode(t, "SetBrowserDigest with a taken digest", s.SetBrowserDigest(ctx, other.ID, "cookie-digest"), authd.EConflict)
	wantCode(t, "SetBrowserDigest of an unknown session", s.SetBrowserDigest(ctx, authd.NewID(), "other"), authd.ENotFound)
	err = s.InTx(ctx, func(tx authd.Queries) error {
		got, err = tx.BrowserSession(ctx, "cookie-digest") // locks it
		return err
	})
	browser.BrowserDigest = "cookie-digest"
	if err != nil || !cmp.Equal(browser, got) {
		t.Errorf("BrowserSession: %v\n%s", err, cmp.Diff(browser, got))
	}

	var ids []uuid.UUID
	err = s.InTx(ctx, func(tx authd.Queries) (err error) {
		ids, err = tx.RevokeClientSessions(ctx, "app", authd.NewID(), Epoch.Add(time.Minute))
		if err != nil || len(ids) != 0 {
			t.Errorf("RevokeClientSessions for another user = %v, %v; want none", ids, err)
		}
		ids, err = tx.RevokeClientSessions(ctx, "app", u.ID, Epoch.Add(time.Minute))
		return err
	})
	if err != nil || !cmp.Equal(ids, []uuid.UUID{forApp.ID}) {
		t.Errorf("RevokeClientSessions = %v, %v; want only the client's live session %v", ids, err, forApp.ID)
	}
	for _, sess := range []*authd.Session{browser, other} {
		if got, _ := s.Session(ctx, sess.ID); !got.RevokedAt.IsZero() {
			t.Errorf("RevokeClientSessions ended session %v of no client", sess.ID)
		}
	}
	if got, _ := s.Session(ctx, forApp.ID); !got.RevokedAt.Equal(Epoch.Add(time.Minute)) {
		t.Errorf("client session revoked at %v, want %v", got.RevokedAt, Epoch.Add(time.Minute))
	}
}
