package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/authd/authd/internal/faultnet"
	"github.com/emersion/go-smtp"
)

// This file holds what the fault run stands up around authd: the authd
// processes, the TCP proxies through which they reach PostgreSQL and Redis,
// and the SMTP sink that receives their mail.

// instance is one authd serve process, restartable on the same ports.
type instance struct {
	name, bin string
	env       []string
	dir       string // working directory (no stray .env) and data directory
	base      string // http://host:port of its public listener
	admin     string // http://host:port of its admin listener (/metrics)
	logPath   string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

var listeningRE = regexp.MustCompile(`authd listening on (http://\S+)`)

// start runs the process and waits until it listens.
func (in *instance) start(ctx context.Context) error {
	log, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(in.bin, "serve")
	cmd.Env, cmd.Dir, cmd.Stderr = in.env, in.dir, log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", in.name, err)
	}
	exited := make(chan struct{})
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case listening <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
		log.Close()
		close(exited)
	}()
	in.mu.Lock()
	in.cmd, in.exited = cmd, exited
	in.mu.Unlock()
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	select {
	case u := <-listening:
		if u != in.base {
			return fmt.Errorf("%s listens on %s, want %s", in.name, u, in.base)
		}
		return nil
	case <-exited:
		return fmt.Errorf("%s exited at start; its log %s ends:\n%s", in.name, in.logPath, tail(in.logPath))
	case <-timer.C:
	case <-ctx.Done():
	}
	in.signal(syscall.SIGKILL)
	<-exited
	return fmt.Errorf("%s did not start listening; its log %s ends:\n%s", in.name, in.logPath, tail(in.logPath))
}

func (in *instance) signal(sig os.Signal) (chan struct{}, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return nil, errors.New(in.name + " was never started")
	}
	return in.exited, in.cmd.Process.Signal(sig)
}

// running reports whether the process is up.
func (in *instance) running() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.exited == nil {
		return false
	}
	select {
	case <-in.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (in *instance) kill() error {
	exited, err := in.signal(syscall.SIGKILL)
	if exited != nil {
		<-exited
	}
	if errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	return err
}

// stop shuts the process down gracefully (SIGTERM), or kills it after
// stopGrace.
func (in *instance) stop() { in.terminate() }

// stopGrace is how long a graceful stop may take before the process is
// killed: Kubernetes' default, which serve's stop deadline fits in.
const stopGrace = 30 * time.Second

// terminate is stop, returning the exit status (-1 when it was killed).
func (in *instance) terminate() int {
	exited, err := in.signal(syscall.SIGTERM)
	if exited == nil || err != nil {
		in.kill()
		return -1
	}
	select {
	case <-exited:
		in.mu.Lock()
		defer in.mu.Unlock()
		return in.cmd.ProcessState.ExitCode()
	case <-time.After(stopGrace):
		in.kill()
		return -1
	}
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freeAddr returns a loopback address nothing listens on right now; an
// instance keeps its address across restarts so clients find it again.
// The port is below the ephemeral range: a port the kernel chose (":0")
// is also what it gives the next outgoing connection of any process, which
// could take it before the instance binds it, or binds it again after a
// restart.
func freeAddr() (string, error) {
	below := ephemeralStart()
	lo := max(1024, below-12768)
	for range 100 {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(below-lo))))
		if err != nil {
			continue // taken
		}
		ln.Close()
		return ln.Addr().String(), nil
	}
	return "", fmt.Errorf("no free loopback port in %d-%d", lo, below-1)
}

// ephemeralStart is the first port of the range the kernel picks ephemeral
// ports from: Linux says it in /proc (32768 by default); elsewhere IANA's
// 49152.
func ephemeralStart() int {
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if fields := strings.Fields(string(b)); len(fields) == 2 {
		if n, err := strconv.Atoi(fields[0]); err == nil && n > 2048 {
			return n
		}
	}
	return 49152
}

// proxiedURL is u with its host:port replaced by the proxy's.
func proxiedURL(u *url.URL, p *faultnet.Proxy) string {
	v := *u
	v.Host = p.Addr()
	return v.String()
}

// sinkMail is one message the SMTP sink accepted.
type sinkMail struct {
	To, MessageID, Subject string
	Token                  string // the token of a verify-email link; "" for other mail
	At                     time.Time
}

