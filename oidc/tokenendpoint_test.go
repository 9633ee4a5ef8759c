package oidc_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
	"golang.org/x/oauth2"
)

// rawTokenRequest posts form to the token endpoint with the Authorization
// header given ("" for none) and returns the response, its body read: the
// OAuth error code and description.
func (e *env) rawTokenRequest(form url.Values, authorization string) (*http.Response, string, string) {
	e.t.Helper()
	header := http.Header{}
	if authorization != "" {
		header.Set("Authorization", authorization)
	}
	return e.tokenRequestWith(strings.NewReader(form.Encode()), header)
}

// tokenRequestWith posts body to the token endpoint as a form, with header
// added, and returns what rawTokenRequest does.
func (e *env) tokenRequestWith(body io.Reader, header http.Header) (*http.Response, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+oidc.TokenPath, body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", clientAuthUA)
	for name, values := range header {
		req.Header[name] = values
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	var out struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		e.t.Errorf("token endpoint's %d: not the JSON error shape: %q", resp.StatusCode, answer)
	}
	return resp, out.Error, out.Description
}

func codeForm() url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {"no-such-code"}, "redirect_uri": {rpCallback},
		"code_verifier": {strings.Repeat("v", 43)}}
}

// wrongSecretForm is a code grant of a new confidential client with a wrong
// secret: read in full, it is refused 401 invalid_client.
func wrongSecretForm(e *env) url.Values {
	app, _ := e.client("app", authd.ClientConfidential, true)
	form := codeForm()
	form.Set("client_id", app.ID)
	form.Set("client_secret", "wrong")
	return form
}

func basic(credentials string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(credentials))
}

// TestMalformedBasicIsInvalidClient: Basic credentials that do not decode
// as RFC 6749 §2.3.1 has them (a percent escape that is none, no base64,
// no colon, an empty client_id) are a client that tried the Authorization
// header and failed: 401 invalid_client with the Basic challenge and
// no-store (§5.2), and one oidc_client_auth_failed row naming the client
// when it could be read, with no part of the secret; they count toward the
// bound of refusals like any other (429 past it). Not the library's
// unchallenged, unlogged 400.
func TestMalformedBasicIsInvalidClient(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		app, secret := e.client("app", authd.ClientConfidential, true)
		tests := []struct {
			name, authorization, context string
		}{
			{"a bad percent escape in the secret", basic(app.ID + ":%zz" + secret[:10]), knownClientIDContext(app.ID)},
			{"no base64", "Basic !!!!", ""},
			{"no colon", basic(app.ID), ""},
			{"an empty client_id", basic(":" + secret), ""},
			{"a bad percent escape in the client_id", basic("%zz:" + secret), ""},
			{"lower-case scheme", "basic " + base64.StdEncoding.EncodeToString([]byte(":"+secret)), ""},
		}
		for _, tt := range tests {
			before := len(e.clientAuthFailures())
			resp, code, description := e.rawTokenRequest(codeForm(), tt.authorization)
			if resp.StatusCode != http.StatusUnauthorized || code != "invalid_client" || description == "" ||
				resp.Header.Get("WWW-Authenticate") != `Basic realm="authd"` || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %d %q %q, WWW-Authenticate %q, Cache-Control %q; want 401 invalid_client with a description, "+
					`Basic realm="authd", no-store`, tt.name, resp.StatusCode, code, description,
					resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Cache-Control"))
			}
			rows := e.clientAuthFailures()
			if len(rows) != before+1 {
				t.Errorf("%s: %d new oidc_client_auth_failed rows, want 1", tt.name, len(rows)-before)
				continue
			}
			l := rows[0]
			if l.Result != authd.ResultFailure || l.IPAddress != "127.0.0.1" || l.UserAgent != clientAuthUA ||
				l.FailureReason != "malformed basic credentials" || l.AdditionalContext["auth_method"] != "client_secret_basic" {
				t.Errorf("%s: row %+v; want a failure from 127.0.0.1, reason malformed basic credentials, client_secret_basic", tt.name, l)
			}
			if tt.context != "" && clientIDContext(l) != tt.context {
				t.Errorf("%s: context names the client as %s, want %s", tt.name, clientIDContext(l), tt.context)
			}
			raw, _ := json.Marshal(l)
			for _, s := range []string{secret, secret[:10], secret[len(secret)-10:]} {
				if strings.Contains(string(raw), s) {
					t.Errorf("%s: the row holds secret text %q: %s", tt.name, s, raw)
				}
			}
		}
		// Well-formed credentials still reach the library: the right secret
		// authenticates (the unknown code is invalid_grant).
		form := codeForm()
		if resp, code, _ := e.rawTokenRequest(form, basic(url.QueryEscape(app.ID)+":"+url.QueryEscape(secret))); resp.StatusCode != http.StatusBadRequest || code != "invalid_grant" {
			t.Errorf("the right secret: %d %q, want 400 invalid_grant", resp.StatusCode, code)
		}
		// The bound: 10 refusals a minute from one IP, these included.
		for range 10 - len(tests) {
			e.rawTokenRequest(codeForm(), "Basic !!!!")
		}
		resp, code, _ := e.rawTokenRequest(codeForm(), "Basic !!!!")
		if resp.StatusCode != http.StatusTooManyRequests || code != "invalid_request" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("the 11th refusal: %d %q, Retry-After %q; want 429 invalid_request with Retry-After",
				resp.StatusCode, code, resp.Header.Get("Retry-After"))
		}
		if n := len(e.clientAuthFailures()); n != 10 {
			t.Errorf("%d oidc_client_auth_failed rows, want 10", n)
		}
	})
}

