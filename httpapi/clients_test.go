package httpapi_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

// adminActions returns the actions of the admin_action rows, oldest first.
func adminActions(t *testing.T, s authd.Store) []string {
	t.Helper()
	logs, err := s.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(logs) - 1; i >= 0; i-- {
		if a, _ := logs[i].AdditionalContext["action"].(string); strings.Contains(a, "client") {
			out = append(out, a+" "+logs[i].AdditionalContext["client_id"].(string))
		}
	}
	return out
}

func TestAdminClients(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		ctx := context.Background()
		want(t, "no token", e.send(e.adminSrv.URL, "GET", "/v1/admin/clients", nil), 401, "invalid_token")
		want(t, "public listener", e.do("GET", "/v1/admin/clients", nil, "Authorization", "Bearer "+adminToken), 404, "not_found")

		r := e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "grafana", "name": "Grafana",
			"type": "confidential", "redirect_uris": []string{"https://grafana.example.org/login/generic_oauth"},
			"post_logout_redirect_uris": []string{"https://grafana.example.org/"}, "first_party": true})
		want(t, "create confidential", r, 201, "")
		secret := r.str("client_secret")
		if len(secret) < 43 || r.header.Get("Location") != "/v1/admin/clients/grafana" || r.body["first_party"] != true {
			t.Fatalf("create: %s (Location %q)", r.raw, r.header.Get("Location"))
		}
		e.clock.Advance(time.Second)
		r = e.admin("POST", "/v1/admin/clients", map[string]any{"name": "SPA", "type": "public",
			"redirect_uris": []string{"http://127.0.0.1:5173/cb", "com.example.app:/oauth"}})
		want(t, "create public", r, 201, "")
		spa := r.str("client_id")
		if spa == "" || strings.Contains(r.raw, "client_secret") {
			t.Errorf("public client: %s; want a random id and no secret", r.raw)
		}
		want(t, "taken id", e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "grafana", "name": "Again",
			"type": "public", "redirect_uris": []string{"https://x.example.org/cb"}}), 409, "conflict")

		for name, body := range map[string]map[string]any{
			"no redirect":       {"name": "A", "type": "public", "redirect_uris": []string{}},
			"wildcard":          {"name": "A", "type": "public", "redirect_uris": []string{"https://*.example.org/cb"}},
			"fragment":          {"name": "A", "type": "public", "redirect_uris": []string{"https://a.example.org/cb#x"}},
			"plain http":        {"name": "A", "type": "public", "redirect_uris": []string{"http://a.example.org/cb"}},
			"relative":          {"name": "A", "type": "public", "redirect_uris": []string{"/cb"}},
			"credentials":       {"name": "A", "type": "public", "redirect_uris": []string{"https://u:p@a.example.org/cb"}},
			"javascript":        {"name": "A", "type": "public", "redirect_uris": []string{"javascript:alert(1)"}},
			"twice":             {"name": "A", "type": "public", "redirect_uris": []string{"https://a.example.org/cb", "https://a.example.org/cb"}},
			"bad type":          {"name": "A", "type": "native", "redirect_uris": []string{"https://a.example.org/cb"}},
			"no name":           {"name": "", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}},
			"bidi override":     {"name": "App\u202egoogle", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}},
			"zero-width space":  {"name": "Grafana\u200b", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}},
			"soft hyphen":       {"name": "Gra\u00adfana", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}},
			"bad id":            {"client_id": "a b", "name": "A", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}},
			"id of dots":        {"client_id": "..", "name": "A", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}},
			"id of a dot":       {"client_id": ".", "name": "A", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}},
			"port out of range": {"name": "A", "type": "public", "redirect_uris": []string{"https://[::1]:99999/cb"}},
			"port zero":         {"name": "A", "type": "public", "redirect_uris": []string{"http://127.0.0.1:0/cb"}},
			"bad logout uri":    {"name": "A", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}, "post_logout_redirect_uris": []string{"ftp://x"}},
			"unknown field":     {"name": "A", "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}, "secret": "mine"},
			"string for array":  {"name": "A", "type": "public", "redirect_uris": "https://a.example.org/cb"},
		} {
			want(t, name, e.admin("POST", "/v1/admin/clients", body), 400, "validation_failed")
		}
		if r := e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "a b/c", "name": "A", "type": "public",
			"redirect_uris": []string{"https://a.example.org/cb"}}); !strings.Contains(r.raw, `"field":"client_id"`) {
			t.Errorf("a bad client_id: %s, want the error under the body's field name client_id", r.raw)
		}

		r = e.admin("GET", "/v1/admin/clients", nil)
		want(t, "list", r, 200, "")
		items, _ := r.body["items"].([]any)
		if len(items) != 2 || items[0].(map[string]any)["client_id"] != "grafana" || r.body["next_cursor"] != nil {
			t.Errorf("list: %s", r.raw)
		}
		if strings.Contains(r.raw, "secret") || strings.Contains(r.raw, "digest") {
			t.Errorf("the list shows a secret or its digest: %s", r.raw)
		}
		r = e.admin("GET", "/v1/admin/clients/grafana", nil)
		if r.status != 200 || r.str("name") != "Grafana" || strings.Contains(r.raw, "secret") {
			t.Errorf("show: %d %s", r.status, r.raw)
		}
		want(t, "show unknown", e.admin("GET", "/v1/admin/clients/nobody", nil), 404, "not_found")
		want(t, "show malformed", e.admin("GET", "/v1/admin/clients/%20", nil), 404, "not_found")

		// The secret authenticates the client, and only it.
		if _, err := e.svc.AuthenticateClient(ctx, authd.Client{}, "grafana", secret, "client_secret_post"); err != nil {
			t.Errorf("AuthenticateClient with the secret: %v", err)
		}
		for name, c := range map[string][2]string{"wrong secret": {"grafana", secret + "x"}, "no secret": {"grafana", ""},
			"unknown client": {"nobody", secret}, "secret for a public client": {spa, secret}} {
			if _, err := e.svc.AuthenticateClient(ctx, authd.Client{}, c[0], c[1], "client_secret_post"); authd.ErrorCode(err) != authd.EInvalidCredentials {
				t.Errorf("AuthenticateClient, %s: %v; want invalid_credentials", name, err)
			}
		}
		if _, err := e.svc.AuthenticateClient(ctx, authd.Client{}, spa, "", "client_secret_post"); err != nil {
			t.Errorf("AuthenticateClient of a public client without a secret: %v", err)
		}

		r = e.admin("POST", "/v1/admin/clients/grafana/rotate-secret", nil)
		want(t, "rotate", r, 200, "")
		fresh := r.str("client_secret")
		if fresh == "" || fresh == secret || r.str("client_id") != "grafana" {
			t.Fatalf("rotate: %s", r.raw)
		}
		if _, err := e.svc.AuthenticateClient(ctx, authd.Client{}, "grafana", secret, "client_secret_post"); err == nil {
			t.Error("the old secret still works after a rotation")
		}
		if _, err := e.svc.AuthenticateClient(ctx, authd.Client{}, "grafana", fresh, "client_secret_post"); err != nil {
			t.Errorf("the new secret: %v", err)
		}
		want(t, "rotate a public client", e.admin("POST", "/v1/admin/clients/"+spa+"/rotate-secret", nil), 400, "validation_failed")
		want(t, "rotate unknown", e.admin("POST", "/v1/admin/clients/nobody/rotate-secret", nil), 404, "not_found")

		// PKCE: always for the public client; for the confidential one once required.
		if r := e.admin("GET", "/v1/admin/clients/"+spa, nil); r.body["require_pkce"] != true {
			t.Errorf("a public client: %s; want require_pkce true", r.raw)
		}
		if r := e.admin("GET", "/v1/admin/clients/grafana", nil); r.body["require_pkce"] != false {
			t.Errorf("a confidential client as created: %s; want require_pkce false", r.raw)
		}
		r = e.admin("PATCH", "/v1/admin/clients/grafana", map[string]any{"require_pkce": true})
		want(t, "require PKCE", r, 200, "")
		if r.body["require_pkce"] != true || strings.Contains(r.raw, "secret") {
			t.Errorf("require PKCE: %s", r.raw)
		}
		if oc, err := e.svc.OAuthClient(ctx, "grafana"); err != nil || !oc.PKCERequired() {
			t.Errorf("after PATCH: %+v, %v; want PKCE required", oc, err)
		}
		for name, body := range map[string]map[string]any{"nothing": {}, "null": {"require_pkce": nil},
			"string": {"require_pkce": "yes"}, "a field that cannot change": {"require_pkce": true, "type": "public"},
			"no redirect URI": {"redirect_uris": []string{}}, "plain http": {"redirect_uris": []string{"http://example.org/cb"}},
			"a padded name": {"name": " G"}, "a bidi override": {"name": "G\u202e"}} {
			want(t, "PATCH with "+name, e.admin("PATCH", "/v1/admin/clients/grafana", body), 400, "validation_failed")
		}
		if r := e.admin("PATCH", "/v1/admin/clients/grafana", map[string]any{"redirect_uris": map[string]any{"a": 1}}); r.status != 400 ||
			!strings.Contains(r.raw, `"field":"redirect_uris","message":"must be an array"`) {
			t.Errorf("redirect_uris as an object: %d %s; want 400, told in JSON's words", r.status, r.raw)
		}
		if r := e.admin("PATCH", "/v1/admin/clients/grafana", map[string]any{"redirect_uris": []any{1}}); r.status != 400 ||
			!strings.Contains(r.raw, `"field":"redirect_uris","message":"must be an array of strings"`) {
			t.Errorf("redirect_uris of a number: %d %s; want 400, the element's type told", r.status, r.raw)
		}
		// What may change in place, the rest kept: the name, the URIs (lists replaced whole, [] empties
		// the post-logout ones), first-party.
		r = e.admin("PATCH", "/v1/admin/clients/grafana", map[string]any{"name": "Grafana 11",
			"redirect_uris":             []string{"https://grafana.example.org/cb", "https://grafana.example.org/cb2"},
			"post_logout_redirect_uris": []string{}, "first_party": false, "require_pkce": true}) // PKCE as it was
		want(t, "rename and move", r, 200, "")
		if oc, err := e.svc.OAuthClient(ctx, "grafana"); err != nil || oc.Name != "Grafana 11" || oc.FirstParty ||
			!slices.Equal(oc.RedirectURIs, []string{"https://grafana.example.org/cb", "https://grafana.example.org/cb2"}) ||
			len(oc.PostLogoutRedirectURIs) != 0 || !oc.PKCERequired() || oc.Type != authd.ClientConfidential {
			t.Errorf("after PATCH: %+v, %v; want the new name and URIs, PKCE still required", oc, err)
		}
		if _, err := e.svc.AuthenticateClient(ctx, authd.Client{}, "grafana", fresh, "client_secret_post"); err != nil {
			t.Errorf("the secret after PATCH: %v; want it kept", err)
		}
		if logs, err := e.store.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: 1}); err != nil ||
			len(logs) != 1 || logs[0].AdditionalContext["action"] != "update_client" ||
			fmt.Sprint(logs[0].AdditionalContext["changed"]) != "[name redirect_uris post_logout_redirect_uris first_party]" ||
			logs[0].AdditionalContext["name"] != "Grafana 11" {
			t.Errorf("the update's admin_action row: %+v, %v; want the fields changed and their new values", logs, err)
		}
		want(t, "PATCH a public client off PKCE", e.admin("PATCH", "/v1/admin/clients/"+spa,
			map[string]any{"require_pkce": false}), 400, "validation_failed")
		want(t, "PATCH unknown", e.admin("PATCH", "/v1/admin/clients/nobody", map[string]any{"require_pkce": true}), 404, "not_found")
		if r := e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "strict", "name": "Strict",
			"type": "confidential", "redirect_uris": []string{"https://strict.example.org/cb"}, "require_pkce": true}); r.status != 201 ||
			r.body["require_pkce"] != true {
			t.Errorf("create with require_pkce: %d %s", r.status, r.raw)
		}

		want(t, "delete", e.admin("DELETE", "/v1/admin/clients/grafana", nil), 204, "")
		want(t, "delete again", e.admin("DELETE", "/v1/admin/clients/grafana", nil), 404, "not_found")
		if _, err := e.svc.AuthenticateClient(ctx, authd.Client{}, "grafana", fresh, "client_secret_post"); err == nil {
			t.Error("a deleted client still authenticates")
		}

		got := strings.Join(adminActions(t, e.store), ", ")
		if want := "create_client grafana, create_client " + spa + ", rotate_client_secret grafana, update_client grafana, " +
			"update_client grafana, create_client strict, delete_client grafana"; got != want {
			t.Errorf("admin_action rows: %s; want %s", got, want)
		}
		if logs := e.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, fresh) {
			t.Error("a client secret reached the log")
		}
	})
}

