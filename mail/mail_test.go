package mail

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
)

// inbox is an in-process SMTP server's backend that keeps what it receives.
type inbox struct {
	mu       sync.Mutex
	messages []string
	authed   []string
	refuse   error
}

func (b *inbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{b: b}, nil }

type session struct {
	b    *inbox
	user string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "mailer" || pass != "s3cret" {
			return errors.New("bad credentials")
		}
		s.user = user
		return nil
	}), nil
}
func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.b.refuse
}
func (s *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.messages = append(s.b.messages, string(body))
	s.b.authed = append(s.b.authed, s.user)
	return nil
}
func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

// relayName is a relay that is not on this machine, as far as the mailer
// can tell from the URL; dialTo points it at an in-process server.
const relayName = "relay.example.org"

// dialTo dials addr whatever address the mailer asks for.
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// rawRelay is a scripted SMTP server on 127.0.0.1, for what a well-behaved
// server library will not do. It offers the EHLO extensions given, records
// every command line, refuses AUTH, accepts every other command, and after
// a message's final dot runs afterData and hangs up (nil: answers 250 and
// goes on).
type rawRelay struct {
	addr       string
	extensions []string
	afterData  func(net.Conn)
	pool       *x509.CertPool // trusts its certificate, when it speaks TLS

	mu        sync.Mutex
	commands  []string
	rcptReply string // to RCPT TO; empty: 250
}

func startRawRelay(t *testing.T, extensions []string, afterData func(net.Conn)) *rawRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveRawRelay(t, ln, extensions, afterData)
}

// startRawTLSRelay is a rawRelay that speaks TLS from the first byte
// (smtps), with a certificate for 127.0.0.1 that its pool trusts.
func startRawTLSRelay(t *testing.T, afterData func(net.Conn)) *rawRelay {
	t.Helper()
	cert, pool := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	r := serveRawRelay(t, ln, []string{"8BITMIME"}, afterData)
	r.pool = pool
	return r
}

func serveRawRelay(t *testing.T, ln net.Listener, extensions []string, afterData func(net.Conn)) *rawRelay {
	r := &rawRelay{addr: ln.Addr().String(), extensions: extensions, afterData: afterData}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { r.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return r
}

func (r *rawRelay) serve(c net.Conn) {
	defer c.Close()
	rd := bufio.NewReader(c)
	fmt.Fprint(c, "220 relay.example.org ESMTP\r\n")
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		r.mu.Lock()
		r.commands = append(r.commands, line)
		r.mu.Unlock()
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "EHLO":
			lines := append([]string{"relay.example.org"}, r.extensions...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				fmt.Fprintf(c, "250%s%s\r\n", sep, l)
			}
		case "AUTH":
			fmt.Fprint(c, "535 5.7.8 authentication failed\r\n")
		case "DATA":
			fmt.Fprint(c, "354 end with <CRLF>.<CRLF>\r\n")
			for {
				l, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			if r.afterData != nil {
				r.afterData(c)
				return
			}
			fmt.Fprint(c, "250 2.0.0 queued\r\n")
		case "QUIT":
			fmt.Fprint(c, "221 2.0.0 bye\r\n")
			return
		case "RCPT":
			r.mu.Lock()
			reply := cmp.Or(r.rcptReply, "250 2.1.5 ok")
			r.mu.Unlock()
			fmt.Fprint(c, reply+"\r\n")
		default:
			fmt.Fprint(c, "250 2.0.0 ok\r\n")
		}
	}
}

// sent returns the command lines the relay received that begin with verb.
func (r *rawRelay) sent(verb string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.commands {
		if strings.HasPrefix(strings.ToUpper(c), verb) {
			out = append(out, c)
		}
	}
	return out
}

// selfSigned returns a certificate for 127.0.0.1 and relayName and a pool
// trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{relayName}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// startSMTP runs an SMTP server on 127.0.0.1; implicit selects TLS from the
// first byte (smtps) instead of STARTTLS.
func startSMTP(t *testing.T, implicit bool) (*inbox, string, *x509.CertPool) {
	t.Helper()
	cert, pool := selfSigned(t)
	b, addr := serveSMTP(t, &tls.Config{Certificates: []tls.Certificate{cert}}, implicit)
	return b, addr, pool
}

// startPlainSMTP runs an SMTP server on 127.0.0.1 that offers no STARTTLS,
// as a relay does when someone on the path strips the offer.
func startPlainSMTP(t *testing.T) (*inbox, string) {
	t.Helper()
	return serveSMTP(t, nil, false)
}

func serveSMTP(t *testing.T, tlsConfig *tls.Config, implicit bool) (*inbox, string) {
	t.Helper()
	b := &inbox{}
	srv := smtp.NewServer(b)
	srv.Domain = "localhost"
	srv.TLSConfig = tlsConfig
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b, ln.Addr().String()
}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.messages)
}

