package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/authd/authd/storetest"
)

// TestFaultRun is the fault run at a small scale: two authd instances
// (the binary built here) on a fresh PostgreSQL database and the test
// Redis, four clients for 30 s, a SIGKILL, a PostgreSQL restart and a Redis
// stop; every check of the ledger must hold. The checks are about what was
// acknowledged, never about speed.
func TestFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds authd and runs it for half a minute")
	}
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_REDIS_URL is not set: CI must run the fault run")
		}
		t.Skip("TEST_REDIS_URL is not set: skipping the fault run")
	}
	dbURL := storetest.PostgresURL(t) // a fresh database, dropped after; skips or fails without TEST_DATABASE_URL
	bin := filepath.Join(t.TempDir(), "authd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/authd/authd/cmd/authd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out, progress bytes.Buffer
	code := run(context.Background(), []string{"-fault", "-authd", bin, "-database-url", dbURL, "-redis-url", redisURL,
		"-duration", "30s", "-clients", "4", "-kill-down", "1s", "-pg-down", "3s", "-redis-down", "6s",
		"-argon2-memory-kib", "1024", "-argon2-iterations", "1", "-json"}, &out, &progress)
	t.Logf("progress:\n%s", progress.String())
	var rep faultReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, no JSON report (%v):\n%s", code, err, out.String())
	}
	var table bytes.Buffer
	rep.print(&table)
	t.Logf("report:\n%s", table.String())
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("check failed: %s: %s", c.Name, c.Detail)
		}
	}
	if want := map[bool]int{true: 0, false: 1}[rep.OK]; code != want {
		t.Errorf("exit %d with ok=%v, want %d", code, rep.OK, want)
	}
	if len(rep.Checks) < 10 {
		t.Errorf("%d checks in the report, want every check of the ledger", len(rep.Checks))
	}
	if len(rep.Faults) != 4 {
		t.Errorf("%d faults injected, want 4 (SIGKILL, PostgreSQL, Redis, SIGTERM)", len(rep.Faults))
	}
	done := map[string]bool{}
	for _, op := range rep.Ops {
		done[op.Op] = op.OK > 0
	}
	for _, op := range []string{"register", "verify", "login", "me", "refresh", "logout"} {
		if !done[op] {
			t.Errorf("no acknowledged %s in the load: the run did not exercise it", op)
		}
	}
}

func TestFaultRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-fault"}, &out, &errOut); code != 2 ||
		!bytes.Contains(errOut.Bytes(), []byte("-authd, -database-url and -redis-url are required")) {
		t.Errorf("-fault without its settings: exit %d, %q", code, errOut.String())
	}
	if code := run(context.Background(), []string{"-fault", "-authd", "/nonexistent/authd", "-database-url", "postgres://x/y",
		"-redis-url", "redis://x:6379"}, &out, &errOut); code != 1 || !bytes.Contains(errOut.Bytes(), []byte("-authd")) {
		t.Errorf("-fault with a missing binary: exit %d, %q", code, errOut.String())
	}
	if ok, rest := isFaultRun([]string{"-duration", "1s", "-fault", "-json"}); !ok || len(rest) != 3 {
		t.Errorf("isFaultRun: %v %q", ok, rest)
	}
}

// TestFreeAddrBelowEphemeralPorts: an instance's address is on a port the
// kernel never hands to an outgoing connection, free when chosen.
func TestFreeAddrBelowEphemeralPorts(t *testing.T) {
	start := ephemeralStart()
	for range 20 {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		if n, err := strconv.Atoi(port); err != nil || n >= start || n < 1024 {
			t.Fatalf("freeAddr = %s, want a port in 1024-%d", addr, start-1)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("freeAddr's %s is not free: %v", addr, err)
		}
		ln.Close()
	}
}