// TestClientNamesScriptsNeed: the format characters names need are
// accepted where they join something (invisible ones and bidirectional
// controls are not: TestAdminClients): ZWNJ (Persian), ZWJ (emoji
// sequences), the tags of a subdivision's flag; elsewhere they are refused.
func TestClientNamesScriptsNeed(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		for i, name := range []string{"\u0645\u06cc\u200c\u0634\u0648\u062f", "Team \U0001F469\u200D\U0001F4BB",
			"\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F Cymru",
			"\u2764\ufe0f\u200d\U0001F525 Club", "\u0915\u094d\u200d\u0937 Labs"} {
			want(t, "the name "+name, e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": fmt.Sprintf("named-%d", i),
				"name": name, "type": "public", "redirect_uris": []string{"https://a.example.org/cb"}}), 201, "")
		}
		// Where they join nothing they only hide: these would all read as "Grafana".
		for _, name := range []string{"Grafana\u200d", "Gra\u200cfana", "\u200dGrafana", "Grafana\U000E0041",
			"Grafana\U0001F3F4\U000E0067", "Grafana\U000E007F", "Grafana\u3164", "Grafana\u034f", "Grafana\ufe0f",
			"Grafana\u2800", "Gra\u3000fana", "App^\u200d^", "Caf\u00e9\ufe0f", "\u0413\u0440\u0430\u200d\u0444\u0430\u043d\u0430"} {
			want(t, fmt.Sprintf("the name %q", name), e.admin("POST", "/v1/admin/clients", map[string]any{"name": name,
				"type": "public", "redirect_uris": []string{"https://a.example.org/cb"}}), 400, "validation_failed")
		}
	})
}