func renderer(t *testing.T) *Renderer {
	r, err := NewRenderer("https://auth.example.org", "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSMTPStartTLSWithAuth(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		name := map[bool]string{false: "smtp+STARTTLS", true: "smtps"}[implicit]
		t.Run(name, func(t *testing.T) {
			box, addr, pool := startSMTP(t, implicit)
			scheme := map[bool]string{false: "smtp", true: "smtps"}[implicit]
			m, err := NewSMTP(scheme+"://mailer:s3cret@"+addr, "authd <no-reply@example.org>", renderer(t))
			if err != nil {
				t.Fatal(err)
			}
			m.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			link := "https://auth.example.org/verify-email?token=abc"
			if err := m.Send(context.Background(), authd.Mail{Kind: authd.MailVerifyEmail, To: "alice@example.org", Link: link}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			box.mu.Lock()
			defer box.mu.Unlock()
			if len(box.messages) != 1 || box.authed[0] != "mailer" {
				t.Fatalf("received %d messages, authenticated as %v", len(box.messages), box.authed)
			}
			msg, err := mail.ReadMessage(strings.NewReader(box.messages[0]))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Header
			if h.Get("Message-Id") == "" || h.Get("Date") == "" || h.Get("Subject") != "Confirm your email address" ||
				!strings.Contains(h.Get("To"), "alice@example.org") || !strings.Contains(h.Get("From"), "no-reply@example.org") ||
				!strings.HasPrefix(h.Get("Content-Type"), "multipart/alternative") {
				t.Errorf("headers %v", h)
			}
			body, _ := io.ReadAll(msg.Body)
			if !strings.Contains(string(body), "text/plain") || !strings.Contains(string(body), "text/html") ||
				!strings.Contains(string(body), "verify-email?token=3Dabc") && !strings.Contains(string(body), "verify-email?token=abc") {
				t.Errorf("body lacks a part or the link:\n%s", body)
			}
		})
	}
}

func TestSMTPFailures(t *testing.T) {
	box, addr, pool := startSMTP(t, false)
	box.refuse = &smtp.SMTPError{Code: 550, Message: "mailbox unavailable"}
	m, _ := NewSMTP("smtp://mailer:s3cret@"+addr, "authd <no-reply@example.org>", renderer(t))
	m.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := m.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordChanged, To: "a@example.org"}); err == nil {
		t.Error("Send succeeded although the server refused the recipient")
	}
	bad, _ := NewSMTP("smtp://mailer:wrong@"+addr, "authd <no-reply@example.org>", renderer(t))
	bad.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	box.refuse = nil
	if err := bad.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordChanged, To: "a@example.org"}); err == nil {
		t.Error("Send succeeded with wrong credentials")
	}
	// An untrusted certificate is refused rather than skipped.
	untrusting, _ := NewSMTP("smtp://mailer:s3cret@"+addr, "authd <no-reply@example.org>", renderer(t))
	if err := untrusting.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordChanged, To: "a@example.org"}); err == nil {
		t.Error("Send trusted an unknown certificate while authenticating")
	}
	for _, u := range []string{"http://x", "smtp://host:port"} {
		if _, err := NewSMTP(u, "a@b.c", renderer(t)); err == nil {
			t.Errorf("NewSMTP(%q) accepted", u)
		}
	}
}

// TestSMTPRequiresSTARTTLSExceptToLoopback: a relay elsewhere must do
// STARTTLS, or nothing is sent, unless the URL opts out; a relay on this
// machine may talk plain text.
func TestSMTPRequiresSTARTTLSExceptToLoopback(t *testing.T) {
	mail := authd.Mail{Kind: authd.MailPasswordReset, To: "alice@example.org",
		Link: "https://auth.example.org/reset-password?token=secret"}
	tests := []struct {
		name     string
		url      string // ADDR is the server's address, PORT its port
		starttls bool   // the server offers STARTTLS
		remote   bool   // the URL names relayName, dialled at the server
		want     bool   // delivered
		untaught bool   // the mailer is not taught the server's certificate
	}{
		{"remote relay without STARTTLS", "smtp://" + relayName + ":PORT", false, true, false, false},
		{"remote relay without STARTTLS, opted out", "smtp://" + relayName + ":PORT?starttls=opportunistic", false, true, true, false},
		{"remote relay with STARTTLS", "smtp://" + relayName + ":PORT", true, true, true, false},
		{"127.0.0.1 without STARTTLS", "smtp://ADDR", false, false, true, false},
		{"localhost without STARTTLS", "smtp://localhost:PORT", false, false, true, false},
		// A local Postfix's snakeoil certificate: no one is on the path to
		// a relay on this machine, which may talk plain text anyway.
		{"127.0.0.1 with STARTTLS, a certificate no one vouches for", "smtp://ADDR", true, false, true, true},
		{"a remote relay's certificate no one vouches for", "smtp://" + relayName + ":PORT", true, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var box *inbox
			var addr string
			var pool *x509.CertPool
			if tt.starttls {
				box, addr, pool = startSMTP(t, false)
			} else {
				box, addr = startPlainSMTP(t)
			}
			_, port, _ := net.SplitHostPort(addr)
			u := strings.NewReplacer("ADDR", addr, "PORT", port).Replace(tt.url)
			m, err := NewSMTP(u, "authd <no-reply@example.org>", renderer(t))
			if err != nil {
				t.Fatal(err)
			}
			if pool != nil && !tt.untaught {
				m.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: relayName})
			}
			if tt.remote || strings.Contains(u, "localhost") {
				// localhost may resolve to ::1 first, where nothing listens.
				m.dial = dialTo(addr)
			}
			err = m.Send(context.Background(), mail)
			if got := box.count(); tt.want && (err != nil || got != 1) {
				t.Errorf("Send = %v, %d delivered; want delivered once", err, got)
			} else if !tt.want && (err == nil || got != 0 || !strings.Contains(err.Error(), "STARTTLS") && !tt.untaught) {
				t.Errorf("Send = %v, %d delivered; want a STARTTLS error and nothing sent in plain text", err, got)
			}
		})
	}
}

