package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/authd/authd"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	clientKey
)

// RequestID is the id the middleware gave the request of ctx (its
// X-Request-Id and its log line's request_id), "" outside one.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// client returns who made the request, as the middleware worked it out.
func client(r *http.Request) authd.Client {
	c, _ := r.Context().Value(clientKey).(authd.Client)
	return c
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// deadlines of the revocation stream).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// middleware wraps every request: request id, client, security headers,
// CORS, panic recovery, and one log line.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		b := make([]byte, 8)
		rand.Read(b)
		id := hex.EncodeToString(b)
		c := authd.Client{IP: s.clientIP(r), UserAgent: r.UserAgent()}
		ctx := context.WithValue(context.WithValue(r.Context(), requestIDKey, id), clientKey, c)
		r = r.WithContext(ctx)

		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if s.opts.HSTS {
			h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		}

		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			aborted := p == http.ErrAbortHandler
			if p != nil && !aborted {
				s.logger.ErrorContext(ctx, "panic", "request_id", id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if sw.status == 0 {
					s.writeError(sw, r, fmt.Errorf("panic: %v", p))
				}
			}
			if aborted {
				// The response was cut on purpose: still one log line and
				// one observation, then the server closes the connection.
				defer panic(p)
			}
			elapsed := time.Since(start)
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			// Only the path: query strings may carry a page's token.
			attrs := []any{"request_id", id, "method", r.Method, "route", route,
				"path", r.URL.Path, "status", sw.status, "bytes", sw.bytes,
				"duration_ms", float64(elapsed.Microseconds()) / 1000, "ip", c.IP}
			if aborted {
				attrs = append(attrs, "aborted", true)
			} else if r.Context().Err() != nil {
				// The connection closed while the handler ran (the client
				// left, or a stop's drain closed it): the status was never
				// sent.
				attrs = append(attrs, "conn_closed", true)
			}
			s.logger.InfoContext(ctx, "request", attrs...)
			if s.opts.Observe != nil {
				s.opts.Observe(route, sw.status, elapsed)
			}
		}()
		if s.cors(sw, r) {
			return
		}
		next.ServeHTTP(sw, r)
	})
}

// cors answers preflights and marks responses to allowed origins. It
// returns true when it has answered the request.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	w.Header().Add("Vary", "Origin")
	if !slices.Contains(s.opts.CORSOrigins, origin) {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id, WWW-Authenticate")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// clientIP is the peer's address or, when the peer is a trusted proxy, the
// rightmost X-Forwarded-For address that is not itself a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := forwardedAddr(hops[i])
		if err != nil {
			break // a forged or broken entry: trust nothing further left
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a.String()
		}
		peer = a
	}
	return peer.String()
}

// forwardedAddr reads one X-Forwarded-For entry: an address, or one with
// the client's port ("192.0.2.1:4711", "[2001:db8::1]:4711"), as some load
// balancers write them (unread, every client behind one would count as the
// proxy, in the rate limits and the audit).
func forwardedAddr(hop string) (netip.Addr, error) {
	hop = strings.TrimSpace(hop)
	a, err := netip.ParseAddr(hop)
	if err == nil {
		return a, nil
	}
	ap, err := netip.ParseAddrPort(hop)
	return ap.Addr(), err
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
