package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

// The administrator's client, sent through the trusted proxy so that it
// lands in the rows.
const (
	adminIP = "192.0.2.250"
	adminUA = "AdminConsole/9.1 (distinctive)"
)

func adminClientHeaders() []string { return []string{"X-Forwarded-For", adminIP, "User-Agent", adminUA} }

// adminRows returns the admin_action rows the admin API lists, newest first.
func adminRows(t *testing.T, e *env, query string) []map[string]any {
	t.Helper()
	r := e.admin("GET", "/v1/admin/security-logs?limit=200&event_type=admin_action"+query, nil)
	want(t, "admin security log", r, 200, "")
	var out []map[string]any
	for _, it := range r.body["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

func ctxOf(row map[string]any) map[string]any {
	c, _ := row["additional_context"].(map[string]any)
	return c
}

func TestUserDoesNotSeeTheAdministratorsClient(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("subject@example.org", goodPassword)
		u := e.user("subject@example.org")
		path := "/v1/admin/users/" + u.ID.String()
		until := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
		want(t, "lock", e.admin("POST", path+"/lock", map[string]string{"until": until}, adminClientHeaders()...), 204, "")
		want(t, "unlock", e.admin("POST", path+"/unlock", nil, adminClientHeaders()...), 204, "")
		want(t, "revoke sessions", e.admin("POST", path+"/revoke-sessions", nil, adminClientHeaders()...), 204, "")
		// A row as admin actions wrote them before: under the user, with the
		// administrator's client.
		legacy := authd.NewSecurityLog(e.clock.Now(), authd.EventAdminAction, authd.ResultSuccess, u.ID, adminIP, adminUA, "",
			map[string]any{"action": "lock"})
		if err := e.store.CreateSecurityLog(context.Background(), legacy); err != nil {
			t.Fatal(err)
		}

		// The user reads what was done, not from where.
		access, _ := e.login("subject@example.org", goodPassword)
		r := e.do("GET", "/v1/users/me/security-log?limit=200", nil, bearer(access)...)
		want(t, "own security log", r, 200, "")
		if strings.Contains(r.raw, adminIP) || strings.Contains(r.raw, "AdminConsole") {
			t.Errorf("the user's security log shows the administrator's client: %s", r.raw)
		}
		var actions []string
		for _, it := range r.body["items"].([]any) {
			row := it.(map[string]any)
			if row["event_type"] == "admin_action" {
				actions = append(actions, ctxOf(row)["action"].(string))
			}
		}
		if strings.Join(actions, ",") != "lock,revoke_sessions,unlock,lock" {
			t.Errorf("admin actions in the user's log, newest first: %v; want what was done to the account", actions)
		}
		r = e.do("GET", "/v1/users/me/export", nil, bearer(access)...)
		want(t, "export", r, 200, "")
		if strings.Contains(r.raw, adminIP) || strings.Contains(r.raw, "AdminConsole") {
			t.Error("the user's export holds the administrator's client")
		}
		if !strings.Contains(r.raw, `"revoke_sessions"`) {
			t.Error("the user's export does not say what the administrator did")
		}

		// Administrators see who did what from where, even after the erasure
		// of the user.
		want(t, "delete", e.admin("DELETE", path, nil, adminClientHeaders()...), 204, "")
		var audited []string
		for _, row := range adminRows(t, e, "") {
			c := ctxOf(row)
			if c["target_user_id"] != u.ID.String() {
				continue
			}
			audited = append(audited, c["action"].(string))
			if row["ip_address"] != adminIP || row["user_agent"] != adminUA || row["user_id"] != nil {
				t.Errorf("administrator's row %v; want their IP and browser, on no user", row)
			}
		}
		if strings.Join(audited, ",") != "delete,revoke_sessions,unlock,lock" {
			t.Errorf("administrator's rows for the user, newest first: %v", audited)
		}
	})
}
