// Command resource-server is a tiny service whose GET /hello answers only
// the holders of a valid, unrevoked authd access token: the verify package
// in a few lines.
//
//	AUTHD_URL=http://127.0.0.1:8080 AUTHD_SERVICE_TOKEN=… go run ./examples/resource-server
//	curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:9090/hello
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/authd/authd/verify"
)

func main() {
	authd := env("AUTHD_URL", "http://127.0.0.1:8080")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := verify.New(ctx, verify.Options{
		Issuer:         env("AUTHD_ISSUER", authd),
		Audience:       env("AUTHD_AUDIENCE", "authd"),
		JWKSURL:        authd + "/.well-known/jwks.json",
		RevocationsURL: authd + "/v1/auth/revocations",
		ServiceToken:   os.Getenv("AUTHD_SERVICE_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	http.Handle("GET /hello", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "hello %s (session %s)\n", claims.Subject, claims.SessionID)
	})))
	http.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%+v\n", v.Stats()) })
	addr := env("ADDR", "127.0.0.1:9090")
	log.Printf("resource server on http://%s, checking tokens of %s", addr, authd)
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