// TestSMTPCredentialsOnlyOverTLS: a relay that offers no STARTTLS (or
// whose offer someone on the path removed) and only AUTH CRAM-MD5, whose
// exchange can be cracked offline, never sees an AUTH command, and no mail
// goes out unauthenticated either.
func TestSMTPCredentialsOnlyOverTLS(t *testing.T) {
	for name, url := range map[string]string{
		"opted out of STARTTLS": "smtp://mailer:s3cret@" + relayName + ":PORT?starttls=opportunistic",
		"loopback relay":        "smtp://mailer:s3cret@ADDR",
	} {
		t.Run(name, func(t *testing.T) {
			relay := startRawRelay(t, []string{"AUTH CRAM-MD5", "8BITMIME"}, nil)
			_, port, _ := net.SplitHostPort(relay.addr)
			m, err := NewSMTP(strings.NewReplacer("ADDR", relay.addr, "PORT", port).Replace(url),
				"authd <no-reply@example.org>", renderer(t))
			if err != nil {
				t.Fatal(err)
			}
			m.dial = dialTo(relay.addr)
			err = m.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordReset, To: "alice@example.org",
				Link: "https://auth.example.org/reset-password?token=secret"})
			if err == nil || !strings.Contains(err.Error(), "TLS") {
				t.Errorf("Send = %v; want an error saying the credentials need TLS", err)
			}
			if got := relay.sent("AUTH"); len(got) != 0 {
				t.Errorf("the relay received %q over plain text", got)
			}
			if got := relay.sent("MAIL"); len(got) != 0 {
				t.Errorf("the mail went out without authenticating: %q", got)
			}
		})
	}
}

// TestSMTPDeliveredDespiteFailureAfter: a relay that accepts the message
// (250 after its final dot) and then hangs up, so that RSET and QUIT fail,
// has the mail: Send reports it sent, or the outbox would send it again
// with a new link that voids the delivered one. The failure is logged.
func TestSMTPDeliveredDespiteFailureAfter(t *testing.T) {
	relay := startRawRelay(t, []string{"8BITMIME"}, func(c net.Conn) {
		fmt.Fprint(c, "250 2.0.0 queued as 4F2A\r\n")
	})
	m, err := NewSMTP("smtp://"+relay.addr, "authd <no-reply@example.org>", renderer(t))
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	m.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	err = m.Send(context.Background(), authd.Mail{Kind: authd.MailVerifyEmail, To: "alice@example.org",
		Link: "https://auth.example.org/verify-email?token=secret"})
	if err != nil {
		t.Errorf("Send = %v; want nil, the relay accepted the mail", err)
	}
	if got := relay.sent("DATA"); len(got) != 1 {
		t.Fatalf("the relay received DATA %d times, want once", len(got))
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "verify_email") {
		t.Errorf("no warning names the mail accepted despite the failure:\n%s", logs.String())
	}
}

// TestSMTPSendBoundedByContext: a relay that stops answering in the middle
// of the conversation (here, after the message's final dot) cannot hold a
// send past its context's deadline, which the outbox keeps within the
// mail's lease.
func TestSMTPSendBoundedByContext(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		t.Run(map[bool]string{false: "smtp", true: "smtps"}[implicit], func(t *testing.T) {
			stall := func(c net.Conn) { io.Copy(io.Discard, c) } // until the client hangs up
			var relay *rawRelay
			u := "smtp://"
			if implicit {
				relay = startRawTLSRelay(t, stall)
				u = "smtps://"
			} else {
				relay = startRawRelay(t, []string{"8BITMIME"}, stall)
			}
			m, err := NewSMTP(u+relay.addr, "authd <no-reply@example.org>", renderer(t))
			if err != nil {
				t.Fatal(err)
			}
			if relay.pool != nil {
				m.SetTLSConfig(&tls.Config{RootCAs: relay.pool})
			}
			// Long enough for the conversation up to the stall on a loaded
			// machine: the deadline must cut the stall, not the dialogue.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err = m.Send(ctx, authd.Mail{Kind: authd.MailPasswordChanged, To: "alice@example.org"})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Send = %v; want it cut short by its context's deadline", err)
			}
			if got := relay.sent("DATA"); len(got) != 1 {
				t.Errorf("the relay received DATA %d times; want the stall to come after it", len(got))
			}
			if err == nil || !strings.Contains(err.Error(), "and delivered it") {
				t.Errorf("Send = %v; want it to say that the relay may have delivered the mail", err)
			}
		})
	}
}

