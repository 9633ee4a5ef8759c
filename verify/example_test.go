package verify_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/authd/authd/verify"
)

// A resource server protecting its API with authd's tokens: the README's
// snippet (compiled by go test, so that it cannot rot).
func Example() {
	v, err := verify.New(context.Background(), verify.Options{
		Issuer:         "https://auth.example.org",
		Audience:       "authd",
		JWKSURL:        "https://auth.example.org/.well-known/jwks.json",
		RevocationsURL: "https://auth.example.org/v1/auth/revocations",
		ServiceToken:   os.Getenv("AUTHD_SERVICE_TOKEN"),
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