// TestNoClientAuthIsInvalidClient: a code or refresh grant with no client
// authentication at all (no Authorization header, no client_id) is 401
// invalid_client with the Basic challenge and a row, method none, as a
// client that fails to authenticate; not the library's 400 invalid_request.
func TestNoClientAuthIsInvalidClient(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		for _, grant := range []url.Values{codeForm(), {"grant_type": {"refresh_token"}, "refresh_token": {"junk"}}} {
			before := len(e.clientAuthFailures())
			resp, code, _ := e.rawTokenRequest(grant, "")
			if resp.StatusCode != http.StatusUnauthorized || code != "invalid_client" ||
				resp.Header.Get("WWW-Authenticate") != `Basic realm="authd"` || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s without client authentication: %d %q, WWW-Authenticate %q, Cache-Control %q; want 401 invalid_client, "+
					`Basic realm="authd", no-store`, grant.Get("grant_type"), resp.StatusCode, code,
					resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Cache-Control"))
			}
			rows := e.clientAuthFailures()
			if len(rows) != before+1 || rows[0].FailureReason != "no client authentication" || rows[0].AdditionalContext["auth_method"] != "none" {
				t.Errorf("%s without client authentication: %d new rows; want 1, reason no client authentication, method none",
					grant.Get("grant_type"), len(rows)-before)
			}
		}
	})
}

// TestClientAssertionIsRefusedAndLogged: a client assertion (which authd
// does not support) is refused as any client authentication is: 401
// invalid_client, a row naming the client, and the same bound.
func TestClientAssertionIsRefusedAndLogged(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		app, _ := e.client("app", authd.ClientConfidential, true)
		form := codeForm()
		form.Set("client_id", app.ID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", "eyJhbGciOiJub25lIn0.e30.")
		resp, code, _ := e.rawTokenRequest(form, "")
		if resp.StatusCode != http.StatusUnauthorized || code != "invalid_client" {
			t.Errorf("a client assertion: %d %q, want 401 invalid_client", resp.StatusCode, code)
		}
		rows := e.clientAuthFailures()
		if len(rows) != 1 || rows[0].FailureReason != "client assertions are not supported" ||
			rows[0].AdditionalContext["client_id"] != app.ID || rows[0].AdditionalContext["auth_method"] != "client_assertion" {
			t.Errorf("rows after a client assertion: %+v; want one naming the client and the method", rows)
		}
	})
}

// TestTokenBodyTooLarge: a token request's body over 64 KiB is 413 (SPEC
// §5) in the OAuth error shape, no-store, not the library's 400 "error
// parsing form"; one just under the limit is read.
func TestTokenBodyTooLarge(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		form := wrongSecretForm(e)
		form.Set("padding", strings.Repeat("x", 64<<10))
		resp, code, description := e.rawTokenRequest(form, "")
		if resp.StatusCode != http.StatusRequestEntityTooLarge || code != "invalid_request" ||
			description != "the body is larger than 64 KiB" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("a 64 KiB padding: %d %q %q, Cache-Control %q; want 413 invalid_request \"the body is larger than 64 KiB\", no-store",
				resp.StatusCode, code, description, resp.Header.Get("Cache-Control"))
		}
		form.Set("padding", strings.Repeat("x", 60<<10))
		if resp, code, _ := e.rawTokenRequest(form, ""); resp.StatusCode != http.StatusUnauthorized || code != "invalid_client" {
			t.Errorf("a 60 KiB padding with a wrong secret: %d %q, want 401 invalid_client (read and refused)", resp.StatusCode, code)
		}
	})
}

