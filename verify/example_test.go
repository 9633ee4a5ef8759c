package verify_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/authd/authd/verify"
)

// A resource server protecting its API with authd's tokens: the README's
// snippet (compiled by go test, so that it cannot rot).
func Example() {
	// New waits for authd (the JWKS and the feed) until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := verify.New(ctx, verify.Options{
		Issuer:       "https://auth.example.org",
		Audience:     "authd",
		URL:          "https://auth.example.org", // AUTHD_PUBLIC_URL: the JWKS, feed and introspection URLs
		ServiceToken: os.Getenv("AUTHD_SERVICE_TOKEN"),
		Algorithms:   []string{"EdDSA"}, // AUTHD_SIGNING_ALG: no ID-token key verifies here
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	http.Handle("/api/", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFrom(r.Context())
		fmt.Fprintln(w, "hello", claims.Subject)
	})))
	log.Fatal(http.ListenAndServe(":9090", nil))
}

// A handler behind Middleware, tested alone: NewContext puts the claims
// Middleware would have verified where ClaimsFrom finds them.
func ExampleNewContext() {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFrom(r.Context())
		fmt.Fprintln(w, "hello", claims.Subject, "second factor:", claims.HasAMR("mfa"))
	})
	req := httptest.NewRequest("GET", "/api/hello", nil)
	req = req.WithContext(verify.NewContext(req.Context(), &verify.Claims{Subject: "user-1", AMR: []string{"pwd", "otp", "mfa"}}))
	rec := httptest.NewRecorder()
	hello.ServeHTTP(rec, req)
	fmt.Print(rec.Body.String())
	// Output: hello user-1 second factor: true
}

// An ErrorHandler that answers refusals in the service's own JSON, with
// the status and challenge Middleware would give (Challenge), so that a
// client still learns to refresh its token or to step up its login.
func ExampleChallenge() {
	ownFormat := func(w http.ResponseWriter, r *http.Request, err error) {
		status, challenge := verify.Challenge(err)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1") // the revocation state is unknown for now
		} else {
			w.Header().Set("WWW-Authenticate", challenge)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"ok":false,"status":%d}`, status)
	}
	for _, err := range []error{verify.ErrExpired, verify.ErrMFARequired, verify.ErrUnavailable} {
		rec := httptest.NewRecorder()
		ownFormat(rec, httptest.NewRequest("GET", "/api/orders", nil), err)
		fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	// Output:
	// 401 Bearer error="invalid_token"
	// 401 Bearer error="insufficient_user_authentication", error_description="a second factor is required"
	// 503
}
