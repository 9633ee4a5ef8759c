// Command resource-server is a tiny service whose GET /hello answers only
// the holders of a valid, unrevoked authd access token: the verify package
// in a few lines.
//
//	AUTHD_URL=http://127.0.0.1:8080 AUTHD_SERVICE_TOKEN=… go run ./examples/resource-server
//	curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:9090/hello
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/authd/authd/verify"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// run serves until SIGINT or SIGTERM, then shuts down: the server drains
// its requests, and the verifier closes its feed connection.
func run() error {
	stop, cancelStop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancelStop()
	authd := env("AUTHD_URL", "http://127.0.0.1:8080")
	// New waits for authd (starting, restarting) as long as this lasts.
	ctx, cancel := context.WithTimeout(stop, 30*time.Second)
	defer cancel()
	v, err := verify.New(ctx, verify.Options{
		Issuer:       env("AUTHD_ISSUER", authd),
		Audience:     env("AUTHD_AUDIENCE", "authd"),
		URL:          authd, // the JWKS, the revocation feed and introspection under it
		ServiceToken: os.Getenv("AUTHD_SERVICE_TOKEN"),
		// authd's access-token algorithm only: its ID-token keys (RS256)
		// are in the same JWKS and must never verify a token here.
		Algorithms: []string{env("AUTHD_SIGNING_ALG", "EdDSA")},
	})
	if err != nil {
		return err
	}
	defer v.Close()

	mux := http.NewServeMux()
	mux.Handle("GET /hello", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "hello %s (session %s)\n", claims.Subject, claims.SessionID)
	})))
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v.Stats())
	})
	addr := env("ADDR", "127.0.0.1:9090")
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Printf("resource server on http://%s, checking tokens of %s", addr, authd)
	select {
	case err := <-served:
		return err
	case <-stop.Done():
		cancelStop() // a second signal stops the process at once
	}
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	return srv.Shutdown(shutdown)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
