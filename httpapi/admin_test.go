package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

func TestAdminAPI(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		for i := range 3 {
			e.clock.Advance(time.Second)
			e.registerVerified(fmt.Sprintf("user%d@example.org", i), goodPassword)
		}
		e.clock.Advance(time.Second)
		want(t, "register", e.do("POST", "/v1/auth/register", map[string]any{"email": "pending@example.org", "password": goodPassword, "consent": true}), 202, "")
		target := e.user("user1@example.org")
		access, _ := e.login("user1@example.org", goodPassword)

		// Authentication.
		for name, h := range map[string][]string{"no token": nil, "wrong token": {"Authorization", "Bearer " + adminToken + "x"},
			"service token": {"Authorization", "Bearer " + serviceToken}, "user token": bearer(access)} {
			r := e.send(e.adminSrv.URL, "GET", "/v1/admin/users", nil, h...)
			want(t, name, r, 401, "invalid_token")
			challenge := `Bearer realm="authd", error="invalid_token"`
			if h == nil { // no credentials: the challenge alone (RFC 6750 §3.1)
				challenge = `Bearer realm="authd"`
			}
			if got := r.header.Get("WWW-Authenticate"); got != challenge {
				t.Errorf("%s: WWW-Authenticate %q, want %q", name, got, challenge)
			}
		}
		// Warnings, which alerts watch: whoever tries the admin API without
		// its token has reached the internal listener.
		if n := strings.Count(e.logs.String(), `level=WARN msg="admin token refused"`); n != 4 {
			t.Errorf("%d refused admin requests logged as warnings; want 4:\n%s", n, e.logs.String())
		}
		if strings.Contains(e.logs.String(), adminToken+"x") || strings.Contains(e.logs.String(), serviceToken) {
			t.Error("a refused admin token is in the log")
		}
		want(t, "admin route on the public listener", e.do("GET", "/v1/admin/users", nil, "Authorization", "Bearer "+adminToken), 404, "not_found")

		// Listing: filters and pagination, newest first.
		r := e.admin("GET", "/v1/admin/users?limit=2", nil)
		want(t, "list", r, 200, "")
		items := r.body["items"].([]any)
		if len(items) != 2 || items[0].(map[string]any)["email"] != "pending@example.org" || r.str("next_cursor") == "" {
			t.Fatalf("first page %s", r.raw)
		}
		if strings.Contains(r.raw, "password_hash") || strings.Contains(r.raw, "argon2") {
			t.Error("the admin list shows password hashes")
		}
		r = e.admin("GET", "/v1/admin/users?limit=2&cursor="+r.str("next_cursor"), nil)
		if items := r.body["items"].([]any); len(items) != 2 || items[1].(map[string]any)["email"] != "user0@example.org" {
			t.Errorf("second page %s", r.raw)
		}
		if r := e.admin("GET", "/v1/admin/users?status=inactive", nil); len(r.body["items"].([]any)) != 1 {
			t.Errorf("status filter: %s", r.raw)
		}
		if r := e.admin("GET", "/v1/admin/users?email=USER1", nil); len(r.body["items"].([]any)) != 1 {
			t.Errorf("email filter: %s", r.raw)
		}
		if r := e.admin("GET", "/v1/admin/users?email=%25", nil); len(r.body["items"].([]any)) != 0 {
			t.Errorf("a %% in the email filter matched as a wildcard: %s", r.raw)
		}
		want(t, "bad status", e.admin("GET", "/v1/admin/users?status=banned", nil), 400, "validation_failed")
		e.registerVerified("\u00fcser@example.org", goodPassword)
		if r := e.admin("GET", "/v1/admin/users?email=u%CC%88ser", nil); len(r.body["items"].([]any)) != 1 {
			t.Errorf("an email filter with a decomposed ü: %s, want the user stored composed", r.raw)
		}
		for _, junk := range []string{"%00", "a%ffb", "%1b", strings.Repeat("a", 1000)} { // both stores alike, the field named
			if r := e.admin("GET", "/v1/admin/users?email="+junk, nil); r.status != 400 || !strings.Contains(r.raw, `"field":"email"`) {
				t.Errorf("email filter %s: %d %s, want 400 naming email", junk, r.status, r.raw)
			}
		}
		r = e.admin("GET", "/v1/admin/users/"+target.ID.String(), nil)
		if r.status != 200 || r.str("email") != "user1@example.org" || r.body["failed_login_attempts"] != float64(0) {
			t.Errorf("show: %s", r.raw)
		}
		want(t, "show unknown", e.admin("GET", "/v1/admin/users/0197c0de-0000-7000-8000-000000000000", nil), 404, "not_found")
		want(t, "show malformed", e.admin("GET", "/v1/admin/users/42", nil), 404, "not_found")
		// An id that names no user is told in one wording, whatever the route
		// and whether the id parses (the stores' own says "not found").
		for _, route := range e.adminAPI.Routes() {
			if !strings.HasPrefix(route.Path, "/v1/admin/users/{id}") {
				continue
			}
			for _, id := range []string{"0197c0de-0000-7000-8000-000000000000", "42"} {
				path := strings.Replace(route.Path, "{id}", id, 1)
				r := e.admin(route.Method, path, nil)
				want(t, route.Method+" "+path, r, 404, "not_found")
				if r.str("detail") != "No such user." {
					t.Errorf("%s %s: %q, want No such user.", route.Method, path, r.str("detail"))
				}
			}
		}

		// Lock with an end: sessions end, login answers 423 until then.
		until := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
		want(t, "lock in the past", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/lock", map[string]string{"until": "2020-01-01T00:00:00Z"}), 400, "validation_failed")
		want(t, "lock until the zero time", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/lock", map[string]string{"until": "0001-01-01T00:00:00Z"}), 400, "validation_failed")
		want(t, "lock", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/lock", map[string]string{"until": until}), 204, "")
		want(t, "token of the locked user", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
		r = e.do("POST", "/v1/auth/login", map[string]string{"email": "user1@example.org", "password": goodPassword})
		want(t, "login while locked", r, 423, "account_locked")
		if r.header.Get("Retry-After") != "3600" {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		want(t, "unlock", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/unlock", nil), 204, "")
		access, _ = e.login("user1@example.org", goodPassword)
		// Lock without an end, by an empty body.
		want(t, "lock forever", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/lock", nil), 204, "")
		want(t, "token of the user locked for good", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
		e.clock.Advance(48 * time.Hour)
		want(t, "login long after", e.do("POST", "/v1/auth/login", map[string]string{"email": "user1@example.org", "password": goodPassword}), 423, "account_locked")
		want(t, "unlock", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/unlock", nil), 204, "")
		access, _ = e.login("user1@example.org", goodPassword)
		want(t, "revoke sessions", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/revoke-sessions", nil), 204, "")
		want(t, "token after revoke-sessions", e.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")

		// Delete, then the user is gone for every action.
		want(t, "delete", e.admin("DELETE", "/v1/admin/users/"+target.ID.String(), nil), 204, "")
		want(t, "delete again", e.admin("DELETE", "/v1/admin/users/"+target.ID.String(), nil), 404, "not_found")
		want(t, "lock a deleted user", e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/lock", nil), 404, "not_found")

		// Every action is in the security log, searchable.
		r = e.admin("GET", "/v1/admin/security-logs?event_type=admin_action&user_id="+target.ID.String(), nil)
		want(t, "search", r, 200, "")
		var actions []string
		for _, it := range r.body["items"].([]any) {
			actions = append(actions, it.(map[string]any)["additional_context"].(map[string]any)["action"].(string))
		}
		if strings.Join(actions, ",") != "delete,revoke_sessions,unlock,lock,unlock,lock,show_user" {
			t.Errorf("admin actions, newest first: %v", actions)
		}
		since := url.QueryEscape(e.clock.Now().Add(-time.Hour).Format(time.RFC3339))
		r = e.admin("GET", "/v1/admin/security-logs?result=failure&since="+since, nil)
		for _, it := range r.body["items"].([]any) {
			if it.(map[string]any)["result"] != "failure" {
				t.Errorf("result filter returned %v", it)
			}
		}
		// A filter that does not parse, or names no user, is refused, never dropped: the
		// listing would then hold every user's rows.
		for _, q := range []string{"user_id=x", "event_type=hack", "result=maybe", "since=yesterday", "limit=1000",
			"user_id=%ZZ" + target.ID.String(), "user_id=00000000-0000-0000-0000-000000000000", "cursor=%%%",
			"user_id=" + target.ID.String() + ";limit=1"} {
			want(t, "bad search "+q, e.admin("GET", "/v1/admin/security-logs?"+q, nil), 400, "validation_failed")
		}
		want(t, "a malformed email filter", e.admin("GET", "/v1/admin/users?status=active&email=user1%", nil), 400, "validation_failed")
		// So is one given empty (a script's ?status=$S with S unset).
		for _, path := range []string{"/v1/admin/users?status=", "/v1/admin/users?limit=5&email=", "/v1/admin/users?cursor=",
			"/v1/admin/security-logs?user_id=", "/v1/admin/security-logs?event_type=", "/v1/admin/mail?state="} {
			r := e.admin("GET", path, nil)
			want(t, "an empty filter "+path, r, 400, "validation_failed")
			if name := strings.TrimSuffix(path[strings.LastIndexAny(path, "?&")+1:], "="); r.field() != name {
				t.Errorf("%s: field %q, want %q", path, r.field(), name)
			}
		}
		e.registerVerified("lister@example.org", goodPassword)
		own, _ := e.login("lister@example.org", goodPassword)
		want(t, "an empty cursor of one's own log", e.do("GET", "/v1/users/me/security-log?cursor=", nil, bearer(own)...),
			400, "validation_failed")
	})
}

// TestUnlockOfAnAccountNotLocked: an administrator's unlock of an account
// that is not locked lifts nothing, and the account's trail says nothing
// was (it logged account_unlocked); the failures it had counted toward a
// lock start afresh, as after an unlock.
func TestUnlockOfAnAccountNotLocked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("free@example.org", goodPassword)
	for range 3 {
		want(t, "a wrong password", e.do("POST", "/v1/auth/login",
			map[string]string{"email": "free@example.org", "password": "not the password"}), 401, "invalid_credentials")
	}
	target := e.user("free@example.org")
	r := e.admin("POST", "/v1/admin/users/"+target.ID.String()+"/unlock", nil)
	want(t, "unlock", r, 204, "")
	if events := e.events("free@example.org"); slices.Contains(events, "account_unlocked/success") {
		t.Errorf("the account's events after an unlock of nothing: %v, want no account_unlocked", events)
	}
	if u := e.user("free@example.org"); u.FailedLoginAttempts != 0 || u.AccountStatus != authd.StatusActive {
		t.Errorf("after the unlock: %d failures, status %s; want 0, active", u.FailedLoginAttempts, u.AccountStatus)
	}
	r = e.admin("GET", "/v1/admin/security-logs?event_type=admin_action&user_id="+target.ID.String(), nil)
	want(t, "search", r, 200, "")
	if items, _ := r.body["items"].([]any); len(items) == 0 ||
		items[0].(map[string]any)["additional_context"].(map[string]any)["was_locked"] != false {
		t.Errorf("the unlock's admin_action: %s, want was_locked false", r.raw)
	}
}

func TestRetention(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("old@example.org", goodPassword)
		e.login("old@example.org", goodPassword)
		e.do("POST", "/v1/auth/password/forgot", map[string]string{"email": "old@example.org"})
		e.mail.flush()
		before := len(e.events("old@example.org"))
		ctx := t.Context()
		// A mail that could not be delivered: it keeps the address until retention.
		dead := &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordChanged, UserID: e.user("old@example.org").ID,
			To: "old@example.org", CreatedAt: e.clock.Now(), NextAttemptAt: e.clock.Now()}
		if err := e.store.EnqueueMail(ctx, dead); err != nil {
			t.Fatal(err)
		}
		claim := authd.NewID()
		if m, err := e.store.ClaimMail(ctx, claim, e.clock.Now(), time.Minute); err != nil || m == nil || m.ID != dead.ID {
			t.Fatalf("claim the mail to kill: %+v, %v", m, err)
		}
		if err := e.store.KillMail(ctx, dead.ID, claim, e.clock.Now(), "550 no such mailbox"); err != nil {
			t.Fatal(err)
		}

		// Nothing is old enough yet.
		if res, err := e.svc.Purge(ctx, 90*24*time.Hour, false); err != nil || !reflect.DeepEqual(res, authd.PurgeResult{}) {
			t.Fatalf("purge of fresh data: %+v, %v", res, err)
		}
		e.clock.Advance(31*24*time.Hour + time.Minute) // past the 30-day session limit, and a day
		e.login("old@example.org", goodPassword)       // a session that stays
		dry, err := e.svc.Purge(ctx, 90*24*time.Hour, true)
		if err != nil || dry.Tokens != 1 || dry.VerificationTokens != 2 || dry.Sessions != 1 || dry.SecurityLogs != 0 {
			t.Fatalf("dry run after 31 days: %+v, %v; want the first login's refresh token and session, 2 verification tokens", dry, err)
		}
		res, err := e.svc.Purge(ctx, 90*24*time.Hour, false)
		if err != nil || !reflect.DeepEqual(res, dry) {
			t.Fatalf("purge after 31 days: %+v, %v; want what the dry run counted, %+v", res, err, dry)
		}
		if again, _ := e.svc.Purge(ctx, 90*24*time.Hour, false); !reflect.DeepEqual(again, authd.PurgeResult{}) {
			t.Errorf("a second purge deleted %+v", again)
		}
		e.clock.Advance(60 * 24 * time.Hour) // the first events are now 91 days old
		res, err = e.svc.Purge(ctx, 90*24*time.Hour, false)
		if err != nil || res.SecurityLogs != before || res.DeadMails != 1 {
			t.Errorf("purge after 91 days: %+v, %v; want the %d old security logs and the dead mail", res, err, before)
		}
		if n := len(e.events("old@example.org")); n != 1 {
			t.Errorf("%d security logs left, want the one login of day 31", n)
		}
	})
}

// TestAdminLockUntilMalformed: an until that is no RFC 3339 time is named
// as the field at fault, as a time in the past is, and locks nobody.
func TestAdminLockUntilMalformed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("when@example.org", goodPassword)
	lock := "/v1/admin/users/" + e.user("when@example.org").ID.String() + "/lock"
	for _, until := range []string{`"tomorrow"`, `"2026-13-01T00:00:00Z"`, `"2026-12-01"`, `5`, `true`} {
		r := e.admin("POST", lock, `{"until":`+until+`}`)
		want(t, "until "+until, r, 400, "validation_failed")
		if errs := fmt.Sprint(r.body["errors"]); errs != "[map[field:until message:must be an RFC 3339 time such as 2026-11-27T09:00:00Z]]" {
			t.Errorf("until %s: errors %s; want the field until and the format", until, errs)
		}
	}
	if u := e.user("when@example.org"); u.AccountStatus != authd.StatusActive {
		t.Errorf("after the refusals the account is %s, want active", u.AccountStatus)
	}
}

// TestAdminLockUntilInAChunkedBody: a lock's body sent without a length
// (chunked, as a streaming client sends it) is read like any other: its
// until bounds the lock, rather than being dropped for a lock until an
// administrator lifts it.
func TestAdminLockUntilInAChunkedBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("chunked@example.org", goodPassword)
	id := e.user("chunked@example.org").ID.String()
	until := e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	body := io.MultiReader(strings.NewReader(`{"until":"` + until + `"}`)) // no length known: sent chunked
	req, err := http.NewRequest("POST", e.adminSrv.URL+"/v1/admin/users/"+id+"/lock", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("a chunked lock: %d, want 204", resp.StatusCode)
	}
	if r := e.admin("GET", "/v1/admin/users/"+id, nil); r.str("account_status") != "locked" || r.str("account_locked_until") != until {
		t.Errorf("after a chunked lock until %s: %s; want locked until then", until, r.raw)
	}
}

// TestAdminUserShowsTheLockByCodes: the admin view of a user shows the
// second-factor codes' lockout as the password's (the wrong codes counted,
// and until when codes are refused), so that support can tell why a user
// who knows the password cannot sign in.
func TestAdminUserShowsTheLockByCodes(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("codes@example.org", goodPassword)
		u := e.user("codes@example.org")
		until := e.clock.Now().Add(30 * time.Minute)
		u.FailedCodeAttempts, u.CodesLockedUntil = 3, until
		if err := e.store.UpdateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		r := e.admin("GET", "/v1/admin/users/"+u.ID.String(), nil)
		want(t, "show", r, 200, "")
		if r.body["failed_code_attempts"] != float64(3) || r.str("codes_locked_until") != until.Format(time.RFC3339) ||
			r.body["failed_login_attempts"] != float64(0) || r.body["account_locked_until"] != nil {
			t.Errorf("show: %s; want 3 failed codes, codes locked until %s, the password's lockout clear",
				r.raw, until.Format(time.RFC3339))
		}
	})
}

// TestAdminLockUntilTheLastYear: an until whose UTC form falls past the
// year 9999 (which neither RFC 3339 nor the audit row can write) is named
// as the field at fault, never a 500; the last second of 9999 locks.
func TestAdminLockUntilTheLastYear(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("far@example.org", goodPassword)
		id := e.user("far@example.org").ID.String()
		r := e.admin("POST", "/v1/admin/users/"+id+"/lock", `{"until":"9999-12-31T23:59:59-23:59"}`)
		want(t, "until past 9999 in UTC", r, 400, "validation_failed")
		if errs := fmt.Sprint(r.body["errors"]); !strings.Contains(errs, "field:until") {
			t.Errorf("errors %s; want the field until", errs)
		}
		if u := e.user("far@example.org"); u.AccountStatus != authd.StatusActive {
			t.Errorf("after the refusal the account is %s, want active", u.AccountStatus)
		}
		for _, q := range []string{"since=9999-12-31T23:59:59-23:59", "until=0000-01-01T00:00:00%2B01:00",
			"since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z",
			// The zero time is no bound: the filter would be dropped.
			"until=0001-01-01T00:00:00Z", "since=0001-01-01T00:00:00Z"} {
			want(t, "security logs "+q, e.admin("GET", "/v1/admin/security-logs?"+q, nil), 400, "validation_failed")
		}
		// An offset of 24 hours is outside RFC 3339, but Go's parser takes
		// it, and the instant is plain: listed, and logged (a 500 was).
		for _, q := range []string{"since=2026-12-04T20:45:00-24:00", "until=2026-12-04T20:45:00%2B24:00"} {
			want(t, "security logs "+q, e.admin("GET", "/v1/admin/security-logs?"+q, nil), 200, "")
		}
		want(t, "until the last second of 9999", e.admin("POST", "/v1/admin/users/"+id+"/lock", `{"until":"9999-12-31T23:59:59Z"}`), 204, "")
		if r := e.admin("GET", "/v1/admin/users/"+id, nil); r.status != 200 || r.str("account_locked_until") != "9999-12-31T23:59:59Z" ||
			r.str("lock_reason") != "admin" {
			t.Errorf("show: %d %s", r.status, r.raw)
		}
	})
}

