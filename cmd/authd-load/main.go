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
// -clients 1,8,32,64 runs each throughput scenario once per count, and
// -json FILE writes every result (loadReport); `authd-load chart -out
// FILE.svg IN.json …` draws such files as one SVG (chart.go).
//
// With -fault it runs the fault run instead (fault.go): it starts two
// authd instances itself, loads them while it kills one, restarts
// PostgreSQL and stops Redis, and checks that nothing acknowledged was lost.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
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
	clients                                        []int // each throughput scenario runs once per count; nil: its own (defaultClients)
	label                                          string
	argon2                                         password.Params
	ownAccounts                                    bool // login: each client as an account of its own
}

// defaultClients is each throughput scenario's client count without
// -clients: the count its bar (SPEC §10) is stated at.
var defaultClients = map[string]int{"introspect": 32, "me": 32, "refresh": 32, "login": 16, "register": 16}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if fault, rest := isFaultRun(args); fault {
		return runFault(ctx, rest, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "chart" {
		return runChart(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("authd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "base URL of the authd under load")
	fs.StringVar(&o.metricsURL, "metrics-url", "http://127.0.0.1:8081", "base URL of its admin listener (AUTHD_ADMIN_ADDR), which alone serves /metrics")
	fs.StringVar(&o.email, "email", "active@demo.authd.dev", "a verified account (authd seed makes this one)")
	fs.StringVar(&o.password, "password", "authd-demo-Passw0rd", "its password")
	fs.BoolVar(&o.ownAccounts, "own-accounts", false,
		"login: each client logs in as an account of its own, registered first (start the server with AUTHD_REQUIRE_VERIFIED_EMAIL=false); default: every client as -email")
	fs.StringVar(&o.serviceToken, "service-token", os.Getenv("AUTHD_LOAD_SERVICE_TOKEN"),
		"one of the server's AUTHD_SERVICE_TOKENS, for introspection (env AUTHD_LOAD_SERVICE_TOKEN)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each scenario runs")
	fs.Bool("fault", false, "run the fault run instead of the scenarios: two instances, SIGKILL, PostgreSQL and Redis outages, a ledger (authd-load -fault -help)")
	scenarios := fs.String("scenarios", "introspect,me,refresh,login,burst", "comma-separated: introspect, me, refresh, login, register, burst")
	clients := fs.String("clients", "", "comma-separated client counts, e.g. 1,8,32,64: each scenario but burst runs once per count (default: each scenario's own, 32 or 16)")
	jsonPath := fs.String("json", "", "also write every result to this file as JSON (authd-load chart draws it)")
	fs.StringVar(&o.label, "label", "", `a name for this run in the JSON and the chart, e.g. "postgres" or "sqlite"`)
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
	var err error
	if o.clients, err = parseClients(*clients); err != nil {
		fmt.Fprintf(stderr, "authd-load: -clients: %v\nhint: give positive whole numbers separated by commas, e.g. -clients 1,8,32,64\n", err)
		return 2
	}
	var jsonFile *os.File
	if *jsonPath != "" {
		// Created before the run, so that a bad path fails now rather
		// than after a long sweep.
		if jsonFile, err = os.Create(*jsonPath); err != nil {
			fmt.Fprintf(stderr, "authd-load: %v\nhint: -json needs a file in a directory that exists and is writable\n", err)
			return 1
		}
		defer jsonFile.Close()
	}
	rep := loadReport{URL: o.url, Label: o.label, Started: time.Now().UTC().Format(time.RFC3339),
		DurationS: o.duration.Seconds(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Results: []result{}}
	err = loadTest(ctx, o, stdout, &rep)
	if jsonFile != nil {
		// Written even after a failure: the runs that finished are kept.
		if werr := writeJSON(jsonFile, rep); werr != nil && err == nil {
			fmt.Fprintf(stderr, "authd-load: writing %s: %v\nhint: check the disk and the file's permissions\n", *jsonPath, werr)
			return 1
		}
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "authd-load: interrupted\nhint: the runs that finished are in the -json file, if one was given\n")
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "authd-load: %v\nhint: start the server with AUTHD_RATE_LIMIT=off and AUTHD_SERVICE_TOKENS, and run authd seed\n", err)
		return 1
	}
	return 0
}

// parseClients reads -clients: "" is nil (each scenario's own count).
func parseClients(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var counts []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive client count", strings.TrimSpace(f))
		}
		counts = append(counts, n)
	}
	return counts, nil
}

func writeJSON(f *os.File, rep loadReport) error {
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	return f.Close()
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

// loadReport is what -json writes and `authd-load chart` reads. Its field
// names are stable; add fields, never rename them:
//
//	url         the base URL under load
//	label       the -label flag, free text ("postgres", "sqlite"); the chart's legend
//	started     when the run started, RFC 3339 in UTC
//	duration_s  how long each scenario ran at each client count (-duration), seconds
//	cores       the load machine's cores (runtime.NumCPU)
//	go_version  the Go that built authd-load
//	results     one entry per scenario and client count, in the order they ran;
//	            burst is not among them (it reports memory, not throughput)
type loadReport struct {
	URL       string   `json:"url"`
	Label     string   `json:"label"`
	Started   string   `json:"started"`
	DurationS float64  `json:"duration_s"`
	Cores     int      `json:"cores"`
	GoVersion string   `json:"go_version"`
	Results   []result `json:"results"`
}

// result is one scenario's outcome at one client count. In JSON:
//
//	scenario   introspect, me, refresh, login or register
//	clients    concurrent clients, each sending one request at a time
//	ok         requests answered 200 or 204 (register: 201 or 202)
//	errors     every other answer or transport error
//	statuses   errors by HTTP status, as strings ("0": no answer)
//	elapsed_s  wall time of the run, seconds
//	rate       ok ÷ elapsed_s, requests per second
//	p50_ms, p90_ms, p99_ms, max_ms   latency of the ok requests, milliseconds (0 when none)
type result struct {
	Scenario string        `json:"scenario"`
	Clients  int           `json:"clients"`
	OK       int64         `json:"ok"`
	Errors   int64         `json:"errors"`
	Statuses map[int]int64 `json:"statuses"`
	ElapsedS float64       `json:"elapsed_s"`
	Rate     float64       `json:"rate"`
	P50Ms    float64       `json:"p50_ms"`
	P90Ms    float64       `json:"p90_ms"`
	P99Ms    float64       `json:"p99_ms"`
	MaxMs    float64       `json:"max_ms"`
}

func (r result) String() string {
	return fmt.Sprintf("%-10s %4d clients  %9.0f req/s  p50 %6.1f ms  p90 %6.1f ms  p99 %6.1f ms  max %6.1f ms  errors %d %v",
		r.Scenario, r.Clients, r.Rate, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs, r.Errors, r.Statuses)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// sender sends one request as client worker and returns the HTTP status.
type sender func(ctx context.Context, worker int) (int, error)

// drive runs fn on n clients for d and measures each call. fn returns the
// HTTP status; 200 and 204 count as successes.
func drive(ctx context.Context, name string, n int, d time.Duration, fn sender) result {
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
	elapsed := time.Since(start)
	r := result{Scenario: name, Clients: n, OK: ok.Load(), Errors: fails.Load(), Statuses: statuses,
		ElapsedS: elapsed.Seconds(), Rate: float64(ok.Load()) / elapsed.Seconds()}
	slices.Sort(latencies)
	if k := len(latencies); k > 0 {
		r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs = ms(latencies[k/2]), ms(latencies[k*90/100]), ms(latencies[k*99/100]), ms(latencies[k-1])
	}
	return r
}

func loadTest(ctx context.Context, o options, out io.Writer, rep *loadReport) error {
	if _, err := o.login(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "authd-load against %s, %s per scenario, %d local cores\n\n", o.url, o.duration, runtime.NumCPU())
	for _, sc := range o.scenarios {
		sc = strings.TrimSpace(sc)
		if sc == "burst" {
			if err := burst(ctx, o, out); err != nil {
				return err
			}
			continue
		}
		own, ok := defaultClients[sc]
		if !ok {
			return fmt.Errorf("unknown scenario %q", sc)
		}
		counts := o.clients
		if counts == nil {
			counts = []int{own}
		}
		w, err := o.workload(ctx, sc)
		if err != nil {
			return err
		}
		for _, n := range counts {
			fn, err := w.prepare(ctx, n)
			if err != nil {
				return err
			}
			if n == own && w.before != nil {
				w.before(ctx)
			}
			r := drive(ctx, sc, n, o.duration, fn)
			if err := ctx.Err(); err != nil {
				return err // a run cut short is no measurement
			}
			rep.Results = append(rep.Results, r)
			if n != own {
				fmt.Fprintf(out, "%s\n\n", r) // the bar is stated at the scenario's own count
				continue
			}
			bar, met := w.bar(r)
			verdict := map[bool]string{true: "meets", false: "below"}[met]
			fmt.Fprintf(out, "%s\n           bar: %s — %s\n\n", r, bar, verdict)
		}
	}
	return nil
}

// workload is one throughput scenario: prepare readies n clients (the
// refresh scenario logs in a session for each) and returns what each one
// sends; before, if set, runs just before the run at the scenario's own
// client count (measuring what its bar compares with); bar judges that run.
type workload struct {
	prepare func(ctx context.Context, n int) (sender, error)
	before  func(ctx context.Context)
	bar     func(r result) (string, bool)
}

func (o options) workload(ctx context.Context, scenario string) (workload, error) {
	// Each scenario logs in afresh: a scenario before it may have logged
	// in past the server's session limit and so ended older sessions.
	p, err := o.login(ctx)
	if err != nil {
		return workload{}, err
	}
	same := func(fn sender) func(context.Context, int) (sender, error) {
		return func(context.Context, int) (sender, error) { return fn, nil }
	}
	// The hashing limit is measured before the run, once the server has
	// settled: measured after it, the server's last queued hashes would
	// share the cores and understate it.
	var limit float64
	measureLimit := func(ctx context.Context) {
		sleep(ctx, time.Second)
		limit = hashingLimit(o.argon2)
	}
	hashing := func(r result) (string, bool) {
		return fmt.Sprintf("≥ 90 %% of the hashing limit %.1f/s: %.0f %%", limit, r.Rate/limit*100), r.Rate >= 0.9*limit
	}
	switch scenario {
	case "introspect":
		if o.serviceToken == "" {
			return workload{}, errors.New("introspect needs -service-token")
		}
		body := `{"token":"` + p.AccessToken + `"}`
		return workload{prepare: same(func(ctx context.Context, _ int) (int, error) {
			code, b, err := call(ctx, "POST", o.url+"/v1/auth/introspect", body, "Authorization", "Bearer "+o.serviceToken)
			if err == nil && code == 200 && !bytes.Contains(b, []byte(`"active":true`)) {
				code = 0 // answered, but the token is not active: revocation or a bug
			}
			return code, err
		}), bar: func(r result) (string, bool) { return "≥ 10,000 req/s", r.Rate >= 10000 }}, nil
	case "me":
		return workload{prepare: same(func(ctx context.Context, _ int) (int, error) {
			code, _, err := call(ctx, "GET", o.url+"/v1/users/me", "", "Authorization", "Bearer "+p.AccessToken)
			return code, err
		}), bar: func(r result) (string, bool) { return "≥ 5,000 req/s", r.Rate >= 5000 }}, nil
	case "refresh":
		// Fresh sessions for every run: a rotation cut off when the
		// previous run ended may have gone through on the server, and its
		// token must not be presented again as reuse.
		prepare := func(ctx context.Context, n int) (sender, error) {
			tokens := make([]string, n)
			for i := range tokens {
				s, err := o.login(ctx)
				if err != nil {
					return nil, err
				}
				tokens[i] = s.RefreshToken
			}
			return func(ctx context.Context, w int) (int, error) {
				code, b, err := call(ctx, "POST", o.url+"/v1/auth/refresh", `{"refresh_token":"`+tokens[w]+`"}`)
				var next pair
				if err == nil && code == 200 && json.Unmarshal(b, &next) == nil {
					tokens[w] = next.RefreshToken
				}
				return code, err
			}, nil
		}
		return workload{prepare: prepare, bar: func(r result) (string, bool) {
			return "≥ 2,000 req/s, p99 < 50 ms (PostgreSQL)", r.Rate >= 2000 && r.P99Ms < 50
		}}, nil
	case "login":
		if o.ownAccounts {
			return workload{prepare: o.ownLogins, before: measureLimit, bar: hashing}, nil
		}
		body, _ := json.Marshal(map[string]string{"email": o.email, "password": o.password})
		return workload{prepare: same(func(ctx context.Context, _ int) (int, error) {
			code, _, err := call(ctx, "POST", o.url+"/v1/auth/login", string(body))
			return code, err
		}), before: measureLimit, bar: hashing}, nil
	default: // register
		var n atomic.Int64
		run := time.Now().UnixNano()
		return workload{prepare: same(func(ctx context.Context, _ int) (int, error) {
			body := fmt.Sprintf(`{"email":"load-%d-%d@example.org","password":"correct horse battery staple 9","consent":true}`, run, n.Add(1))
			code, _, err := call(ctx, "POST", o.url+"/v1/auth/register", body)
			if code == http.StatusAccepted || code == http.StatusCreated {
				code = http.StatusOK
			}
			return code, err
		}), before: measureLimit, bar: hashing}, nil
	}
}

// ownLogins registers an account for each of n clients and returns a
// sender that logs client w in as its own: logins of one account queue on
// its row, which many users' logins do not. A new account must be able to
// log in at once (AUTHD_REQUIRE_VERIFIED_EMAIL=false), which the first
// login checks. The accounts stay; their password is random and never
// shown, so no one can sign in to them on a server that outlives the run.
func (o options) ownLogins(ctx context.Context, n int) (sender, error) {
	pw := rand.Text()
	bodies := make([]string, n)
	run := time.Now().UnixNano()
	for i := range bodies {
		email := fmt.Sprintf("login-%d-%d@example.org", run, i)
		reg, _ := json.Marshal(map[string]any{"email": email, "password": pw, "consent": true})
		code, out, err := call(ctx, "POST", o.url+"/v1/auth/register", string(reg))
		switch {
		case err != nil:
			return nil, err
		case code != http.StatusAccepted && code != http.StatusCreated:
			return nil, fmt.Errorf("-own-accounts: registering %s: %d %s", email, code, bytes.TrimSpace(out))
		}
		login, _ := json.Marshal(map[string]string{"email": email, "password": pw})
		bodies[i] = string(login)
	}
	code, out, err := call(ctx, "POST", o.url+"/v1/auth/login", bodies[0])
	switch {
	case err != nil:
		return nil, err
	case code != http.StatusOK:
		return nil, fmt.Errorf("-own-accounts: a new account's login answered %d %s (the server needs AUTHD_REQUIRE_VERIFIED_EMAIL=false)",
			code, bytes.TrimSpace(out))
	}
	return func(ctx context.Context, w int) (int, error) {
		code, _, err := call(ctx, "POST", o.url+"/v1/auth/login", bodies[w])
		return code, err
	}, nil
}

// hashingLimit is how many argon2id hashes a second this machine sustains
// with every core hashing and nothing else running (run the harness on the
// server's machine, as SPEC §10 does): all cores hash for two seconds.
// Hashes running side by side share memory bandwidth, so one hash timed
// alone would overstate the limit, and a mean taken while the server still
// finishes the previous scenario would understate it.
func hashingLimit(p password.Params) float64 {
	const window = 2 * time.Second
	var n atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for time.Since(start) < window {
				password.Hash("authd-load probe", p)
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
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