// smtpSink is an in-process SMTP server that keeps every message, indexed
// by recipient, so the load can follow verification links and the ledger
// can count mail.
type smtpSink struct {
	srv  *smtp.Server
	addr string

	mu      sync.Mutex
	byTo    map[string][]sinkMail
	total   int
	bad     []string // messages that did not parse
	changed chan struct{}
}

func newSMTPSink() (*smtpSink, error) {
	s := &smtpSink{byTo: map[string][]sinkMail{}, changed: make(chan struct{})}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout, s.srv.WriteTimeout = time.Minute, time.Minute
	s.srv.MaxMessageBytes = 1 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	go s.srv.Serve(ln)
	return s, nil
}

func (s *smtpSink) close() { s.srv.Close() }

// NewSession implements smtp.Backend.
func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }

type sinkSession struct {
	sink *smtpSink
	rcpt []string
}

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpt = append(ss.rcpt, strings.ToLower(to))
	return nil
}
func (ss *sinkSession) Reset()        { ss.rcpt = nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := parseMail(raw)
	ss.sink.add(ss.rcpt, m, err)
	return nil
}

var verifyLinkRE = regexp.MustCompile(`/verify-email\?token=([A-Za-z0-9_\-]+)`)

// parseMail reads the headers and the text part of a message.
func parseMail(raw []byte) (sinkMail, error) {
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		return sinkMail{}, err
	}
	m := sinkMail{MessageID: msg.Header.Get("Message-Id"), At: time.Now()}
	m.Subject, _ = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if to, err := mail.ParseAddress(msg.Header.Get("To")); err == nil {
		m.To = strings.ToLower(to.Address)
	}
	text, err := textPart(msg.Header.Get("Content-Type"), msg.Body)
	if err != nil {
		return m, err
	}
	if sub := verifyLinkRE.FindStringSubmatch(text); sub != nil {
		m.Token = sub[1]
	}
	return m, nil
}

// textPart returns the decoded text/plain content of a (multipart) body.
func textPart(contentType string, body io.Reader) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(mt, "multipart/") {
		b, err := io.ReadAll(body)
		return string(b), err
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err != nil {
			return "", fmt.Errorf("no text/plain part: %w", err)
		}
		ct := p.Header.Get("Content-Type")
		if strings.HasPrefix(ct, "multipart/") {
			if s, err := textPart(ct, p); err == nil {
				return s, nil
			}
			continue
		}
		if strings.HasPrefix(ct, "text/plain") {
			b, err := io.ReadAll(p)
			return string(b), err
		}
	}
}

func (s *smtpSink) add(rcpt []string, m sinkMail, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if err != nil {
		s.bad = append(s.bad, err.Error())
	}
	if m.To == "" && len(rcpt) > 0 {
		m.To = rcpt[0]
	}
	s.byTo[m.To] = append(s.byTo[m.To], m)
	close(s.changed)
	s.changed = make(chan struct{})
}

// mails returns what arrived for an address.
func (s *smtpSink) mails(to string) []sinkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMail(nil), s.byTo[to]...)
}

// latestToken waits until a verification mail for to has arrived, and
// returns the token of the newest one ("" when ctx ends first).
func (s *smtpSink) latestToken(ctx context.Context, to string) string {
	for {
		s.mu.Lock()
		ms, changed := s.byTo[to], s.changed
		s.mu.Unlock()
		for i := len(ms) - 1; i >= 0; i-- {
			if ms[i].Token != "" {
				return ms[i].Token
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ""
		}
	}
}

// instanceEnv is the environment of one authd: the fault run's settings
// over the caller's environment without any AUTHD_* or DATABASE_URL.
func instanceEnv(settings map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AUTHD_") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return env
}

// migrateUp brings the database to the schema the binary expects.
func migrateUp(ctx context.Context, bin, dir, databaseURL string) error {
	cmd := exec.CommandContext(ctx, bin, "migrate", "up")
	cmd.Env, cmd.Dir = instanceEnv(map[string]string{"DATABASE_URL": databaseURL, "AUTHD_DATA_DIR": filepath.Join(dir, "migrate")}), dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("authd migrate up: %v\n%s", err, out)
	}
	return nil
}
