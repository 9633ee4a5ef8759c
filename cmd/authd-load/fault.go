package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/authd/authd/internal/faultnet"
	"github.com/authd/authd/password"
)

// The fault run (authd-load -fault): two authd instances on one PostgreSQL
// database and one Redis, both reached through proxies this tool controls,
// a mixed load across both instances, and on a schedule a SIGKILL of one
// instance, a PostgreSQL restart, a Redis stop and a graceful stop (SIGTERM)
// of the other instance. A ledger of every
// answer is checked afterwards against the database and the mail received.

type faultOptions struct {
	authd, databaseURL, redisURL, pgRestartCmd string
	duration, drain                            time.Duration
	killDown, pgDown, redisDown                time.Duration
	clients                                    int
	argon2                                     password.Params
	json, keep                                 bool
}

// isFaultRun reports whether args ask for the fault run, and returns them
// without the -fault flag.
func isFaultRun(args []string) (bool, []string) {
	for i, a := range args {
		switch a {
		case "-fault", "--fault", "-fault=true", "--fault=true":
			return true, append(append([]string(nil), args[:i]...), args[i+1:]...)
		case "--":
			return false, args
		}
	}
	return false, args
}

func runFault(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("authd-load -fault", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o faultOptions
	fs.StringVar(&o.authd, "authd", "", "path to the authd binary (go build -o /tmp/authd ./cmd/authd)")
	fs.StringVar(&o.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "postgres://… of a database for this run: it is migrated up, shared by both instances, and read afterwards (env DATABASE_URL)")
	fs.StringVar(&o.redisURL, "redis-url", os.Getenv("AUTHD_REDIS_URL"), "redis://… for the shared rate limits (env AUTHD_REDIS_URL)")
	fs.StringVar(&o.pgRestartCmd, "pg-restart-cmd", "", "a shell command that really restarts PostgreSQL (e.g. 'sudo systemctl restart postgresql'), instead of cutting the proxy for -pg-down")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "how long the load runs; the faults start at 10 %, 30 %, 50 % and 70 % of it")
	fs.DurationVar(&o.drain, "drain", 4*time.Minute, "after the load, how long to wait for mail still in the outbox (a mail claimed by a killed instance waits out its 3-minute lease)")
	fs.DurationVar(&o.killDown, "kill-down", time.Second, "how long the SIGKILLed instance stays down before its restart")
	fs.DurationVar(&o.pgDown, "pg-down", 5*time.Second, "how long PostgreSQL refuses connections")
	fs.DurationVar(&o.redisDown, "redis-down", 15*time.Second, "how long Redis refuses connections")
	fs.IntVar(&o.clients, "clients", 8, "concurrent clients, each a user going register → verify → login → me/refresh → logout")
	memory := fs.Uint("argon2-memory-kib", uint(password.DefaultParams.MemoryKiB), "AUTHD_ARGON2_MEMORY_KIB of the instances")
	iterations := fs.Uint("argon2-iterations", uint(password.DefaultParams.Iterations), "AUTHD_ARGON2_ITERATIONS of the instances")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (instance logs, keys) after the run")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o.argon2 = password.Params{MemoryKiB: uint32(*memory), Iterations: uint32(*iterations), Parallelism: 1}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "authd-load -fault: unexpected argument %q\n", fs.Arg(0))
		return 2
	case o.authd == "" || o.databaseURL == "" || o.redisURL == "":
		fmt.Fprintln(stderr, "authd-load -fault: -authd, -database-url and -redis-url are required\n"+
			"hint: go build -o /tmp/authd ./cmd/authd && authd-load -fault -authd /tmp/authd -database-url postgres://… -redis-url redis://…")
		return 2
	case o.clients < 1 || o.duration <= 0:
		fmt.Fprintln(stderr, "authd-load -fault: -clients and -duration must be positive")
		return 2
	}
	rep, err := faultRun(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "authd-load -fault: %v\n", err)
		return 1
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.print(stdout)
	}
	if !rep.OK {
		return 1
	}
	return 0
}

// fault is one injected fault and when it happened.
type fault struct {
	Kind   string // "SIGKILL authd-2", "PostgreSQL restart", "Redis stop", "SIGTERM authd-1"
	Target int    // the instance it hit, or -1 for both
	Start  time.Time
	End    time.Time
	Exit   int // a graceful stop's exit status; -1: killed after stopGrace
}