// TestNativeRedirectKeepsCase: an iOS bundle id as a private-use scheme
// registers with its case, as the app will send it (matched exactly).
func TestNativeRedirectKeepsCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	r := e.admin("POST", "/v1/admin/clients", map[string]any{"name": "iOS app", "type": "public",
		"redirect_uris": []string{"com.MyCompany.App:/oauth2redirect"}})
	want(t, "a mixed-case private-use scheme", r, 201, "")
	if !strings.Contains(r.raw, `"com.MyCompany.App:/oauth2redirect"`) {
		t.Errorf("stored as %s, want the URI as given", r.raw)
	}
}

// TestPublicClientRecordedAsRequiringPKCE: a public client requires PKCE
// whatever the request said, and its row and its create_client
// admin_action row say so: an auditor reading the row (or a query of the
// table) must not see require_pkce false for a client whose requests
// without a challenge are refused.
func TestPublicClientRecordedAsRequiringPKCE(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	ctx := context.Background()
	want(t, "create public", e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "spa", "name": "SPA",
		"type": "public", "redirect_uris": []string{"https://spa.example.org/cb"}, "require_pkce": false}), 201, "")
	if oc, err := e.store.OAuthClient(ctx, "spa"); err != nil || !oc.RequirePKCE {
		t.Errorf("stored public client: %+v, %v; want require_pkce true in its row", oc, err)
	}
	logs, err := e.store.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: 1})
	if err != nil || len(logs) != 1 || logs[0].AdditionalContext["action"] != "create_client" ||
		logs[0].AdditionalContext["require_pkce"] != true {
		t.Errorf("the create_client row: %+v, %v; want require_pkce true, as enforced", logs, err)
	}
}