// TestAdminUserEmailFilterUpToTheLongestAddress: an email filter as long as
// the longest address an account can have (authd.MaxEmailLength bytes) is
// a search, and finds the account with that address; one byte more is
// refused, naming the field.
func TestAdminUserEmailFilterUpToTheLongestAddress(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		label := strings.Repeat("d", 61)
		longest := strings.Repeat("l", 64) + "@" + label + "." + label + "." + label + ".org"
		if len(longest) != authd.MaxEmailLength {
			t.Fatalf("the test's address is %d bytes, want %d", len(longest), authd.MaxEmailLength)
		}
		e.registerVerified(longest, goodPassword)
		r := e.admin("GET", "/v1/admin/users?email="+longest, nil)
		want(t, "a filter of the longest address", r, 200, "")
		if items, _ := r.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["email"] != longest {
			t.Errorf("a filter of %d bytes: %s; want the account with that address", len(longest), r.raw)
		}
		r = e.admin("GET", "/v1/admin/users?email=x"+longest, nil)
		want(t, "a filter one byte longer", r, 400, "validation_failed")
		if r.field() != "email" {
			t.Errorf("a filter one byte longer: %s; want the field email named", r.raw)
		}
	})
}

// TestAdminSecurityLogsEmptyRange: a since that is not before until (the
// same instant, however its offsets write it) is refused naming until,
// rather than answered with an empty list that would read as "nothing
// happened"; a range of one second is listed.
func TestAdminSecurityLogsEmptyRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	for _, q := range []string{"since=2026-11-27T09:00:00Z&until=2026-11-27T09:00:00Z",
		"since=2026-11-27T10:00:00%2B01:00&until=2026-11-27T09:00:00Z"} {
		r := e.admin("GET", "/v1/admin/security-logs?"+q, nil)
		want(t, "security logs "+q, r, 400, "validation_failed")
		if r.field() != "until" {
			t.Errorf("security logs %s: %s; want the field until named", q, r.raw)
		}
	}
	want(t, "a range of one second", e.admin("GET",
		"/v1/admin/security-logs?since=2026-11-27T09:00:00Z&until=2026-11-27T09:00:01Z", nil), 200, "")
}