// TestSMTPRecipientRefusedForGood: the relay's permanent refusal of the
// recipient for what the address is (no such mailbox or domain) makes the
// mail undeliverable, which the outbox does not try again; a refusal of
// how the relay is used (not allowed to relay), one whose reason is not
// told, or a temporary one, is retried.
func TestSMTPRecipientRefusedForGood(t *testing.T) {
	for _, c := range []struct {
		reply    string
		enhanced bool // the relay offers ENHANCEDSTATUSCODES
		want     bool
	}{
		{"550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown", true, true},
		{"550 5.1.2 Host unknown", true, true},
		{"553 5.1.3 Bad recipient address syntax", true, true},
		{"556 5.1.10 Recipient address has null MX", true, true},
		{"554 5.7.1 <alice@example.org>: Relay access denied", true, false},
		{"550 5.1.0 Address rejected", true, false},
		{"550 5.1.7 Bad sender's mailbox address", true, false},
		{"450 4.1.1 Recipient address rejected: try again later", true, false},
		{"550 5.1.1 User unknown", false, false},
		{"550 User unknown", false, false},
	} {
		t.Run(c.reply, func(t *testing.T) {
			ext := []string{"8BITMIME"}
			if c.enhanced {
				ext = append(ext, "ENHANCEDSTATUSCODES")
			}
			relay := startRawRelay(t, ext, nil)
			relay.mu.Lock()
			relay.rcptReply = c.reply
			relay.mu.Unlock()
			m, err := NewSMTP("smtp://"+relay.addr, "authd <no-reply@example.org>", renderer(t))
			if err != nil {
				t.Fatal(err)
			}
			err = m.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordChanged, To: "alice@example.org"})
			if err == nil {
				t.Fatal("Send succeeded; want the refusal")
			}
			if got := errors.Is(err, authd.ErrUndeliverable); got != c.want {
				t.Errorf("Send = %v; undeliverable %v, want %v", err, got, c.want)
			}
			if strings.Contains(err.Error(), "alice") {
				t.Errorf("Send = %v; the error holds the address", err)
			}
		})
	}
}

// TestSMTPInternationalisedAddresses: a Unicode domain goes to the relay in
// its DNS form, which every relay takes; a Unicode local part needs the
// relay's SMTPUTF8, and without it the mail is undeliverable through that
// relay before anything of it is sent.
func TestSMTPInternationalisedAddresses(t *testing.T) {
	for _, c := range []struct {
		to       string
		utf8     bool // the relay offers SMTPUTF8
		wantRcpt string
		wantMail string // a parameter MAIL FROM carries
	}{
		{"anna@bücher.example", false, "RCPT TO:<anna@xn--bcher-kva.example>", ""},
		{"jürgen@example.org", true, "RCPT TO:<jürgen@example.org>", "SMTPUTF8"},
		{"jürgen@bücher.example", true, "RCPT TO:<jürgen@xn--bcher-kva.example>", "SMTPUTF8"},
		{"jürgen@example.org", false, "", ""},
	} {
		t.Run(fmt.Sprint(c.to, c.utf8), func(t *testing.T) {
			ext := []string{"8BITMIME"}
			if c.utf8 {
				ext = append(ext, "SMTPUTF8")
			}
			relay := startRawRelay(t, ext, nil)
			m, err := NewSMTP("smtp://"+relay.addr, "authd <no-reply@example.org>", renderer(t))
			if err != nil {
				t.Fatal(err)
			}
			err = m.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordChanged, To: c.to})
			rcpt := relay.sent("RCPT")
			if c.wantRcpt == "" {
				if !errors.Is(err, authd.ErrUndeliverable) || len(rcpt) != 0 {
					t.Errorf("Send = %v, RCPT %q; want it undeliverable before any RCPT", err, rcpt)
				}
				if err != nil && strings.Contains(err.Error(), "rgen") {
					t.Errorf("Send = %v; the error holds the address", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send = %v", err)
			}
			if len(rcpt) != 1 || rcpt[0] != c.wantRcpt {
				t.Errorf("RCPT %q; want %q", rcpt, c.wantRcpt)
			}
			if from := relay.sent("MAIL"); len(from) != 1 || !strings.HasSuffix(from[0], c.wantMail) {
				t.Errorf("MAIL %q; want it to end with %q", from, c.wantMail)
			}
		})
	}
}

