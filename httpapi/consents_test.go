package httpapi_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd"
)

// TestOwnConsents: a user lists the clients they have let in, each under
// the name the administrator registered (what the user recognises, not its
// id), with the scopes and when, and withdraws one (204; again, 404). Another
// user's consent to the same client is neither listed nor withdrawn.
func TestOwnConsents(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		ctx := context.Background()
		want(t, "register the client", e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "wiki",
			"name": "Team Wiki", "type": "public", "redirect_uris": []string{"https://wiki.example.org/cb"}}), 201, "")
		granted := e.clock.Now().Add(-time.Hour)
		for _, email := range []string{"owner@example.org", "other@example.org"} {
			e.registerVerified(email, goodPassword)
			if err := e.store.SaveConsent(ctx, &authd.Consent{ID: authd.NewID(), UserID: e.user(email).ID, ClientID: "wiki",
				Scopes: []string{authd.ScopeOpenID, authd.ScopeEmail}, GrantedAt: granted}); err != nil {
				t.Fatal(err)
			}
		}
		access, _ := e.login("owner@example.org", goodPassword)

		r := e.do("GET", "/v1/users/me/consents", nil, bearer(access)...)
		want(t, "consents", r, 200, "")
		items, _ := r.body["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("consents: %s; want the one client", r.raw)
		}
		c := items[0].(map[string]any)
		if c["client_id"] != "wiki" || c["client_name"] != "Team Wiki" || c["granted_at"] != granted.Format(time.RFC3339) {
			t.Errorf("consent %v; want client wiki named Team Wiki, granted at %s", c, granted.Format(time.RFC3339))
		}
		if scopes, _ := c["scopes"].([]any); !slices.Equal(scopes, []any{"openid", "email"}) {
			t.Errorf("consent scopes %v; want [openid email]", c["scopes"])
		}

		want(t, "withdraw", e.do("DELETE", "/v1/users/me/consents/wiki", nil, bearer(access)...), 204, "")
		if n := e.eventCount("owner@example.org", "oidc_consent_revoked/success"); n != 1 {
			t.Errorf("%d oidc_consent_revoked rows after the withdrawal; want 1", n)
		}
		want(t, "withdraw again", e.do("DELETE", "/v1/users/me/consents/wiki", nil, bearer(access)...), 404, "not_found")
		if r := e.do("GET", "/v1/users/me/consents", nil, bearer(access)...); r.status != 200 || r.raw != `{"items":[]}`+"\n" {
			t.Errorf("consents after the withdrawal: %d %s; want none", r.status, r.raw)
		}
		if _, err := e.store.Consent(ctx, e.user("other@example.org").ID, "wiki"); err != nil {
			t.Errorf("the other user's consent after the withdrawal: %v; want it kept", err)
		}
	})
}
