package main

import (
	"strings"
	"testing"
	"time"
)

// TestFiveHundredsRule holds the 5xx rule of the ledger: a 503 with
// Retry-After is allowed only while the instance was affected by an
// outage (PostgreSQL for both, a SIGKILL for its victim, never Redis),
// until the instance answers that operation 2xx again; anything else
// fails the run.
func TestFiveHundredsRule(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	faults := []fault{
		{Kind: "SIGKILL authd-2", Target: 1, Start: at(10), End: at(11)},
		{Kind: "PostgreSQL restart", Target: -1, Start: at(20), End: at(25)},
		{Kind: "Redis stop", Target: -1, Start: at(30), End: at(40)},
		{Kind: "SIGTERM authd-1", Target: 0, Start: at(45), End: at(45.2)},
	}
	// Both instances succeed soon after each fault, and log in again a
	// little later after the PostgreSQL outage.
	var base []attempt
	for _, s := range []float64{5, 11.5, 26, 41, 46} {
		for i := range 2 {
			base = append(base, attempt{Op: "me", Instance: i, Start: at(s), End: at(s + 0.01), Status: 200})
		}
	}
	base = append(base, attempt{Op: "refresh", Instance: 0, Start: at(33), End: at(33.1), Status: 200})
	for i := range 2 {
		base = append(base, attempt{Op: "login", Instance: i, Start: at(28), End: at(28.1), Status: 200})
	}
	for _, tc := range []struct {
		name string
		a    attempt
		ok   bool
	}{
		{"503 + Retry-After during the PostgreSQL outage", attempt{Op: "login", Instance: 0, Start: at(21), End: at(21.1), Status: 503, RetryAfter: true}, true},
		{"503 + Retry-After sent during it, answered just after", attempt{Op: "login", Instance: 1, Start: at(24.9), End: at(25.2), Status: 503, RetryAfter: true}, true},
		{"503 without Retry-After", attempt{Op: "login", Instance: 0, Start: at(21), End: at(21.1), Status: 503}, false},
		{"500 during an outage", attempt{Op: "verify", Instance: 0, Start: at(21), End: at(21.1), Status: 500, Code: "internal"}, false},
		{"503 outside any outage", attempt{Op: "me", Instance: 0, Start: at(50), End: at(50.1), Status: 503, RetryAfter: true}, false},
		{"503 during the Redis stop", attempt{Op: "register", Instance: 0, Start: at(35), End: at(35.1), Status: 503, RetryAfter: true}, false},
		{"503 on the killed instance as it starts", attempt{Op: "me", Instance: 1, Start: at(11.1), End: at(11.2), Status: 503, RetryAfter: true}, true},
		{"503 on the other instance during the kill", attempt{Op: "me", Instance: 0, Start: at(10.5), End: at(10.6), Status: 503, RetryAfter: true}, false},
		{"503 on the stopped instance as it starts again", attempt{Op: "me", Instance: 0, Start: at(45.3), End: at(45.4), Status: 503, RetryAfter: true}, true},
		{"503 on the other instance during the graceful stop", attempt{Op: "me", Instance: 1, Start: at(45.1), End: at(45.15), Status: 503, RetryAfter: true}, false},
		// The instances answered me at 26 and login at 28 (base): a login
		// sent before 28 is still in its outage, a me after 26 is not, and
		// an operation that did not succeed after it has the instance's
		// recovery and opRecoveryGrace, as one that succeeded late.
		{"503 on one operation before its own first success", attempt{Op: "login", Instance: 0, Start: at(27), End: at(27.1), Status: 503, RetryAfter: true}, true},
		{"503 on one operation after its own first success", attempt{Op: "me", Instance: 0, Start: at(27), End: at(27.1), Status: 503, RetryAfter: true}, false},
		{"503 on an operation that never succeeded, soon after the instance did", attempt{Op: "logout", Instance: 0, Start: at(27), End: at(27.1), Status: 503, RetryAfter: true}, true},
		{"503 on an operation that never succeeded, long after the instance did", attempt{Op: "logout", Instance: 0, Start: at(32), End: at(32.1), Status: 503, RetryAfter: true}, false},
		{"503 on an operation that succeeded only long after the instance did", attempt{Op: "refresh", Instance: 0, Start: at(32), End: at(32.1), Status: 503, RetryAfter: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &ledger{insts: []*instance{{name: "authd-1"}, {name: "authd-2"}}, start: t0,
				attempts: append(append([]attempt(nil), base...), tc.a)}
			rep := &faultReport{}
			l.checkAttempts(rep, faults, newFallbackSampler(l.insts))
			for _, c := range rep.Checks {
				if strings.HasPrefix(c.Name, "no 5xx") && c.OK != tc.ok {
					t.Errorf("check ok=%v, want %v: %s", c.OK, tc.ok, c.Detail)
				}
				if strings.HasPrefix(c.Name, "each instance") && !c.OK {
					t.Errorf("recovery: %s", c.Detail)
				}
			}
		})
	}
}