// TestSMTPWaitsForTheMessageToBeTaken: a relay slow to answer the final dot
// (it scans the message) is waited for past the opening's timeout, within
// the context: given up on, it may deliver the mail all the same, and the
// copy sent again carries a new link that voids the first.
func TestSMTPWaitsForTheMessageToBeTaken(t *testing.T) {
	// Long enough for the opening on a loaded machine, short beside the
	// context's deadline.
	const open = 500 * time.Millisecond
	relay := startRawRelay(t, []string{"8BITMIME"}, func(c net.Conn) {
		time.Sleep(4 * open)
		fmt.Fprint(c, "250 2.0.0 queued as 4F2A\r\n")
	})
	m, err := NewSMTP("smtp://"+relay.addr, "authd <no-reply@example.org>", renderer(t))
	if err != nil {
		t.Fatal(err)
	}
	m.openTimeout = open
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Send(ctx, authd.Mail{Kind: authd.MailPasswordChanged, To: "alice@example.org"}); err != nil {
		t.Errorf("Send = %v; want the relay's late 250 waited for", err)
	}
	if got := relay.sent("DATA"); len(got) != 1 {
		t.Errorf("the relay received DATA %d times, want once", len(got))
	}
}

// TestSMTPOpeningBounded: a relay that accepts the connection and then says
// nothing (no greeting, or no TLS handshake) is given up on after the
// opening's timeout, long before the context's deadline.
func TestSMTPOpeningBounded(t *testing.T) {
	for _, scheme := range []string{"smtp", "smtps"} {
		t.Run(scheme, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
				close(accepted)
			}()
			t.Cleanup(func() {
				ln.Close()
				for c := range accepted {
					c.Close()
				}
			})
			m, err := NewSMTP(scheme+"://"+ln.Addr().String(), "authd <no-reply@example.org>", renderer(t))
			if err != nil {
				t.Fatal(err)
			}
			m.openTimeout = 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = m.Send(ctx, authd.Mail{Kind: authd.MailPasswordChanged, To: "alice@example.org"})
			if err == nil || ctx.Err() != nil {
				t.Errorf("Send = %v (context: %v); want the opening's timeout to end it first", err, ctx.Err())
			}
		})
	}
}

// elsewhere is a connection that reports a peer on another machine, as
// when "localhost" resolves there (a hosts file, a DNS search list).
type elsewhere struct{ net.Conn }

func (elsewhere) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("192.0.2.25"), Port: 25} }

// TestSMTPLocalhostMustBeLoopback: plain text is allowed to "localhost" only
// when the connection really reaches a loopback address.
func TestSMTPLocalhostMustBeLoopback(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		// smtps://localhost: its certificate is not checked either, so the
		// address must be this machine's as well.
		var box *inbox
		var addr string
		if implicit {
			box, addr, _ = startSMTP(t, true)
		} else {
			box, addr = startPlainSMTP(t)
		}
		_, port, _ := net.SplitHostPort(addr)
		scheme := map[bool]string{false: "smtp", true: "smtps"}[implicit]
		m, err := NewSMTP(scheme+"://localhost:"+port, "authd <no-reply@example.org>", renderer(t))
		if err != nil {
			t.Fatal(err)
		}
		m.dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := dialTo(addr)(ctx, network, "")
			return elsewhere{c}, err
		}
		err = m.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordReset, To: "alice@example.org",
			Link: "https://auth.example.org/reset-password?token=secret"})
		if err == nil || !strings.Contains(err.Error(), "loopback") || box.count() != 0 {
			t.Errorf("%s: Send = %v, %d delivered; want a loopback error and nothing sent", scheme, err, box.count())
		}
	}
}

func TestParseSMTPURL(t *testing.T) {
	good := []struct {
		url        string
		requireTLS bool
		implicit   bool
		port       int
	}{
		{"smtp://u:p@mail.example.org", true, false, 587},
		{"smtp://mail.example.org:25?starttls=opportunistic", false, false, 25},
		{"smtp://127.0.0.1:1025", false, false, 1025},
		{"smtp://127.8.9.10:1025", false, false, 1025},
		{"smtp://LocalHost:1025", false, false, 1025},
		{"smtp://[::1]:1025", false, false, 1025},
		{"smtp://[::ffff:127.0.0.1]:1025", false, false, 1025},
		{"smtp://10.0.0.1:25", true, false, 25},
		{"smtp://localhost.example.org", true, false, 587},
		{"smtps://u:p@mail.example.org", true, true, 465},
		{"smtps://u:p@mail.example.org/", true, true, 465},
		{"smtp://u:p%2F%3F%23@mail.example.org:25", true, false, 25},
	}
	for _, tt := range good {
		r, err := ParseSMTPURL(tt.url)
		if err != nil || r.RequireTLS != tt.requireTLS || r.ImplicitTLS != tt.implicit || r.Port != tt.port {
			t.Errorf("ParseSMTPURL(%q) = %+v, %v; want RequireTLS %v, ImplicitTLS %v, port %d",
				tt.url, r, err, tt.requireTLS, tt.implicit, tt.port)
		}
	}
	for _, u := range []string{
		"http://u:pw-XYZ@mail",
		"smtp://u:pw-XYZ@mail?starttls=never",
		"smtp://u:pw-XYZ@mail?starttls=",
		"smtp://u:pw-XYZ@mail?starttls=opportunistic&starttls=opportunistic",
		"smtp://u:pw-XYZ@mail?tls=off",
		"smtp://u:pw-XYZ@mail?starttls=opportunistic&x=1",
		"smtps://u:pw-XYZ@mail?starttls=opportunistic",
		"smtp://u:pw-XYZ@mail:0",
		"smtp://u:pw-XYZ@mail:port",
		"smtp://u:pw-XYZ@:25",
		"smtp://u:pw-XYZ@mail?%zz",
		"smtp://:pw-XYZ@mail", // a password without a user would be dropped unsaid
	} {
		_, err := ParseSMTPURL(u)
		if err == nil {
			t.Errorf("ParseSMTPURL(%q) accepted", u)
		} else if strings.Contains(err.Error(), "pw-XYZ") {
			t.Errorf("ParseSMTPURL(%q) = %v: the error shows the password", u, err)
		}
	}
}

