package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authd/authd/internal/syncbuf"
	"github.com/emersion/go-smtp"
)

// inbox counts the messages an in-process SMTP server accepts.
type inbox struct {
	mu   sync.Mutex
	msgs []string
	hold func() // when set, called as each message's data begins
}

func (b *inbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &inboxSession{b}, nil }

type inboxSession struct{ b *inbox }

func (s *inboxSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *inboxSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *inboxSession) Data(r io.Reader) error {
	if s.b.hold != nil {
		s.b.hold()
	}
	body, err := io.ReadAll(r)
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, string(body))
	s.b.mu.Unlock()
	return err
}
func (s *inboxSession) Reset()        {}
func (s *inboxSession) Logout() error { return nil }

func (b *inbox) count() int { b.mu.Lock(); defer b.mu.Unlock(); return len(b.msgs) }

// startAuthd runs the authd binary and returns its base URL and its stderr.
func startAuthd(t *testing.T, bin string, env []string) (*exec.Cmd, string, *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	select {
	case u := <-urls:
		return cmd, u, &stderr
	case <-time.After(30 * time.Second):
		t.Fatalf("authd did not start: %s", stderr.String())
	}
	return nil, "", nil
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMailSurvivesSIGKILL kills authd with SIGKILL after it acknowledged a
// registration but before its mail could be delivered; after a restart the
// registration is there and the mail is delivered.
func TestMailSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := buildAuthd(t, dir)
	smtpAddr := freePort(t) // nothing listens yet: the SMTP server is down
	env := append(os.Environ(),
		"DATABASE_URL=", "AUTHD_DATA_DIR="+filepath.Join(dir, "data"), // the default database, data/authd.db
		"AUTHD_HTTP_ADDR=127.0.0.1:0", "AUTHD_ADMIN_ADDR=", "AUTHD_SMTP_URL=smtp://"+smtpAddr,
		"AUTHD_ARGON2_MEMORY_KIB=1024", "AUTHD_ARGON2_ITERATIONS=1", "AUTHD_LOG_FORMAT=text")

	cmd, base, stderr := startAuthd(t, bin, env)
	resp, err := http.Post(base+"/v1/auth/register", "application/json",
		strings.NewReader(`{"email":"kill@example.org","password":"a sturdy passphrase","consent":true}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("register: %v, %v", resp, err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "will retry") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed delivery attempt in the log:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	box := &inbox{}
	srv := smtp.NewServer(box)
	srv.Domain, srv.AllowInsecureAuth = "localhost", true
	ln, err := net.Listen("tcp", smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	_, base, stderr = startAuthd(t, bin, env)
	deadline = time.Now().Add(40 * time.Second) // the retry is due about ten seconds after the failure
	for box.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the mail never arrived after the restart:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := box.count(); n != 1 || !strings.Contains(box.msgs[0], "kill@example.org") {
		t.Errorf("received %d mails", n)
	}
	// The acknowledged registration survived too: registering again is a
	// notice to the existing account.
	resp, err = http.Post(base+"/v1/auth/login", "application/json",
		strings.NewReader(`{"email":"kill@example.org","password":"a sturdy passphrase"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden { // email_not_verified: the account exists
		t.Errorf("login after the restart: %d, want 403 (account exists, not verified)", resp.StatusCode)
	}
}

// buildAuthd builds the binary into dir.
func buildAuthd(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "authd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestReaderGoneIsTold: a command whose reader went away (authd admin
// logs | head) fails saying its output could not be written (exit 1),
// rather than being killed by SIGPIPE without a word: a secret rotated
// and then lost would otherwise go untold.
func TestReaderGoneIsTold(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildAuthd(t, t.TempDir())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the reader is gone
	defer w.Close()
	var stderr strings.Builder
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = w, &stderr
	err = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != exitFailure || !strings.Contains(stderr.String(), "could not be written") {
		t.Errorf("authd --help into a pipe whose reader is gone: %v, exit %d, stderr %q; want exit %d saying so",
			err, code, stderr.String(), exitFailure)
	}
}
