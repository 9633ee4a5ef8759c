package verify

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		v := &Verifier{revs: newRevocations(), now: time.Now}
		if err := v.dispatch("", data, func() {}); err == nil && data != "" && v.revs.lastID <= 0 {
			t.Fatalf("accepted %q without an id", data)
		}
	})
}

// TestSilentFeedIsDead: a feed connection that says nothing for
// feedSilence (no heartbeat) is dropped and resumed. Not parallel: it
// shortens feedSilence, and parallel tests start only after it.
func TestSilentFeedIsDead(t *testing.T) {
	defer func(d time.Duration) { feedSilence = d }(feedSilence)
	feedSilence = 50 * time.Millisecond
	var connections atomic.Int64
	jwks := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			io.WriteString(w, jwks)
			return
		}
		connections.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: synced\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then silence
	}))
	defer srv.Close()
	v, err := New(context.Background(), Options{Issuer: "i", Audience: "a", JWKSURL: srv.URL + "/jwks",
		RevocationsURL: srv.URL + "/feed", ServiceToken: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for deadline := time.Now().Add(5 * time.Second); connections.Load() < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections: a silent feed was not dropped and resumed", connections.Load())
		}
	}
	if st := v.Stats(); st.Reconnects < 2 {
		t.Errorf("stats %+v, want reconnections counted", st)
	}
}