// TestSMTPURLWithUnescapedPassword: a password holding / ? or # that was
// not percent-encoded splits the URL in the wrong place. It is refused,
// naming the variable and saying to percent-encode, with no part of the
// password in the error; it is never read as a relay named after the user.
func TestSMTPURLWithUnescapedPassword(t *testing.T) {
	for _, u := range []string{
		"smtp://mailer:?pw-XYZ@mail.example.org",                        // the rest of the password is a query key
		"smtp://mailer:?starttls=opportunistic#pw-XYZ@mail.example.org", // a valid query, then a fragment
		"smtp://mailer:#pw-XYZ@mail.example.org",
		"smtp://mailer:/pw-XYZ@mail.example.org",
		"smtp://mailer:2525/pw-XYZ@mail.example.org", // relay "mailer", port 2525
		"smtp://mailer:99999/pw-XYZ@mail.example.org",
		"smtp://mailer:pw?XYZ@mail.example.org",
		"smtp:mailer:pw-XYZ@mail.example.org",
		"smtps://mailer:?pw-XYZ@mail.example.org",
	} {
		_, err := NewSMTP(u, "authd <no-reply@example.org>", renderer(t))
		if err == nil {
			t.Errorf("NewSMTP(%q) accepted", u)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "AUTHD_SMTP_URL") || !strings.Contains(msg, "percent-encode") {
			t.Errorf("NewSMTP(%q) = %q; want it to name AUTHD_SMTP_URL and say to percent-encode", u, msg)
		}
		for _, part := range []string{"XYZ", "99999", "2525", "mailer", "opportunistic#"} {
			if strings.Contains(msg, part) {
				t.Errorf("NewSMTP(%q) = %q: the error shows %q, part of the URL", u, msg, part)
			}
		}
	}
}

