// Command authd-load is the load harness of SPEC §10: it drives a running
// authd over HTTP with concurrent clients and reports throughput and
// latency against the quality bars.
//
// Start the server without rate limits and with a service token, seed a
// verified account, then run the scenarios:
//
//	AUTHD_RATE_LIMIT=off AUTHD_SERVICE_TOKENS=$TOKEN authd serve
//	authd seed
//	authd-load -service-token $TOKEN
//
// With -fault it runs the fault run instead (fault.go): it starts two
// authd instances itself, loads them while it kills one, restarts
// PostgreSQL and stops Redis, and checks that nothing acknowledged was lost.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authd/authd/password"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	url, metricsURL, email, password, serviceToken string
	duration                                       time.Duration
	scenarios                                      []string
	argon2                                         password.Params
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if fault, rest := isFaultRun(args); fault {
		return runFault(ctx, rest, stdout, stderr)
	}
	fs := flag.NewFlagSet("authd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "base URL of the authd under load")
	fs.StringVar(&o.metricsURL, "metrics-url", "http://127.0.0.1:8081", "base URL of its admin listener (AUTHD_ADMIN_ADDR), which alone serves /metrics")
	fs.StringVar(&o.email, "email", "active@demo.authd.dev", "a verified account (authd seed makes this one)")
	fs.StringVar(&o.password, "password", "authd-demo-Passw0rd", "its password")
	fs.StringVar(&o.serviceToken, "service-token", os.Getenv("AUTHD_LOAD_SERVICE_TOKEN"),
		"one of the server's AUTHD_SERVICE_TOKENS, for introspection (env AUTHD_LOAD_SERVICE_TOKEN)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each scenario runs")
	fs.Bool("fault", false, "run the fault run instead of the scenarios: two instances, SIGKILL, PostgreSQL and Redis outages, a ledger (authd-load -fault -help)")
	scenarios := fs.String("scenarios", "introspect,me,refresh,login,burst", "comma-separated: introspect, me, refresh, login, register, burst")
	memory := fs.Uint("argon2-memory-kib", uint(password.DefaultParams.MemoryKiB), "the server's AUTHD_ARGON2_MEMORY_KIB, for the hashing limit")
	iterations := fs.Uint("argon2-iterations", uint(password.DefaultParams.Iterations), "the server's AUTHD_ARGON2_ITERATIONS")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o.argon2 = password.Params{MemoryKiB: uint32(*memory), Iterations: uint32(*iterations), Parallelism: 1}
	o.url = strings.TrimRight(o.url, "/")
	o.metricsURL = strings.TrimRight(o.metricsURL, "/")
	o.scenarios = strings.Split(*scenarios, ",")
	if err := loadTest(ctx, o, stdout); err != nil {
		fmt.Fprintf(stderr, "authd-load: %v\nhint: start the server with AUTHD_RATE_LIMIT=off and AUTHD_SERVICE_TOKENS, and run authd seed\n", err)
		return 1
	}
	return 0
}

var client = &http.Client{Timeout: 30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 2048, MaxConnsPerHost: 2048}}

