package oidc_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/oidc"
)

// rawTokenRequest posts form to the token endpoint with the Authorization
// header given ("" for none) and returns the response, its body read: the
// OAuth error code and description.
func (e *env) rawTokenRequest(form url.Values, authorization string) (*http.Response, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+oidc.TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", clientAuthUA)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Errorf("token endpoint's %d: not the JSON error shape: %q", resp.StatusCode, body)
	}
	return resp, out.Error, out.Description
}

func codeForm() url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {"no-such-code"}, "redirect_uri": {rpCallback},
		"code_verifier": {strings.Repeat("v", 43)}}
}

// TestTokenBodyTooLarge: a token request's body over 64 KiB is 413 (SPEC
// §5) in the OAuth error shape, no-store, not the library's 400 "error
// parsing form"; one just under the limit is read.
func TestTokenBodyTooLarge(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		app, _ := e.client("app", authd.ClientConfidential, true)
		form := codeForm()
		form.Set("client_id", app.ID)
		form.Set("client_secret", "wrong")
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