func TestEveryTemplateRenders(t *testing.T) {
	r := renderer(t)
	for _, k := range authd.MailKinds() {
		out, err := r.Render(authd.Mail{Kind: k, To: "a@example.org", Link: "https://x/?token=<b>", Until: time.Now(),
			Change: authd.ChangePasskeyAdded})
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if out.Subject == "" || strings.Contains(out.Subject, "\n") || out.Text == "" || !strings.Contains(out.HTML, "<html") {
			t.Errorf("%s: %+v", k, out)
		}
		if strings.Contains(out.HTML, "<b>") {
			t.Errorf("%s: the HTML body does not escape the link", k)
		}
	}
	if _, err := r.Render(authd.Mail{Kind: "nope"}); err == nil {
		t.Error("Render of an unknown kind succeeded")
	}
	// Each change and each kind of lock reads as a sentence of its own.
	for _, c := range []authd.FactorChange{authd.ChangeTOTPEnabled, authd.ChangeTOTPDisabled, authd.ChangePasskeyAdded,
		authd.ChangePasskeyRemoved, authd.ChangeCodesReplaced} {
		out, err := r.Render(authd.Mail{Kind: authd.MailFactorChanged, To: "a@example.org", At: time.Now(), Change: c})
		if err != nil || strings.Contains(out.Text, ", .") || !strings.Contains(out.HTML, "was") {
			t.Errorf("notice of %s: %v, %+v", c, err, out)
		}
	}
	// One queued by a newer release is sent all the same, in general words.
	if out, err := r.Render(authd.Mail{Kind: authd.MailFactorChanged, To: "a@example.org", Change: "webauthn_prf"}); err != nil ||
		!strings.Contains(out.Text, "your sign-in methods were changed.") {
		t.Errorf("a factor notice of an unknown change: %v, %+v", err, out)
	}
	// The email change's notice names the new address, escaped, and
	// tells a request from a change made.
	for _, c := range []struct {
		done, voided    bool
		subject, phrase string
	}{
		{false, false, "was asked for", "asked to move it from this address to"},
		{true, false, "was changed", "your account moved from this address to"},
		{false, true, "was stopped", "would move your account from this address to"},
	} {
		out, err := r.Render(authd.Mail{Kind: authd.MailEmailChangeNotice, To: "a@example.org", At: time.Now(),
			NewEmail: "<b>@example.net", Done: c.done, Voided: c.voided})
		if err != nil || !strings.HasSuffix(out.Subject, c.subject) || !strings.Contains(out.Text, c.phrase+" <b>@example.net") ||
			!strings.Contains(out.HTML, c.phrase+" &lt;b&gt;@example.net") || strings.Contains(out.HTML, "<b>") {
			t.Errorf("email change notice (done %v, voided %v): %v, %+v", c.done, c.voided, err, out)
		}
	}
	// Nor does a notice to an address never verified, which may be a
	// stranger's.
	for _, c := range []struct {
		done, voided bool
		phrase       string
	}{
		{false, false, "asked to move it from this address to another one."},
		{true, false, "your account moved from this address to another one,"},
		{false, true, "someone who holds that address may have tried"},
	} {
		out, err := r.Render(authd.Mail{Kind: authd.MailEmailChangeNotice, To: "a@example.org", At: time.Now(),
			Done: c.done, Voided: c.voided})
		if err != nil || !strings.Contains(out.Text, c.phrase) || !strings.Contains(out.HTML, c.phrase) {
			t.Errorf("email change notice without the new address (done %v, voided %v): %v, %+v", c.done, c.voided,
				err, out)
		}
	}
	// Support's move does not say where to.
	out, err := r.Render(authd.Mail{Kind: authd.MailEmailChangeNotice, To: "a@example.org", At: time.Now(), Done: true,
		ByAdministrator: true})
	if err != nil || !strings.Contains(out.Text, "the service's support moved your account from this address to another one") ||
		!strings.Contains(out.HTML, "the service's support moved your account") || strings.Contains(out.Text, "@example.net") {
		t.Errorf("email change notice by an administrator: %v, %+v", err, out)
	}
	// The register notice leads to a page that exists: the reset form.
	notice, err := r.Render(authd.Mail{Kind: authd.MailRegisterNotice, To: "a@example.org"})
	if link := "https://auth.example.org/reset-password"; err != nil || !strings.Contains(notice.Text, link) || !strings.Contains(notice.HTML, `href="`+link+`"`) {
		t.Errorf("register notice: %v, %+v; want a link to %s", err, notice, link)
	}
	codes, err := r.Render(authd.Mail{Kind: authd.MailAccountLocked, To: "a@example.org", Until: time.Now(), AfterCodes: true})
	if err != nil || !strings.Contains(codes.Text, "Your password was entered correctly") ||
		!strings.Contains(codes.HTML, "Your password was entered correctly") {
		t.Errorf("a lock set by codes: %v, %+v; want it to say the password was right", err, codes)
	}
}

func TestDevMailerWritesEMLAndLogsLink(t *testing.T) {
	dir := t.TempDir()
	var logs strings.Builder
	d := &Dev{Dir: filepath.Join(dir, "outbox"), From: "authd <no-reply@localhost>", Renderer: renderer(t),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	link := "http://127.0.0.1:8080/reset-password?token=xyz"
	if err := d.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordReset, To: "a@example.org", Link: link}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "outbox", "*.eml"))
	if len(files) != 1 {
		t.Fatalf("%d .eml files", len(files))
	}
	body, _ := os.ReadFile(files[0])
	if !strings.Contains(string(body), "Subject: Reset your password") || !strings.Contains(logs.String(), link) {
		t.Errorf("eml or log lacks the mail:\n%s\n%s", body, logs.String())
	}
	if strings.Contains(logs.String(), "a@example.org") {
		t.Errorf("the log holds the address, which erasure cannot remove from it:\n%s", logs.String())
	}
}

// TestSMTPErrorsHoldNoAddress: a relay's refusal, which lists or quotes the
// recipient, and an address that does not parse give errors without the
// address (they end in log lines and the outbox's last error), keeping the
// relay's codes.
func TestSMTPErrorsHoldNoAddress(t *testing.T) {
	box, addr, pool := startSMTP(t, false)
	box.refuse = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "<alice@example.org>: Recipient address rejected"}
	m, err := NewSMTP("smtp://"+addr, "authd <no-reply@example.org>", renderer(t))
	if err != nil {
		t.Fatal(err)
	}
	m.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	err = m.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordChanged, To: "alice@example.org"})
	if err == nil || strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "550 5.1.1") {
		t.Errorf("Send to a refused recipient = %v; want an error with the codes and without the address", err)
	}
	err = m.Send(context.Background(), authd.Mail{Kind: authd.MailPasswordChanged, To: "alice@@example.org"})
	if err == nil || strings.Contains(err.Error(), "alice") {
		t.Errorf("Send to an address that does not parse = %v; want an error without the address", err)
	}
}

