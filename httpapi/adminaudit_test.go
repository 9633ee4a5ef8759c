package httpapi_test

import (
	"context"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// The administrator's client, sent through the trusted proxy so that it
// lands in the rows.
const (
	adminIP = "192.0.2.250"
	adminUA = "AdminConsole/9.1 (distinctive)"
)

func adminClientHeaders() []string {
	return []string{"X-Forwarded-For", adminIP, "User-Agent", adminUA}
}

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
		// And the unlock row an administrator's unlock wrote before.
		legacyUnlock := authd.NewSecurityLog(e.clock.Now(), authd.EventAccountUnlocked, authd.ResultSuccess, u.ID,
			adminIP, adminUA, "unlocked by an administrator", nil)
		if err := e.store.CreateSecurityLog(context.Background(), legacyUnlock); err != nil {
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

// TestUserDoesNotSeeAnAdministratorsAddressAlone: a row an administrator's
// action wrote under the user before (admin_action, or the unlock's
// account_unlocked) that kept only the administrator's IP address, or only
// their browser, shows the user neither, in their security log or their
// export.
func TestUserDoesNotSeeAnAdministratorsAddressAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("half@example.org", goodPassword)
	u := e.user("half@example.org")
	for _, l := range []*authd.SecurityLog{
		authd.NewSecurityLog(e.clock.Now(), authd.EventAdminAction, authd.ResultSuccess, u.ID, adminIP, "", "",
			map[string]any{"action": "lock"}),
		authd.NewSecurityLog(e.clock.Now(), authd.EventAccountUnlocked, authd.ResultSuccess, u.ID, "", adminUA,
			"unlocked by an administrator", nil),
	} {
		if err := e.store.CreateSecurityLog(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	access, _ := e.login("half@example.org", goodPassword)
	for _, path := range []string{"/v1/users/me/security-log?limit=200", "/v1/users/me/export"} {
		r := e.do("GET", path, nil, bearer(access)...)
		want(t, path, r, 200, "")
		if strings.Contains(r.raw, adminIP) || strings.Contains(r.raw, "AdminConsole") {
			t.Errorf("GET %s shows the administrator's IP address or browser: %s", path, r.raw)
		}
	}
}

// TestUserSeesTheirOwnUnlock: only an administrator's client is kept from
// the user: the account_unlocked row of a lock that ran out, lifted at the
// user's own login, shows the user their IP address and browser in their
// security log, as their other rows do.
func TestUserSeesTheirOwnUnlock(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		const email, ip, ua = "own.unlock@example.org", "198.51.100.23", "OwnBrowser/1.0 (distinctive)"
		e.registerVerified(email, goodPassword)
		e.bruteLock(email)
		e.clock.Advance(16 * time.Minute)
		r := e.do("POST", "/v1/auth/login", map[string]string{"email": email, "password": goodPassword},
			"X-Forwarded-For", ip, "User-Agent", ua)
		want(t, "login past the lock", r, 200, "")
		r = e.do("GET", "/v1/users/me/security-log?limit=200", nil, bearer(r.str("access_token"))...)
		want(t, "own security log", r, 200, "")
		found := false
		for _, it := range r.body["items"].([]any) {
			row := it.(map[string]any)
			if row["event_type"] != "account_unlocked" {
				continue
			}
			found = true
			if row["ip_address"] != ip || row["user_agent"] != ua {
				t.Errorf("the user's own unlock row: %v; want their IP address and browser", row)
			}
		}
		if !found {
			t.Errorf("no account_unlocked row in the user's log: %s", r.raw)
		}
	})
}

// TestAdminUnlockRowHoldsNoAdministratorsClient: the account_unlocked row
// of an administrator's unlock is the user's and is stored without the
// administrator's IP address and browser, which only the administrator's
// own admin_action row keeps; the user's view is not the only safeguard.
func TestAdminUnlockRowHoldsNoAdministratorsClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("unlocked@example.org", goodPassword)
	u := e.user("unlocked@example.org")
	path := "/v1/admin/users/" + u.ID.String()
	want(t, "lock", e.admin("POST", path+"/lock", nil, adminClientHeaders()...), 204, "")
	want(t, "unlock", e.admin("POST", path+"/unlock", nil, adminClientHeaders()...), 204, "")
	logs, err := e.store.SecurityLogs(context.Background(),
		authd.SecurityLogFilter{UserID: u.ID, EventType: authd.EventAccountUnlocked, Limit: authd.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || logs[0].IPAddress != "" || logs[0].UserAgent != "" {
		t.Errorf("account_unlocked rows %+v; want one, without the administrator's IP address or browser", logs)
	}
}

// storedAdminRows reads the admin_action rows straight from the store (a
// read through the admin API would add its own), newest first.
func storedAdminRows(t *testing.T, e *env, user uuid.UUID) []*authd.SecurityLog {
	t.Helper()
	rows, err := e.store.SecurityLogs(context.Background(),
		authd.SecurityLogFilter{EventType: authd.EventAdminAction, UserID: user, Limit: authd.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestAdminReadsAreAudited(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("read.me@example.org", goodPassword)
		u := e.user("read.me@example.org")
		reads := []struct {
			path    string
			details map[string]any // and the count of a list
			target  bool
		}{
			{"/v1/admin/users?email=READ.ME&status=active", map[string]any{"action": "list_users",
				"filters": map[string]any{"email_filter": true, "status": "active"}}, false},
			{"/v1/admin/users/" + u.ID.String(), map[string]any{"action": "show_user"}, true},
			{"/v1/admin/security-logs?result=success&user_id=" + u.ID.String(), map[string]any{"action": "list_security_logs",
				"filters": map[string]any{"user_id": u.ID.String(), "result": "success"}}, true},
			{"/v1/admin/mail?state=dead", map[string]any{"action": "list_mail", "filters": map[string]any{"state": "dead"}}, false},
		}
		for i, read := range reads {
			e.clock.Advance(time.Second)
			r := e.admin("GET", read.path, nil, adminClientHeaders()...)
			want(t, read.path, r, 200, "")
			wantCtx := maps.Clone(read.details)
			if items, ok := r.body["items"].([]any); ok {
				wantCtx["count"] = float64(len(items))
			}
			if read.target {
				wantCtx["target_user_id"] = u.ID.String()
			}
			var own []*authd.SecurityLog
			for _, l := range storedAdminRows(t, e, uuid.Nil) {
				if l.UserID == uuid.Nil {
					own = append(own, l)
				}
			}
			if len(own) != i+1 {
				t.Fatalf("GET %s: %d administrator's rows; want %d, one per read", read.path, len(own), i+1)
			}
			if own[0].IPAddress != adminIP || own[0].UserAgent != adminUA || !own[0].Timestamp.Equal(e.clock.Now()) {
				t.Errorf("GET %s: the administrator's row %+v; want their client, at the time of the read", read.path, own[0])
			}
			if diff := cmp.Diff(wantCtx, own[0].AdditionalContext); diff != "" {
				t.Errorf("GET %s: context (-want +got):\n%s", read.path, diff)
			}
			copies := storedAdminRows(t, e, u.ID)
			if read.target && (len(copies) == 0 || !copies[0].Timestamp.Equal(e.clock.Now()) ||
				copies[0].AdditionalContext["action"] != read.details["action"] || copies[0].IPAddress != "" || copies[0].UserAgent != "") {
				t.Errorf("GET %s: the user's rows %+v; want a copy of the read without the administrator's client", read.path, copies)
			}
		}

		// A failed read shows nothing and logs nothing.
		before := len(storedAdminRows(t, e, uuid.Nil))
		want(t, "show unknown", e.admin("GET", "/v1/admin/users/0197c0de-0000-7000-8000-000000000000", nil), 404, "not_found")
		want(t, "bad filter", e.admin("GET", "/v1/admin/users?status=banned", nil), 400, "validation_failed")
		if after := len(storedAdminRows(t, e, uuid.Nil)); after != before {
			t.Errorf("failed reads wrote %d rows", after-before)
		}
	})
}

// TestAdminLogListingAuditsItsFilters: a security-log listing's
// admin_action row names every filter it was given, the event and the
// result and the time range too (in UTC, whatever offset the
// administrator wrote), so that the audit trail says what was read.
func TestAdminLogListingAuditsItsFilters(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("filtered@example.org", goodPassword)
		e.login("filtered@example.org", goodPassword)
		since, until := e.clock.Now().Add(-time.Hour), e.clock.Now().Add(time.Hour)
		r := e.admin("GET", "/v1/admin/security-logs?event_type=login_success&result=success&since="+
			since.In(time.FixedZone("", -2*3600)).Format(time.RFC3339)+"&until="+until.UTC().Format(time.RFC3339), nil)
		want(t, "a filtered listing", r, 200, "")
		items, _ := r.body["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("the filtered listing: %s; want the one login", r.raw)
		}
		rows := storedAdminRows(t, e, uuid.Nil)
		if len(rows) != 1 {
			t.Fatalf("%d admin_action rows; want the listing's", len(rows))
		}
		wantCtx := map[string]any{"action": "list_security_logs", "count": float64(1), "filters": map[string]any{
			"event_type": "login_success", "result": "success",
			"since": since.UTC().Format(time.RFC3339Nano), "until": until.UTC().Format(time.RFC3339Nano)}}
		if diff := cmp.Diff(wantCtx, rows[0].AdditionalContext); diff != "" {
			t.Errorf("the listing's admin_action context (-want +got):\n%s", diff)
		}
	})
}

// unaudited is a store that cannot write a security-log row in a
// transaction, as when the database fails just then.
type unaudited struct{ authd.Store }

func (s unaudited) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.Store.InTx(ctx, func(q authd.Queries) error { return fn(unauditedQueries{q}) })
}

