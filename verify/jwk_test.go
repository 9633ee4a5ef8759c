package verify

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseJWK: no JWKS entry makes the parser panic, and what it accepts
// is a key of a supported kind under an algorithm that fits it.
func FuzzParseJWK(f *testing.F) {
	for _, s := range []string{
		`{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		`{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`,
		`{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}`,
		`{"kty":"oct","kid":"k","k":"c2VjcmV0"}`,
		`{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"HS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		`null`, `[]`, `{}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseJWK([]byte(s))
		if err != nil {
			return
		}
		if k.kid == "" || k.key == nil || strings.HasPrefix(k.alg, "HS") || k.alg == "none" {
			t.Fatalf("accepted %s as %+v", s, k)
		}
	})
}

func TestParseJWKRefusesConfusion(t *testing.T) {
	for _, s := range []string{
		`{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"HS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		`{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"none","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		`{"kty":"oct","kid":"k","k":"c2VjcmV0","alg":"HS256"}`,
		`{"kty":"OKP","crv":"Ed25519","kid":"k","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		`{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
		`{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}`,
	} {
		if k, err := parseJWK([]byte(s)); err == nil {
			t.Errorf("accepted %s as %+v", s, k)
		}
	}
}

// FuzzFeedEvent: no event data from the feed makes the verifier panic, and
// a malformed one is refused (the connection is then dropped and resumed).
func FuzzFeedEvent(f *testing.F) {
	for _, s := range []string{`{"id":1,"sid":"s","exp":1}`, `{"id":2,"sub":"u","before":5,"exp":9}`,
		`{"id":0,"sid":"s"}`, `{"id":3,"sid":"s","sub":"u"}`, `{"id":1e400}`, `[]`, ``} {
		f.Add(s, "")
		f.Add(s, "1.0123456789abcdef")
	}
	f.Fuzz(func(t *testing.T, data, id string) {
		v := &Verifier{revs: newRevocations(defaultMaxRevocations), now: time.Now}
		if err := v.dispatch("", data, id, func() {}); err == nil && data != "" && v.revs.lastID <= 0 {
			t.Fatalf("accepted %q without an id", data)
		}
		if r := v.revs.resumeFrom; len(r) > maxEventID || strings.ContainsAny(r, "\x00\r\n") {
			t.Fatalf("would resume with Last-Event-ID %q", r)
		}
	})
}

// TestRevokedIDBounded: an event naming a session or user by more than
// maxRevokedID bytes is malformed and not kept, so that MaxRevocations
// bounds the memory, not only the count; an id of that length is kept.
func TestRevokedIDBounded(t *testing.T) {
	v := &Verifier{revs: newRevocations(defaultMaxRevocations), now: time.Now}
	long := strings.Repeat("s", maxRevokedID+1)
	for i, data := range []string{`{"id":1,"sid":"` + long + `","exp":9999999999}`, `{"id":2,"sub":"` + long + `","before":5}`} {
		if err := v.dispatch("", data, "", func() {}); err == nil {
			t.Errorf("event %d with a %d-byte id accepted", i+1, len(long))
		}
	}
	if err := v.dispatch("", `{"id":3,"sid":"`+long[1:]+`","exp":9999999999}`, "", func() {}); err != nil {
		t.Errorf("an id of %d bytes refused: %v", maxRevokedID, err)
	}
	if n := len(v.revs.sessions) + len(v.revs.users); n != 1 {
		t.Errorf("%d revocations kept, want the one within the bound", n)
	}
}

// TestFreshFor: a JWKS answer is fresh for its max-age less its Age (a
// cache on the way held it that long), never less than nothing.
func TestFreshFor(t *testing.T) {
	for _, c := range []struct {
		cc, age string
		want    time.Duration
	}{
		{"max-age=300", "", 300 * time.Second},
		{"max-age=300", "0", 300 * time.Second},
		{"max-age=300", "290", 10 * time.Second},
		{"max-age=300", "300", 0},
		{"max-age=300", "301", 0},
		{"max-age=300", "99999999999999999999999", 0}, // past uint64: as old as can be
		{"max-age=300", "-5", 300 * time.Second},      // not an Age: ignored
		{"max-age=300", "x", 300 * time.Second},
		{"max-age=300", "1.5", 300 * time.Second},
		{"", "60", defaultJWKSMaxAge - time.Minute},
	} {
		h := http.Header{"Cache-Control": {c.cc}}
		if c.age != "" {
			h.Set("Age", c.age)
		}
		if got := freshFor(h); got != c.want {
			t.Errorf("freshFor(Cache-Control %q, Age %q) = %s, want %s", c.cc, c.age, got, c.want)
		}
	}
}

// TestMaxAge: Cache-Control's max-age, capped at maxJWKSMaxAge however
// large (a Duration of it would overflow into a negative one: a set stale
// at once).
func TestMaxAge(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                                defaultJWKSMaxAge,
		"public, max-age=300":             5 * time.Minute,
		"max-age=0":                       0,
		"no-store":                        refetchInterval,
		"max-age=-5":                      defaultJWKSMaxAge,
		"max-age=x":                       defaultJWKSMaxAge,
		"max-age=86401":                   maxJWKSMaxAge,
		"max-age=9223372037":              maxJWKSMaxAge, // × 1e9 wraps past int64
		"max-age=9999999999999":           maxJWKSMaxAge,
		"max-age=99999999999999999999999": maxJWKSMaxAge,
	} {
		if got := maxAge(cc); got != want {
			t.Errorf("maxAge(%q) = %s, want %s", cc, got, want)
		}
	}
}