// TestAdminLockUntilNow: a lock until the present instant would end the
// moment it began (ending the user's sessions for no lock): it is refused
// as a time in the past is, naming until, and the account and its session
// stay as they were.
func TestAdminLockUntilNow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite(t))
	e.registerVerified("now@example.org", goodPassword)
	access, _ := e.login("now@example.org", goodPassword)
	lock := "/v1/admin/users/" + e.user("now@example.org").ID.String() + "/lock"
	r := e.admin("POST", lock, map[string]string{"until": e.clock.Now().Format(time.RFC3339Nano)})
	want(t, "lock until now", r, 400, "validation_failed")
	if r.field() != "until" {
		t.Errorf("lock until now: %s; want the field until named", r.raw)
	}
	if u := e.user("now@example.org"); u.AccountStatus != authd.StatusActive {
		t.Errorf("after the refusal the account is %s, want active", u.AccountStatus)
	}
	want(t, "the session after the refusal", e.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
}

// TestAdminActionsOnAnErasedUser: an erased account leaves nothing for an
// administrator to act on or read a second factor of: every action, and
// the second-factor view, answer 404 in the one wording of an unknown id,
// and log nothing.
func TestAdminActionsOnAnErasedUser(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		e.registerVerified("gone@example.org", goodPassword)
		id := e.user("gone@example.org").ID.String()
		want(t, "delete", e.admin("DELETE", "/v1/admin/users/"+id, nil), 204, "")
		rows := func() int {
			logs, err := e.store.SecurityLogs(context.Background(),
				authd.SecurityLogFilter{EventType: authd.EventAdminAction, Limit: authd.MaxListLimit})
			if err != nil {
				t.Fatal(err)
			}
			return len(logs)
		}
		before := rows()
		for _, req := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/lock", nil}, {"POST", "/unlock", nil}, {"POST", "/revoke-sessions", nil},
			{"POST", "/email", map[string]any{"email": "back@example.org", "verified": true}},
			{"DELETE", "", nil}, {"GET", "/mfa", nil}, {"POST", "/reset-mfa", nil},
		} {
			r := e.admin(req.method, "/v1/admin/users/"+id+req.path, req.body)
			want(t, req.method+" "+req.path+" of an erased user", r, 404, "not_found")
			if r.str("detail") != "No such user." {
				t.Errorf("%s %s of an erased user: %q, want No such user.", req.method, req.path, r.str("detail"))
			}
		}
		if after := rows(); after != before {
			t.Errorf("the refused actions wrote %d admin_action rows, want none", after-before)
		}
	})
}