// TestFormBodyOverLimitAnsweredAtOnce: a form body declared over 64 KiB
// (Content-Length) is refused before a byte of it is read, and one that
// passes the limit as it comes (chunked) as soon as it does; either answer
// closes the connection. They waited for the rest of the body from a
// client that had stopped sending: the token endpoint and UserInfo then
// answered a 400 "error parsing form", the sign-in page at all only then.
func TestFormBodyOverLimitAnsweredAtOnce(t *testing.T) {
	e := newEnv(t, openSQLite(t))
	chunk := strings.Repeat("x", 70<<10)
	for _, c := range []struct {
		path, body string
		status     int
	}{
		{oidc.TokenPath, "Content-Length: 100000\r\n\r\ngrant_type=", http.StatusRequestEntityTooLarge},
		{oidc.TokenPath, fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(chunk), chunk),
			http.StatusRequestEntityTooLarge},
		{oidc.RevokePath, "Content-Length: 100000\r\n\r\ntoken=", http.StatusRequestEntityTooLarge},
		{oidc.UserInfoPath, "Content-Length: 100000\r\n\r\naccess_token=", http.StatusRequestEntityTooLarge},
		{oidc.UserInfoPath, fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(chunk), chunk),
			http.StatusRequestEntityTooLarge},
		{oidc.SignInPath, "Content-Length: 100000\r\n\r\nemail=", 0}, // the page's own refusal
	} {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second)) // a wait fails the test rather than stall it
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n%s",
			c.path, c.body)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		what := c.path + " " + c.body[:strings.Index(c.body, ":")]
		if err != nil {
			t.Errorf("%s: no answer to a body over the limit: %v", what, err)
			continue
		}
		if c.status != 0 && resp.StatusCode != c.status || !resp.Close {
			t.Errorf("%s: %d, close %v; want %d and the connection closed", what, resp.StatusCode, resp.Close, c.status)
		}
	}
}

// TestTokenBodyCompressed: a token request whose body is compressed
// (Content-Encoding other than identity) is 415 invalid_request saying so,
// no-store, as on the JSON API, not a form read as garbage; identity is
// read.
func TestTokenBodyCompressed(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		form := wrongSecretForm(e)
		var gz bytes.Buffer
		w := gzip.NewWriter(&gz)
		w.Write([]byte(form.Encode()))
		w.Close()
		for _, fields := range [][]string{{"gzip"}, {"identity", "gzip"}} {
			resp, code, description := e.tokenRequestWith(bytes.NewReader(gz.Bytes()), http.Header{"Content-Encoding": fields})
			if resp.StatusCode != http.StatusUnsupportedMediaType || code != "invalid_request" ||
				!strings.Contains(description, "Content-Encoding") || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("a gzip body, Content-Encoding %q: %d %q %q, Cache-Control %q; want 415 invalid_request about Content-Encoding, no-store",
					fields, resp.StatusCode, code, description, resp.Header.Get("Cache-Control"))
			}
		}
		resp, code, _ := e.tokenRequestWith(strings.NewReader(form.Encode()), http.Header{"Content-Encoding": {"identity"}})
		if resp.StatusCode != http.StatusUnauthorized || code != "invalid_client" {
			t.Errorf("an identity body with a wrong secret: %d %q, want 401 invalid_client (read and refused)", resp.StatusCode, code)
		}
	})
}

// TestTokenEndpointRefusesRepeatedParameters: a parameter given twice —
// in the body, or in the query and the body — is 400 invalid_request (RFC
// 6749 §3.2), and the code is not redeemed: the endpoint's own checks read
// the first value and the library the last, so one request must not carry
// two.
func TestTokenEndpointRefusesRepeatedParameters(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("dup@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		r := e.rp(c, secret)
		verifier := oauth2.GenerateVerifier()
		code := r.login(t, e.browser(), "dup@example.org", "s", "n", verifier)
		form := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {rpCallback}, "code_verifier": {verifier}}
		for name, where := range map[string]struct{ query, body url.Values }{
			"twice in the body":          {nil, url.Values{"code": {"not-the-code", code}}},
			"in the query and the body":  {url.Values{"code": {"not-the-code"}}, url.Values{"code": {code}}},
			"grant type twice":           {nil, url.Values{"code": {code}, "grant_type": {"refresh_token"}}},
			"another client's client_id": {nil, url.Values{"code": {code}, "client_id": {"someone-else"}}},
		} {
			body := url.Values{}
			for k, vs := range form {
				body[k] = append([]string(nil), vs...)
			}
			for k, vs := range where.body {
				body[k] = append(body[k], vs...)
			}
			target := e.srv.URL + oidc.TokenPath
			if where.query != nil {
				target += "?" + where.query.Encode()
			}
			req, _ := http.NewRequest("POST", target, strings.NewReader(body.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(c.ID, secret)
			resp, errCode := e.oauthCall(req)
			if resp.StatusCode != http.StatusBadRequest || errCode != "invalid_request" {
				t.Errorf("%s: %d %q; want 400 invalid_request", name, resp.StatusCode, errCode)
			}
		}
		// Still unredeemed: the one right request gets its tokens.
		if tok, idt := r.exchange(t, code, verifier); tok.AccessToken == "" || idt.Subject == "" {
			t.Errorf("the code after the refused requests: %+v", tok)
		}
	})
}