// TestLegacyPublicClientRequiresPKCE: a public client whose row predates
// require_pkce (migration 00017 added the column false for every client)
// still requires PKCE: the admin API shows it required, a PATCH that sets
// require_pkce true changes nothing (its admin_action row does not list it
// as changed), and one that sets it false is refused.
func TestLegacyPublicClientRequiresPKCE(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	ctx := context.Background()
	now := e.clock.Now()
	if err := e.store.CreateClient(ctx, &authd.OAuthClient{ID: "legacy", Name: "Legacy", Type: authd.ClientPublic,
		RedirectURIs: []string{"https://legacy.example.org/cb"}, PostLogoutRedirectURIs: []string{},
		CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if r := e.admin("GET", "/v1/admin/clients/legacy", nil); r.status != 200 || r.body["require_pkce"] != true {
		t.Errorf("a legacy public client: %d %s; want require_pkce true", r.status, r.raw)
	}
	want(t, "PATCH require_pkce true", e.admin("PATCH", "/v1/admin/clients/legacy",
		map[string]any{"name": "Legacy 2", "require_pkce": true}), 200, "")
	logs, err := e.store.SecurityLogs(ctx, authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: 1})
	if err != nil || len(logs) != 1 || logs[0].AdditionalContext["action"] != "update_client" ||
		fmt.Sprint(logs[0].AdditionalContext["changed"]) != "[name]" {
		t.Errorf("the update's admin_action row: %+v, %v; want changed [name]: PKCE was required already", logs, err)
	}
	want(t, "PATCH a legacy public client off PKCE", e.admin("PATCH", "/v1/admin/clients/legacy",
		map[string]any{"require_pkce": false}), 400, "validation_failed")
}

// TestClientURIListsAreBounded: a client registers at most
// authd.MaxRedirectURIs redirect URIs and as many post-logout ones, at its
// creation and at a change; one more is refused, naming the field.
func TestClientURIListsAreBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	uris := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("https://rp.example.org/cb%d", i))
		}
		return out
	}
	limit := authd.MaxRedirectURIs
	want(t, "as many URIs as allowed", e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "full", "name": "Full",
		"type": "public", "redirect_uris": uris(limit), "post_logout_redirect_uris": uris(limit)}), 201, "")
	for name, body := range map[string]map[string]any{
		"redirect_uris":             {"name": "A", "type": "public", "redirect_uris": uris(limit + 1)},
		"post_logout_redirect_uris": {"name": "A", "type": "public", "redirect_uris": uris(1), "post_logout_redirect_uris": uris(limit + 1)},
	} {
		if r := e.admin("POST", "/v1/admin/clients", body); r.status != 400 || r.field() != name {
			t.Errorf("a client with %d %s: %d %s; want 400 naming the field", limit+1, name, r.status, r.raw)
		}
		if r := e.admin("PATCH", "/v1/admin/clients/full", map[string]any{name: uris(limit + 1)}); r.status != 400 || r.field() != name {
			t.Errorf("a change to %d %s: %d %s; want 400 naming the field", limit+1, name, r.status, r.raw)
		}
	}
}