// faultRun stands everything up, runs the load and the faults, and checks
// the ledger. Errors are about the set-up; a failed check is in the report.
func faultRun(ctx context.Context, o faultOptions, progress io.Writer) (*faultReport, error) {
	bin, err := filepath.Abs(o.authd)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("-authd: %w", err)
	}
	dbURL, err := url.Parse(o.databaseURL)
	if err != nil || (dbURL.Scheme != "postgres" && dbURL.Scheme != "postgresql") || dbURL.Host == "" {
		return nil, errors.New("-database-url must be a postgres://host:port/… URL")
	}
	redisURL, err := url.Parse(o.redisURL)
	if err != nil || (redisURL.Scheme != "redis" && redisURL.Scheme != "rediss") || redisURL.Host == "" {
		return nil, errors.New("-redis-url must be a redis://host:port/… URL")
	}
	dir, err := os.MkdirTemp("", "authd-fault-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintf(progress, "work directory (logs, keys): %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := migrateUp(ctx, bin, dir, o.databaseURL); err != nil {
		return nil, err
	}
	sink, err := newSMTPSink()
	if err != nil {
		return nil, err
	}
	defer sink.close()
	pg, err := faultnet.Listen("127.0.0.1:0", hostPort(dbURL, "5432"))
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	redis, err := faultnet.Listen("127.0.0.1:0", hostPort(redisURL, "6379"))
	if err != nil {
		return nil, err
	}
	defer redis.Close()

	// The access tokens must outlive the run, so that the final checks
	// test revocation and not expiry.
	ttl := max(15*time.Minute, 2*(o.duration+o.drain))
	insts := make([]*instance, 2)
	httpAddrs := make([]string, len(insts))
	for i := range httpAddrs {
		if httpAddrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	for i := range insts {
		httpAddr := httpAddrs[i]
		adminAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("authd-%d", i+1)
		idir := filepath.Join(dir, name)
		if err := os.MkdirAll(idir, 0o700); err != nil {
			return nil, err
		}
		insts[i] = &instance{name: name, bin: bin, dir: idir, base: "http://" + httpAddr, admin: "http://" + adminAddr,
			logPath: filepath.Join(dir, name+".log"),
			env: instanceEnv(map[string]string{
				"DATABASE_URL":     proxiedURL(dbURL, pg),
				"AUTHD_REDIS_URL":  proxiedURL(redisURL, redis),
				"AUTHD_DATA_DIR":   idir,
				"AUTHD_KEYS_DIR":   filepath.Join(dir, "keys"),
				"AUTHD_HTTP_ADDR":  httpAddr,
				"AUTHD_ADMIN_ADDR": adminAddr,
				// One public URL (as behind a load balancer): it is the
				// tokens' issuer, which both instances must share.
				"AUTHD_PUBLIC_URL":        "http://" + httpAddrs[0],
				"AUTHD_SMTP_URL":          "smtp://" + sink.addr, // loopback: plain text allowed
				"AUTHD_TRUSTED_PROXIES":   "127.0.0.1/32",        // each simulated user has its own X-Forwarded-For
				"AUTHD_ACCESS_TOKEN_TTL":  ttl.String(),
				"AUTHD_ARGON2_MEMORY_KIB": strconv.Itoa(int(o.argon2.MemoryKiB)),
				"AUTHD_ARGON2_ITERATIONS": strconv.Itoa(int(o.argon2.Iterations)),
				"AUTHD_LOG_FORMAT":        "text",
			})}
		// One after the other: the first creates the shared keys.
		if err := insts[i].start(ctx); err != nil {
			return nil, err
		}
		defer insts[i].stop()
	}

	fmt.Fprintf(progress, "fault run: 2 instances (%s, %s), %d clients for %s\n", insts[0].base, insts[1].base, o.clients, o.duration)
	l := newLedger(insts, sink)
	start := time.Now()
	l.start = start
	loadCtx, stopLoad := context.WithTimeout(ctx, o.duration)
	defer stopLoad()
	sampler := newFallbackSampler(insts)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { sampler.run(sampleCtx) })

	var faults []fault
	var faultErr error
	bg.Go(func() {
		faults, faultErr = injectFaults(loadCtx, o, start, insts, pg, redis, progress)
	})
	l.runLoad(loadCtx, ctx, o.clients)
	stopLoad()
	stopSampling()
	bg.Wait()
	if faultErr != nil {
		return nil, faultErr
	}
	for _, in := range insts { // an instance may still be down if the run was cut short
		if !in.running() {
			if err := in.start(ctx); err != nil {
				return nil, err
			}
		}
	}
	fmt.Fprintf(progress, "load done after %s; waiting for the outbox and checking the ledger\n", time.Since(start).Round(time.Second))
	rep, err := l.check(ctx, o, faults, sampler)
	if err != nil {
		return nil, err
	}
	rep.Duration = o.duration.String()
	return rep, nil
}

func hostPort(u *url.URL, port string) string {
	if u.Port() != "" {
		return u.Host
	}
	return u.Hostname() + ":" + port
}