// call sends a request and returns the status and body.
func call(ctx context.Context, method, url, body string, header ...string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

type pair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func (o options) login(ctx context.Context) (pair, error) {
	body, _ := json.Marshal(map[string]string{"email": o.email, "password": o.password, "device_info": "authd-load"})
	code, out, err := call(ctx, "POST", o.url+"/v1/auth/login", string(body))
	var p pair
	switch {
	case err != nil:
		return p, err
	case code != http.StatusOK:
		return p, fmt.Errorf("login as %s: %d %s", o.email, code, bytes.TrimSpace(out))
	}
	return p, json.Unmarshal(out, &p)
}

// result is one scenario's outcome.
type result struct {
	name      string
	clients   int
	ok, fails int64
	elapsed   time.Duration
	p50, p99  time.Duration
	max       time.Duration // the slowest answered request
	statuses  map[int]int64
}

func (r result) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func (r result) String() string {
	return fmt.Sprintf("%-10s %4d clients  %9.0f req/s  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms  errors %d %v",
		r.name, r.clients, r.rate(), ms(r.p50), ms(r.p99), ms(r.max), r.fails, r.statuses)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// drive runs fn on n clients for d and measures each call. fn returns the
// HTTP status; 200 and 204 count as successes.
func drive(ctx context.Context, name string, n int, d time.Duration, fn func(ctx context.Context, worker int) (int, error)) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, fails atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	statuses := map[int]int64{}
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				code, err := fn(ctx, w)
				if ctx.Err() != nil {
					break
				}
				if err == nil && (code == 200 || code == 204) {
					ok.Add(1)
					mine = append(mine, time.Since(t0))
					continue
				}
				fails.Add(1)
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	r := result{name: name, clients: n, ok: ok.Load(), fails: fails.Load(), elapsed: time.Since(start), statuses: statuses}
	slices.Sort(latencies)
	if len(latencies) > 0 {
		r.p50, r.p99, r.max = latencies[len(latencies)/2], latencies[len(latencies)*99/100], latencies[len(latencies)-1]
	}
	return r
}

func loadTest(ctx context.Context, o options, out io.Writer) error {
	p, err := o.login(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "authd-load against %s, %s per scenario, %d local cores\n\n", o.url, o.duration, runtime.NumCPU())
	for _, sc := range o.scenarios {
		switch strings.TrimSpace(sc) {
		case "introspect":
			if o.serviceToken == "" {
				return errors.New("introspect needs -service-token")
			}
			body := `{"token":"` + p.AccessToken + `"}`
			r := drive(ctx, "introspect", 32, o.duration, func(ctx context.Context, _ int) (int, error) {
				code, b, err := call(ctx, "POST", o.url+"/v1/auth/introspect", body, "Authorization", "Bearer "+o.serviceToken)
				if err == nil && code == 200 && !bytes.Contains(b, []byte(`"active":true`)) {
					code = 0 // answered, but the token is not active: revocation or a bug
				}
				return code, err
			})
			report(out, r, "≥ 10,000 req/s", r.rate() >= 10000)
		case "me":
			r := drive(ctx, "me", 32, o.duration, func(ctx context.Context, _ int) (int, error) {
				code, _, err := call(ctx, "GET", o.url+"/v1/users/me", "", "Authorization", "Bearer "+p.AccessToken)
				return code, err
			})
			report(out, r, "≥ 5,000 req/s", r.rate() >= 5000)
		case "refresh":
			tokens := make([]string, 32)
			for i := range tokens {
				s, err := o.login(ctx)
				if err != nil {
					return err
				}
				tokens[i] = s.RefreshToken
			}
			r := drive(ctx, "refresh", 32, o.duration, func(ctx context.Context, w int) (int, error) {
				code, b, err := call(ctx, "POST", o.url+"/v1/auth/refresh", `{"refresh_token":"`+tokens[w]+`"}`)
				var next pair
				if err == nil && code == 200 && json.Unmarshal(b, &next) == nil {
					tokens[w] = next.RefreshToken
				}
				return code, err
			})
			report(out, r, "≥ 2,000 req/s, p99 < 50 ms (PostgreSQL)", r.rate() >= 2000 && r.p99 < 50*time.Millisecond)
		case "login":
			limit := hashingLimit(o.argon2)
			body, _ := json.Marshal(map[string]string{"email": o.email, "password": o.password})
			r := drive(ctx, "login", 16, o.duration, func(ctx context.Context, _ int) (int, error) {
				code, _, err := call(ctx, "POST", o.url+"/v1/auth/login", string(body))
				return code, err
			})
			report(out, r, fmt.Sprintf("≥ 90 %% of the hashing limit %.1f/s: %.0f %%", limit, r.rate()/limit*100),
				r.rate() >= 0.9*limit)
		case "register":
			limit := hashingLimit(o.argon2)
			var n atomic.Int64
			run := time.Now().UnixNano()
			r := drive(ctx, "register", 16, o.duration, func(ctx context.Context, _ int) (int, error) {
				body := fmt.Sprintf(`{"email":"load-%d-%d@example.org","password":"correct horse battery staple 9","consent":true}`, run, n.Add(1))
				code, _, err := call(ctx, "POST", o.url+"/v1/auth/register", body)
				if code == http.StatusAccepted || code == http.StatusCreated {
					code = http.StatusOK
				}
				return code, err
			})
			report(out, r, fmt.Sprintf("≥ 90 %% of the hashing limit %.1f/s: %.0f %%", limit, r.rate()/limit*100),
				r.rate() >= 0.9*limit)
		case "burst":
			if err := burst(ctx, o, out); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown scenario %q", sc)
		}
	}
	return nil
}

func report(out io.Writer, r result, bar string, met bool) {
	verdict := "below"
	if met {
		verdict = "meets"
	}
	fmt.Fprintf(out, "%s\n           bar: %s — %s\n\n", r, bar, verdict)
}

// hashingLimit is cores ÷ one argon2id hash time, measured here (run the
// harness on the server's machine, as SPEC §10 does).
func hashingLimit(p password.Params) float64 {
	const n = 5
	start := time.Now()
	for range n {
		password.Hash("authd-load probe", p)
	}
	return float64(runtime.NumCPU()) / (time.Since(start).Seconds() / n)
}

// burst fires 1,000 concurrent logins and samples the server's resident
// memory from its /metrics (on the admin listener) meanwhile (SPEC §10:
// under 300 MiB).
func burst(ctx context.Context, o options, out io.Writer) error {
	const n = 1000
	body, _ := json.Marshal(map[string]string{"email": o.email, "password": o.password})
	var peak atomic.Int64
	sampling, stop := context.WithCancel(ctx)
	defer stop()
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for sampling.Err() == nil {
			if rss, err := residentMemory(ctx, o.metricsURL); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	var okN, busy, other atomic.Int64
	start := time.Now()
	for range n {
		wg.Go(func() {
			code, _, err := call(ctx, "POST", o.url+"/v1/auth/login", string(body))
			switch {
			case err == nil && code == 200:
				okN.Add(1)
			case err == nil && code == 503:
				busy.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	sampler.Wait()
	mib := float64(peak.Load()) / (1 << 20)
	fmt.Fprintf(out, "burst      %4d concurrent logins in %.1f s: %d ok, %d 503 (queue full, Retry-After), %d other\n"+
		"           peak server RSS %.0f MiB; bar: < 300 MiB — %s\n\n",
		n, elapsed.Seconds(), okN.Load(), busy.Load(), other.Load(), mib, map[bool]string{true: "meets", false: "below"}[mib > 0 && mib < 300])
	if peak.Load() == 0 {
		return errors.New("could not read process_resident_memory_bytes from /metrics")
	}
	return nil
}

// residentMemory reads process_resident_memory_bytes from /metrics.
func residentMemory(ctx context.Context, base string) (int64, error) {
	code, body, err := call(ctx, "GET", base+"/metrics", "")
	if err != nil || code != 200 {
		return 0, fmt.Errorf("/metrics: %d %v", code, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int64(f), err
		}
	}
	return 0, errors.New("no process_resident_memory_bytes")
}