// TestRecoveryMissing: an instance with no success after a fault fails
// the run, and its recovery is reported as never.
func TestRecoveryMissing(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := &ledger{insts: []*instance{{name: "authd-1"}, {name: "authd-2"}}, start: t0, attempts: []attempt{
		{Op: "me", Instance: 0, Start: t0.Add(3 * time.Second), End: t0.Add(3 * time.Second), Status: 200},
		{Op: "me", Instance: 1, Start: t0.Add(3 * time.Second), End: t0.Add(3 * time.Second), Status: 0, Err: "connection refused"},
	}}
	rep := &faultReport{}
	l.checkAttempts(rep, []fault{{Kind: "SIGKILL authd-2", Target: 1, Start: t0, End: t0.Add(time.Second)}}, newFallbackSampler(l.insts))
	if got := rep.Faults[0].Recovery; got[0] < 0 || got[1] != -1 {
		t.Errorf("recovery %v, want authd-1 measured and authd-2 never (-1)", got)
	}
	for _, c := range rep.Checks {
		if strings.HasPrefix(c.Name, "each instance") && c.OK {
			t.Errorf("a missing recovery (and too few faults) passed: %s", c.Detail)
		}
	}
}

// TestParseMail reads the verification link out of a multipart message
// whose text part is quoted-printable with a soft line break in the token.
func TestParseMail(t *testing.T) {
	raw := "From: authd <no-reply@localhost>\r\nTo: <Fault-1@Example.org>\r\nSubject: =?UTF-8?q?Confirm_your_email?=\r\n" +
		"Message-ID: <abc@localhost>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Hello,\r\n\r\nhttp://127.0.0.1:8080/verify-email?token=3DabcDEF_12-=\r\n34xyz\r\n\r\n" +
		"--b1\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<p>x</p>\r\n--b1--\r\n"
	m, err := parseMail([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.To != "fault-1@example.org" || m.Token != "abcDEF_12-34xyz" || m.MessageID != "<abc@localhost>" || m.Subject != "Confirm your email" {
		t.Errorf("parsed %+v", m)
	}
	if _, err := parseMail([]byte("To: x@example.org\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n--b1--\r\n")); err == nil {
		t.Error("a message without a text part parsed")
	}
}

// TestResentAfterKill: a second copy is explained by a SIGKILL only when
// the first arrived before the kill and the copy after it.
func TestResentAfterKill(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	kill := []fault{{Kind: "SIGKILL authd-2", Target: 1, Start: t0.Add(10 * time.Second), End: t0.Add(11 * time.Second)}}
	mail := func(s int) sinkMail { return sinkMail{Token: "t", At: t0.Add(time.Duration(s) * time.Second)} }
	l := &ledger{}
	if !l.resentAfterKill([]sinkMail{mail(9), mail(130)}, kill) {
		t.Error("a copy after the lease of a mail sent just before the kill is not explained")
	}
	if l.resentAfterKill([]sinkMail{mail(20), mail(21)}, kill) {
		t.Error("two copies after the kill are explained by it")
	}
	if l.resentAfterKill([]sinkMail{mail(2), mail(3)}, kill) {
		t.Error("two copies before the kill are explained by it")
	}
}

// TestGracefulStopCheck: the graceful stop passes only with exit 0; one
// that cut requests (exit 1) or was killed (-1), or that never ran, fails.
func TestGracefulStopCheck(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		faults []fault
		ok     bool
	}{
		{[]fault{{Kind: "SIGTERM authd-1", Target: 0, Start: t0, End: t0.Add(time.Second), Exit: 0}}, true},
		{[]fault{{Kind: "SIGTERM authd-1", Target: 0, Start: t0, End: t0.Add(time.Second), Exit: 1}}, false},
		{[]fault{{Kind: "SIGTERM authd-1", Target: 0, Start: t0, End: t0.Add(30 * time.Second), Exit: -1}}, false},
		{nil, false},
	} {
		l := &ledger{insts: []*instance{{name: "authd-1"}, {name: "authd-2"}}, start: t0}
		rep := &faultReport{}
		l.checkAttempts(rep, tc.faults, newFallbackSampler(l.insts))
		found := false
		for _, c := range rep.Checks {
			if strings.HasPrefix(c.Name, "a graceful stop") {
				found = true
				if c.OK != tc.ok {
					t.Errorf("faults %+v: check ok=%v, want %v: %s", tc.faults, c.OK, tc.ok, c.Detail)
				}
			}
		}
		if !found {
			t.Errorf("faults %+v: no graceful-stop check in the report", tc.faults)
		}
	}
}