// injectFaults runs the schedule: SIGKILL authd-2 at 10 % of the run and
// restart it, PostgreSQL down at 30 %, Redis down at 50 %, and at 70 % a
// graceful stop of authd-1 under the load and its restart (the load goes on
// after each, so that every recovery is measured). A fault still under way
// when the load ends is ended then.
func injectFaults(ctx context.Context, o faultOptions, start time.Time, insts []*instance,
	pg, redis *faultnet.Proxy, progress io.Writer) ([]fault, error) {
	var faults []fault
	at := func(frac float64) bool {
		return sleep(ctx, time.Until(start.Add(time.Duration(frac*float64(o.duration)))))
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "%5.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	// outage cuts a proxy for d, or runs cmd when one is given.
	outage := func(kind string, p *faultnet.Proxy, d time.Duration, cmd string) error {
		f := fault{Kind: kind, Target: -1, Start: time.Now()}
		if cmd != "" {
			say("%s: %s", kind, cmd)
			c := exec.Command("sh", "-c", cmd)
			c.Stdout, c.Stderr = progress, progress
			if err := c.Run(); err != nil {
				return fmt.Errorf("%s command: %w", kind, err)
			}
		} else {
			say("%s: connections cut and refused for %s", kind, d)
			p.Close() // the port refused, as a restarting PostgreSQL or a stopped Redis
			sleep(ctx, d)
			if err := p.Reopen(); err != nil {
				return err
			}
		}
		f.End = time.Now()
		faults = append(faults, f)
		say("%s: over", kind)
		return nil
	}

	if !at(0.10) {
		return faults, nil
	}
	victim := insts[1]
	f := fault{Kind: "SIGKILL " + victim.name, Target: 1, Start: time.Now()}
	say("SIGKILL %s", victim.name)
	if err := victim.kill(); err != nil {
		return faults, err
	}
	sleep(ctx, o.killDown)
	f.End = time.Now()
	if err := victim.start(context.WithoutCancel(ctx)); err != nil {
		return faults, err
	}
	faults = append(faults, f)
	say("%s restarted and listening", victim.name)

	if !at(0.30) {
		return faults, nil
	}
	if err := outage("PostgreSQL restart", pg, o.pgDown, o.pgRestartCmd); err != nil {
		return faults, err
	}
	if !at(0.50) {
		return faults, nil
	}
	if err := outage("Redis stop", redis, o.redisDown, ""); err != nil {
		return faults, err
	}
	if !at(0.70) {
		return faults, nil
	}
	stopped := insts[0]
	f = fault{Kind: "SIGTERM " + stopped.name, Target: 0, Start: time.Now()}
	say("SIGTERM %s (a graceful stop)", stopped.name)
	f.Exit = stopped.terminate()
	f.End = time.Now()
	say("%s exited %d after %.1fs", stopped.name, f.Exit, f.End.Sub(f.Start).Seconds())
	if err := stopped.start(context.WithoutCancel(ctx)); err != nil {
		return faults, err
	}
	faults = append(faults, f)
	say("%s restarted and listening", stopped.name)
	return faults, nil
}

// fallbackSampler watches authd_rate_limit_fallback on each instance's
// /metrics, to tell when an instance went back to counting in Redis.
type fallbackSampler struct {
	insts []*instance
	mu    sync.Mutex
	// samples[i] are (time, value) pairs where instance i's gauge changed.
	samples [][]fallbackSample
}

type fallbackSample struct {
	at time.Time
	on bool
}

func newFallbackSampler(insts []*instance) *fallbackSampler {
	return &fallbackSampler{insts: insts, samples: make([][]fallbackSample, len(insts))}
}

func (s *fallbackSampler) run(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		for i, in := range s.insts {
			reqCtx, cancel := context.WithTimeout(ctx, time.Second)
			code, body, err := call(reqCtx, "GET", in.admin+"/metrics", "")
			cancel()
			if err != nil || code != 200 {
				continue
			}
			on := strings.Contains(string(body), "\nauthd_rate_limit_fallback 1")
			s.mu.Lock()
			if n := len(s.samples[i]); n == 0 || s.samples[i][n-1].on != on {
				s.samples[i] = append(s.samples[i], fallbackSample{time.Now(), on})
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// backOnRedis is when instance i's gauge went back to 0 after it went to 1
// at or after t, and whether it did.
func (s *fallbackSampler) backOnRedis(i int, t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	engaged := false
	for _, x := range s.samples[i] {
		switch {
		case x.on && !x.at.Before(t):
			engaged = true
		case !x.on && engaged:
			return x.at, true
		}
	}
	return time.Time{}, false
}