func TestTemplatesOverride(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "verify_email.txt"),
		[]byte(`{{define "subject"}}Bitte bestätigen{{end}}{{define "text"}}Link: {{.Link}}{{end}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "verify_email.html"), []byte(`{{define "body"}}<p>Hier: <a href="{{.Link}}">bestätigen</a></p>{{end}}`), 0o644)
	r, err := NewRenderer("https://auth.example.org", dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Render(authd.Mail{Kind: authd.MailVerifyEmail, Link: "https://x/verify-email?token=t"})
	if err != nil || out.Subject != "Bitte bestätigen" || out.Text != "Link: https://x/verify-email?token=t" ||
		!strings.Contains(out.HTML, "Hier:") || !strings.Contains(out.HTML, "<html") {
		t.Errorf("override: %+v, %v", out, err)
	}
	other, _ := r.Render(authd.Mail{Kind: authd.MailPasswordReset, Link: "https://x"})
	if other.Subject != "Reset your password" {
		t.Errorf("a kind without an override lost its embedded template: %q", other.Subject)
	}
	for name, body := range map[string]string{
		"password_reset.txt":  `{{define "subject"}}x{{end}}`,         // no "text"
		"password_reset.html": `{{define "body"}}{{.Link}{{end}}`,     // does not parse
		"account_locked.txt":  `{{define "subject"}}{{.Nope}}{{end}}`, // parses; fails at render
	} {
		bad := t.TempDir()
		os.WriteFile(filepath.Join(bad, name), []byte(body), 0o644)
		r, err := NewRenderer("https://auth.example.org", bad)
		if err == nil {
			if _, err = r.Render(authd.Mail{Kind: authd.MailAccountLocked, Until: time.Now()}); err == nil {
				t.Errorf("a broken %s was accepted", name)
			}
		}
	}
}

// TestDevMailerForgetAndPrune: erasure removes exactly the files of an
// address, whatever its case; retention removes the files older than its
// cut-off; an erased account's notice is never written.
func TestDevMailerForgetAndPrune(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	var logs strings.Builder
	d := &Dev{Dir: dir, From: "authd <no-reply@localhost>", Renderer: renderer(t),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := context.Background()
	if err := d.Forget(ctx, uuid.New(), "a@example.org"); err != nil {
		t.Errorf("Forget before any mail: %v", err)
	}
	if err := d.Prune(ctx, time.Now()); err != nil {
		t.Errorf("Prune before any mail: %v", err)
	}
	bob, alice := uuid.New(), uuid.New()
	for _, m := range []authd.Mail{
		{Kind: authd.MailVerifyEmail, To: "bob@example.org", Link: "https://x/verify-email?token=1"},
		{Kind: authd.MailPasswordReset, To: "bob@example.org", Link: "https://x/reset-password?token=2", UserID: bob},
		{Kind: authd.MailRegisterNotice, To: "bob@example.org"},
		{Kind: authd.MailVerifyEmail, To: "alice.bob@example.org", Link: "https://x/verify-email?token=3", UserID: alice},
		{Kind: authd.MailAccountDeleted, To: "carol@example.org"},
		// Bob's change of address: the link to the new one, and the
		// notice to the one he had before (both his, neither his address
		// when he is erased).
		{Kind: authd.MailEmailChange, To: "bob-new@example.org", Link: "https://x/verify-email?token=4", UserID: bob},
		{Kind: authd.MailEmailChangeNotice, To: "bob-old@example.org", NewEmail: "bob@example.org", Done: true, UserID: bob},
	} {
		if err := d.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	holding := func(address string) int {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		n := 0
		for _, f := range files {
			if b, _ := os.ReadFile(f); strings.Contains(strings.ToLower(string(b)), address) {
				n++
			}
		}
		return n
	}
	if n := holding("carol@example.org"); n != 0 || strings.Contains(logs.String(), "carol@example.org") {
		t.Errorf("the notice to an erased address was kept: %d files, log:\n%s", n, logs.String())
	}
	if n := holding("bob@example.org"); n != 5 { // his three, alice.bob's, the notice naming it
		t.Fatalf("%d files hold bob@example.org before the erasure, want 5", n)
	}
	if n := holding("bob-new@example.org") + holding("bob-old@example.org"); n != 2 {
		t.Fatalf("%d files hold bob's other addresses before the erasure, want 2", n)
	}
	if err := d.Forget(ctx, bob, "Bob@Example.org"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 || holding("alice.bob@example.org") != 1 {
		t.Fatalf("after forgetting bob: %d files; want only alice.bob's", len(files))
	}

	old := time.Now().Add(-100 * 24 * time.Hour)
	os.Chtimes(files[0], old, old)
	if err := d.Send(ctx, authd.Mail{Kind: authd.MailPasswordChanged, To: "dave@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Prune(ctx, time.Now().Add(-90*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	files, _ = filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 || holding("dave@example.org") != 1 {
		t.Errorf("after pruning: %d files; want only the recent one", len(files))
	}
}