type unauditedQueries struct{ authd.Queries }

func (unauditedQueries) CreateSecurityLog(context.Context, *authd.SecurityLog) error {
	return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable"}
}

func TestAdminReadThatCannotBeAuditedIsRefused(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		store := open(t)
		e := newEnv(t, store)
		e.registerVerified("hidden@example.org", goodPassword)
		id := e.user("hidden@example.org").ID.String()
		e = newEnv(t, unaudited{store})
		for _, path := range []string{"/v1/admin/users", "/v1/admin/users/" + id, "/v1/admin/security-logs", "/v1/admin/mail"} {
			r := e.admin("GET", path, nil)
			want(t, path, r, 503, "unavailable")
			if strings.Contains(r.raw, "hidden@example.org") || strings.Contains(r.raw, id) {
				t.Errorf("GET %s without its audit row shows %s", path, r.raw)
			}
		}
	})
}

// userUnreadable is a store whose reads of a user by id fail while down is
// set, as when the database fails just then; everything else works.
type userUnreadable struct {
	authd.Store
	down *atomic.Bool
}

func (s userUnreadable) User(ctx context.Context, id uuid.UUID) (*authd.User, error) {
	if s.down.Load() {
		return nil, &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable"}
	}
	return s.Store.User(ctx, id)
}