// TestRefreshKeepsItsScope: a refresh that names a scope (RFC 6749 §6)
// names the one granted, in any order and less the scopes authd does not
// know (dropped, as at the authorization endpoint: a client resending its
// configured list is not refused): more is invalid_scope, and so is less
// (no narrower tokens are issued, and a client that asked for less must
// not believe it got less). A rotated token is reuse whatever its scope.
func TestRefreshKeepsItsScope(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.user("scope@example.org")
		c, secret := e.client("app", authd.ClientConfidential, true)
		_, tok := e.signedInWithIDToken(e.rp(c, secret, "offline_access", "profile"), "scope@example.org")
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token")
		}
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.ID)+":"+url.QueryEscape(secret)))
		refresh := func(scope string) (*http.Response, string) {
			resp, code, _ := e.rawTokenRequest(url.Values{"grant_type": {"refresh_token"},
				"refresh_token": {tok.RefreshToken}, "scope": {scope}}, basic)
			return resp, code
		}
		for _, scope := range []string{"openid offline_access email", "openid", "profile"} {
			if resp, code := refresh(scope); resp.StatusCode != http.StatusBadRequest || code != "invalid_scope" {
				t.Errorf("refresh with scope %q: %d %q, want 400 invalid_scope", scope, resp.StatusCode, code)
			}
		}
		// Each refusal is on the session's trail (a holder probing a token
		// with scopes is seen).
		refused, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventTokenRefreshed,
			Result: authd.ResultFailure, Limit: 10})
		if err != nil || len(refused) != 3 || refused[0].FailureReason != "scope not granted" {
			t.Errorf("token_refreshed failures after three refused scopes: %d %v", len(refused), err)
		}
		if resp, code := refresh("profile offline_access openid"); resp.StatusCode != http.StatusOK {
			t.Errorf("refresh with the granted scope in another order, and profile: %d %q, want 200", resp.StatusCode, code)
		}
		// The token is rotated now: past the grace, presenting it again is
		// reuse whatever scope comes with it (the session ends), never an
		// invalid_scope that names the grant.
		e.clock.Advance(time.Minute)
		if resp, code := refresh("openid"); resp.StatusCode != http.StatusBadRequest || code != "invalid_grant" {
			t.Errorf("a rotated token with another scope: %d %q, want 400 invalid_grant", resp.StatusCode, code)
		}
		reused, err := e.store.SecurityLogs(context.Background(), authd.SecurityLogFilter{EventType: authd.EventRefreshTokenReuse, Limit: 10})
		if err != nil || len(reused) != 1 {
			t.Errorf("refresh_token_reuse rows: %+v %v, want the replay logged as reuse", reused, err)
		}
	})
}

// TestUnservedGrantTypes: a grant authd does not serve is
// unsupported_grant_type whichever it is (the library answered some with
// unauthorized_client, as if this client alone lacked them), and every
// answer carries Pragma: no-cache beside Cache-Control: no-store (RFC 6749
// §5.1).
func TestUnservedGrantTypes(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		c, secret := e.client("app", authd.ClientConfidential, true)
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.ID)+":"+url.QueryEscape(secret)))
		for _, grant := range []string{"client_credentials", "password", "implicit",
			"urn:ietf:params:oauth:grant-type:token-exchange", "urn:ietf:params:oauth:grant-type:device_code",
			"urn:ietf:params:oauth:grant-type:jwt-bearer"} {
			resp, code, _ := e.rawTokenRequest(url.Values{"grant_type": {grant}}, basic)
			if resp.StatusCode != http.StatusBadRequest || code != "unsupported_grant_type" {
				t.Errorf("grant_type=%s: %d %q, want 400 unsupported_grant_type", grant, resp.StatusCode, code)
			}
			if resp.Header.Get("Pragma") != "no-cache" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("grant_type=%s: Pragma %q, Cache-Control %q", grant, resp.Header.Get("Pragma"), resp.Header.Get("Cache-Control"))
			}
		}
		// The refusals before the library's (a query string) too.
		resp, err := http.Post(e.srv.URL+oidc.TokenPath+"?x=1", "application/x-www-form-urlencoded", strings.NewReader("grant_type=refresh_token"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Pragma") != "no-cache" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("a token request with a query string: %d, Pragma %q, Cache-Control %q", resp.StatusCode,
				resp.Header.Get("Pragma"), resp.Header.Get("Cache-Control"))
		}
	})
}