// TestClientIDsNoClientCanHave: an id no client can have (not UTF-8, a
// NUL, too long) is answered as an unknown client, 404, on both stores,
// without asking the store (PostgreSQL refuses such text outright: a 500
// otherwise), by each way the admin API names a client.
func TestClientIDsNoClientCanHave(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		ctx := context.Background()
		for _, id := range []string{"%FF", "a%00b", strings.Repeat("a", authd.MaxClientIDLength+1)} {
			want(t, "GET "+id, e.admin("GET", "/v1/admin/clients/"+id, nil), 404, "not_found")
			want(t, "PATCH "+id, e.admin("PATCH", "/v1/admin/clients/"+id, map[string]any{"name": "A"}), 404, "not_found")
			want(t, "DELETE "+id, e.admin("DELETE", "/v1/admin/clients/"+id, nil), 404, "not_found")
		}
		for _, id := range []string{"\xff", "a\x00b"} {
			if _, err := e.svc.OAuthClient(ctx, id); authd.ErrorCode(err) != authd.ENotFound {
				t.Errorf("OAuthClient(%q): %v; want ENotFound", id, err)
			}
		}
	})
}

// TestClientChangeToNoRedirectURIs: a change that empties a client's
// redirect URIs is refused naming the field, with whatever else it
// changes: it is not taken for a change that leaves them out, the rest
// applied and the URIs kept.
func TestClientChangeToNoRedirectURIs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	want(t, "create", e.admin("POST", "/v1/admin/clients", map[string]any{"client_id": "wiki", "name": "Wiki",
		"type": "public", "redirect_uris": []string{"https://wiki.example.org/cb"}}), 201, "")
	r := e.admin("PATCH", "/v1/admin/clients/wiki", map[string]any{"name": "Wiki 2", "redirect_uris": []string{}})
	if r.status != 400 || r.field() != "redirect_uris" {
		t.Errorf("a change to no redirect URIs: %d %s; want 400 naming redirect_uris", r.status, r.raw)
	}
	if oc, err := e.svc.OAuthClient(context.Background(), "wiki"); err != nil || oc.Name != "Wiki" ||
		!slices.Equal(oc.RedirectURIs, []string{"https://wiki.example.org/cb"}) {
		t.Errorf("after the refused change: %+v, %v; want the client as it was", oc, err)
	}
}