// TestAdminListingOfAnUnreadableUserIsRefused: a security-log listing
// filtered by a user whom the store cannot read just then is refused (503)
// and logs nothing, rather than shown with the administrator's row alone:
// the user's copy of the read, which their own log and export show, would
// be missing for a user who exists.
func TestAdminListingOfAnUnreadableUserIsRefused(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		down := &atomic.Bool{}
		e := newEnv(t, userUnreadable{open(t), down})
		e.registerVerified("unreadable@example.org", goodPassword)
		u := e.user("unreadable@example.org")
		before := len(storedAdminRows(t, e, uuid.Nil))
		down.Store(true)
		r := e.admin("GET", "/v1/admin/security-logs?user_id="+u.ID.String(), nil)
		down.Store(false)
		want(t, "a listing of a user who cannot be read", r, 503, "unavailable")
		if _, shown := r.body["items"]; shown {
			t.Errorf("the refused listing shows rows: %s", r.raw)
		}
		if after := len(storedAdminRows(t, e, uuid.Nil)); after != before {
			t.Errorf("the refused listing wrote %d admin_action rows, want none", after-before)
		}
	})
}

// TestRefusalThatCannotBeAuditedLeavesNothing: a refused request commits
// what it counted only with its security-log row: when the row cannot be
// written, the request fails as unavailable and its wrong password is not
// counted either (the whole transaction rolls back), rather than answering
// the refusal with a count the log does not explain.
func TestRefusalThatCannotBeAuditedLeavesNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		store := open(t)
		e := newEnv(t, store)
		e.registerVerified("unlogged@example.org", goodPassword)
		e = newEnv(t, unaudited{store})
		want(t, "a wrong password without its audit row", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "unlogged@example.org", "password": "wrong"}), 503, "unavailable")
		if n := e.user("unlogged@example.org").FailedLoginAttempts; n != 0 {
			t.Errorf("a wrong password whose audit row failed: %d failures counted, want none", n)
		}
	})
}
