package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/internal/connlimit"
	"github.com/authd/authd/mail"
	"github.com/authd/authd/metrics"
	"github.com/authd/authd/oidc"
	"github.com/authd/authd/password"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/ratelimit"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/token"
)

// outboxPoll is how often the mail sender looks for mail queued by other
// instances or due for a retry; mail queued here is sent at once.
const outboxPoll = 2 * time.Second

func serveCmd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "authd serve [flags]\n\nRuns the public API on AUTHD_HTTP_ADDR, and /metrics and the admin API on\nAUTHD_ADMIN_ADDR, until SIGTERM, SIGINT or SIGHUP, then shuts down gracefully.\nFlags override the environment, which overrides .env.")
	flags := configFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments")
	}
	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		if jsonLogs(flags, e.getenv) {
			return logFailure(slog.New(slog.NewJSONHandler(e.stderr, nil)), err)
		}
		return err
	}
	logger := newLogger(cfg, e.stderr)
	for _, u := range unknownSettings(e.names) {
		attrs := []any{"name", u.name}
		if u.near != "" { // a setting close enough to be the one meant
			attrs = append(attrs, "did_you_mean", u.near)
		}
		logger.Warn("not a setting, ignored: a misspelling?", attrs...)
	}
	// With JSON logs every line serve writes is one JSON object, so that a
	// log collector never meets a line it cannot parse.
	fail := func(err error) error {
		if cfg.LogFormat == "json" {
			return logFailure(logger, err)
		}
		return err
	}
	app := NewApp(cfg, logger)
	if err := app.Open(ctx); err != nil {
		return fail(err)
	}
	defer app.Close()
	url := "http://" + app.Addr().String()
	if cfg.LogFormat == "json" {
		// Whatever AUTHD_LOG_LEVEL: the banner is printed as in text.
		slog.New(slog.NewJSONHandler(e.stdout, nil)).Info("authd listening on "+url, "url", url)
	} else {
		fmt.Fprintf(e.stdout, "authd listening on %s\n", url)
	}
	return fail(app.Run(ctx))
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// App is a running authd: its database, its listeners and its background
// jobs. Tests start the same App on port 0.
type App struct {
	cfg      *Config
	logger   *slog.Logger
	clock    authd.Clock
	db       database
	keys     *token.Keyring
	idKeys   *token.Keyring // RS256, for OpenID Connect ID tokens; keys when that is RS256 too
	service  *authd.Service
	hasher   *password.Hasher // the service's, kept for tests that fill its queue
	listener net.Listener
	server   *http.Server

	adminListener net.Listener // nil when AUTHD_ADMIN_ADDR is empty
	admin         *http.Server
	closers       []func() error
	flushLogs     []func()    // after shutdown: the shed-request counts held back
	sweeping      atomic.Bool // a sweep of expired locks runs (sweepLocks)
	stopping      atomic.Bool // a stop began: /readyz answers 503
	requests      inflight    // the handlers running, on both listeners

	// shutdownTimeout and stopTimeout, but in tests
	drainTime, stopTime time.Duration
}

// NewApp returns an App for cfg; Open starts it.
func NewApp(cfg *Config, logger *slog.Logger) *App {
	return &App{cfg: cfg, logger: logger, clock: authd.SystemClock{}, drainTime: shutdownTimeout, stopTime: stopTimeout}
}

// warnOfSettings tells, at start, of settings that work but are likely
// mistakes: each is served as set.
func (a *App) warnOfSettings() {
	if a.cfg.publicURLElsewhere() {
		a.logger.Warn("AUTHD_PUBLIC_URL names this machine on another port than authd listens on: "+
			"links in mails, the tokens' iss and the OpenID discovery point there; set AUTHD_PUBLIC_URL",
			"AUTHD_PUBLIC_URL", a.cfg.PublicURL, "AUTHD_HTTP_ADDR", a.cfg.HTTPAddr)
	}
	for _, p := range a.cfg.TrustedProxies {
		if p.Bits() == 0 {
			a.logger.Warn("AUTHD_TRUSTED_PROXIES trusts every address: any client sets the IP its rate limits and the "+
				"security log see with X-Forwarded-For; list the proxies' own addresses", "prefix", p.String())
		}
	}
	if a.cfg.issuerNotURL() {
		a.logger.Warn("AUTHD_ISSUER is no http(s) URL: access tokens carry it as it is, but OpenID Connect relying "+
			"parties fetch the discovery from the issuer and refuse this one; set it to the URL authd is reached at",
			"AUTHD_ISSUER", a.cfg.Issuer)
	} else if _, ok := oidc.IssuerDiscoveryPath(a.cfg.Issuer); !ok {
		a.logger.Warn("AUTHD_ISSUER's path is not one authd routes (segments of letters, digits, \"-._~\"): "+
			"OpenID Connect relying parties fetch the discovery from the issuer and will not find it; "+
			"set it to the URL authd is reached at", "AUTHD_ISSUER", a.cfg.Issuer)
	}
	for _, l := range a.cfg.shortLifetimes() {
		a.logger.Warn("a lifetime is under a minute: fine for trying expiry, too short for production",
			"setting", l.env, "value", l.value.String())
	}
	if end := min(a.cfg.RefreshTokenTTL, a.cfg.SessionMaxAge); end < a.cfg.AccessTokenTTL {
		a.logger.Warn("access tokens end with their session: they live at most the shorter of AUTHD_REFRESH_TOKEN_TTL "+
			"and AUTHD_SESSION_MAX_AGE, not AUTHD_ACCESS_TOKEN_TTL", "AUTHD_ACCESS_TOKEN_TTL", a.cfg.AccessTokenTTL.String(),
			"at_most", end.String())
	}
}

// Open connects to the database (refusing one whose schema is behind),
// loads the signing keys, builds the service and binds the listener.
func (a *App) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	a.warnOfSettings()
	// A templates directory that is not there (a typo, a volume not
	// mounted) would serve the embedded mails and pages without a word.
	if dir := a.cfg.TemplatesDir; dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return &cliError{msg: fmt.Sprintf("AUTHD_TEMPLATES_DIR=%s is not a directory authd can read", dir),
				hint: "create it with the templates that override the embedded ones (the README says which file overrides what), or unset it"}
		}
	}
	// The mailer first: refusing to start should leave no database or key
	// behind.
	renderer, err := mail.NewRenderer(a.cfg.PublicURL, a.cfg.TemplatesDir)
	if err != nil {
		return &cliError{msg: err.Error(), hint: "fix the template in AUTHD_TEMPLATES_DIR or remove it to use the embedded one"}
	}
	mailer, err := a.mailer(renderer)
	if err != nil {
		return err
	}
	if a.db, err = openServing(ctx, a.cfg, a.logger); err != nil {
		return err
	}
	if pg, ok := a.db.(*postgres.Store); ok {
		pg.SetLogger(a.logger)
	}
	secrets, err := sharedSecrets(ctx, a.db, a.cfg.KeysDir, a.clock.Now(),
		"set AUTHD_KEYS_DIR to the directory the other instances (or the last run) use", token.RefreshSecret, token.MFASecret)
	if err != nil {
		return err
	}
	if loose := looseKeyFiles(a.cfg.KeysDir); len(loose) > 0 {
		a.logger.Warn("key files that others than their owner may read or write: chmod 600 them (and 700 the directory)",
			"dir", a.cfg.KeysDir, "files", strings.Join(loose, ", "))
	}
	if a.keys, err = token.OpenKeyring(a.cfg.KeysDir, a.cfg.SigningAlg, a.clock.Now()); err != nil {
		return &cliError{msg: "signing keys: " + err.Error(),
			hint: "AUTHD_KEYS_DIR must be a writable directory of PKCS#8 PEM private keys; see `authd keys --help`"}
	}
	a.idKeys = a.keys
	if a.keys.Alg() != token.IDTokenAlg {
		if a.idKeys, err = token.OpenKeyring(a.cfg.KeysDir, token.IDTokenAlg, a.clock.Now()); err != nil {
			return &cliError{msg: "ID-token signing keys: " + err.Error(),
				hint: "AUTHD_KEYS_DIR must be a writable directory of PKCS#8 PEM private keys; see `authd keys --help`"}
		}
	}
	svcCfg := a.cfg.service()
	svcCfg.RefreshKey, svcCfg.MFAKey = secrets[0], secrets[1]
	svcCfg.RevocationMaxLag = revocationMaxLag
	m := metrics.New()
	m.Pool(a.poolStats)
	hasher := password.NewHasher(a.cfg.Argon2, password.Policy{MinLength: a.cfg.PasswordMinLength})
	hasher.Observe = m.Hash
	a.hasher = hasher
	hasher.Malformed = func(err error) {
		a.logger.Warn("a stored password hash cannot be checked and never matches: its owner must reset the password",
			"err", err)
	}
	if err := a.coverBcrypt(ctx, hasher); err != nil {
		return err
	}
	if err := a.coverArgon2(ctx, hasher); err != nil {
		return err
	}
	var limiter authd.RateLimiter
	var lockouts authd.Lockouts = ratelimit.NewMemoryLockouts(ratelimit.Monotonic{})
	fallback := func() bool { return false }
	// The lockouts of addresses without an account are no rate limit: they
	// stay on with AUTHD_RATE_LIMIT=off, and in Redis when it is set, or
	// instances would each count them where an account's count is shared,
	// and a few guesses on two instances would tell the two apart.
	switch {
	case a.cfg.RedisURL != "":
		r, err := ratelimit.NewRedis(ctx, a.cfg.RedisURL, ratelimit.Monotonic{}, a.logger)
		if err != nil {
			return err
		}
		a.closers = append(a.closers, r.Close)
		lockouts, fallback = r, r.Fallback
		if a.cfg.RateLimit {
			limiter = r
		}
	case a.cfg.RateLimit:
		limiter = ratelimit.NewMemory(ratelimit.Monotonic{})
	}
	if !a.cfg.RateLimit {
		a.logger.Warn("rate limits are off (AUTHD_RATE_LIMIT=off); lockouts stay on")
	}
	m.RateLimitFallback(fallback)
	a.service = authd.NewService(svcCfg, authd.Deps{
		Store:     a.db,
		Clock:     a.clock,
		Passwords: hasher,
		Tokens:    token.NewIssuer(a.keys, a.cfg.Issuer, a.cfg.Audience),
		Mailer:    mailer,
		Archive:   a.cfg.mailArchive(),
		Limiter:   limiter,
		Lockouts:  lockouts,
		Logger:    a.logger,
		Hooks:     authd.Hooks{Event: m.Event, Mail: m.Mail},
	})
	m.Outbox(a.service.OutboxStats)
	m.Revocations(a.service.Revocations())
	if err := a.service.LoadRevocations(ctx); err != nil {
		return err
	}
	if _, err := a.service.OAuthClient(ctx, a.cfg.Audience); err == nil {
		a.logger.Error("an OpenID client's id is AUTHD_AUDIENCE: its ID tokens carry the aud of every access token, "+
			"so a resource server that checks only signature, issuer and audience would take one for an access token; "+
			"create the client again under another id and delete this one", "client_id", a.cfg.Audience)
	}
	opts := httpapi.Options{
		Service:    a.service,
		JWKS:       a.jwks,
		JWKSMaxAge: token.JWKSMaxAge,
		Ready:      a.ready(secrets, token.RefreshSecret, token.MFASecret),
		Logger:     a.logger, ServiceTokens: a.cfg.ServiceTokens, MaxRevocationStreams: a.cfg.RevocationStreams,
		TrustedProxies: a.cfg.TrustedProxies, CORSOrigins: a.cfg.CORSOrigins,
		PasswordMinLength: a.cfg.PasswordMinLength,
		HSTS:              strings.HasPrefix(a.cfg.PublicURL, "https://"),
		PublicURL:         a.cfg.PublicURL,
		Observe:           m.Request,
	}
	// zitadel/oidc logs through the default logger (its route list, the
	// token endpoint's refusals): make that serve's, so that with
	// AUTHD_LOG_FORMAT=json every line is still one JSON object, less the
	// library's chatter.
	slog.SetDefault(slog.New(quietLibrary{a.logger.Handler()}))
	provider, err := oidc.New(oidc.Options{Service: a.service, Issuer: a.cfg.Issuer, PublicURL: a.cfg.PublicURL,
		IDKeys: a.idKeys, IDTokenTTL: a.cfg.AccessTokenTTL, FormKey: formKey(svcCfg.RefreshKey),
		Client: httpapi.RequestClient, Clock: a.clock.Now, Logger: a.logger,
		AppName: a.cfg.AppName, BrandColor: a.cfg.BrandColor, LogoURL: a.cfg.LogoURL, TemplatesDir: pagesDir(a.cfg.TemplatesDir)})
	if err != nil {
		return &cliError{msg: err.Error(), hint: "fix or remove the file in $AUTHD_TEMPLATES_DIR/oidc; the embedded pages are in oidc/pages"}
	}
	opts.Mounts = []httpapi.Mount{{Patterns: provider.Patterns(), Handler: provider}}
	if a.cfg.TemplatesDir != "" {
		if opts.Pages, err = httpapi.LoadPages(filepath.Join(a.cfg.TemplatesDir, "pages")); err != nil {
			return &cliError{msg: err.Error(), hint: "fix or remove $AUTHD_TEMPLATES_DIR/pages/pages.html; the embedded one is httpapi/pages/pages.html"}
		}
	}
	if a.listener, err = listen(a.cfg.HTTPAddr, "AUTHD_HTTP_ADDR"); err != nil {
		return err
	}
	// Bounded, so that no crowd of connections uses up the descriptors
	// (the database's, the keys', the admin listener's) or the memory;
	// a trusted proxy's carry many clients.
	bounded := connlimit.New(a.listener, a.cfg.MaxConnections, a.cfg.MaxConnectionsPerIP, func(ip netip.Addr) bool {
		return slices.ContainsFunc(a.cfg.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(ip) })
	})
	a.listener = bounded
	m.Connections(func() metrics.ConnStats {
		full, client := bounded.Refused()
		return metrics.ConnStats{Open: bounded.Open(), RefusedFull: full, RefusedClient: client, Evicted: bounded.Evicted()}
	})
	api := httpapi.New(opts)
	a.server = a.httpServer(api)
	a.server.ConnState = bounded.ConnState
	// Or the revocation feed's streams would hold a graceful shutdown up.
	a.server.RegisterOnShutdown(api.EndStreams)
	a.flushLogs = append(a.flushLogs, api.FlushLog, provider.FlushLog)
	opts.Metrics = m.Handler() // the admin listener's only
	if a.cfg.AdminAddr == "" {
		a.logger.Info("admin listener disabled (metrics and admin API): AUTHD_ADMIN_ADDR is empty")
		return nil
	}
	if a.adminListener, err = listen(a.cfg.AdminAddr, "AUTHD_ADMIN_ADDR"); err != nil {
		return err
	}
	adminBounded := connlimit.New(a.adminListener, maxAdminConnections, 0, nil)
	a.adminListener = adminBounded
	adminOpts := opts
	adminOpts.CORSOrigins = nil // the admin listener is never called from browsers
	adminAPI := httpapi.NewAdmin(adminOpts, a.cfg.AdminToken)
	a.admin = a.httpServer(adminAPI)
	a.admin.ConnState = adminBounded.ConnState
	a.flushLogs = append(a.flushLogs, adminAPI.FlushLog)
	return nil
}

// mailer is SMTP when AUTHD_SMTP_URL is set, else the dev mailer, which
// logs live reset links: it runs with a public AUTHD_PUBLIC_URL only when
// AUTHD_DEV_MAILER=on says so.
func (a *App) mailer(renderer *mail.Renderer) (authd.Mailer, error) {
	if a.cfg.SMTPURL != "" {
		m, err := mail.NewSMTP(a.cfg.SMTPURL, a.cfg.MailFrom, renderer)
		if err != nil {
			return nil, err
		}
		m.SetLogger(a.logger)
		return m, nil
	}
	dir := a.cfg.mailArchive().Dir
	if u, err := url.Parse(a.cfg.PublicURL); err == nil && !mail.Loopback(u.Hostname()) {
		if !a.cfg.DevMailer {
			return nil, &cliError{
				msg: "refusing to start: AUTHD_SMTP_URL is unset and AUTHD_DEV_MAILER is off, yet AUTHD_PUBLIC_URL is " +
					"not on this machine; the dev mailer would log live reset links",
				hint: "set AUTHD_SMTP_URL to your mail relay, or AUTHD_DEV_MAILER=on if this is a test system"}
		}
		a.logger.Warn("development mailer with a public AUTHD_PUBLIC_URL (AUTHD_DEV_MAILER=on): reset and "+
			"verification links go to this log and to files, not to their owners; set AUTHD_SMTP_URL for real mail",
			"public_url", a.cfg.PublicURL, "dir", dir)
	} else if host, _, err := net.SplitHostPort(a.cfg.HTTPAddr); err == nil && !mail.Loopback(host) {
		// A loopback public URL but a listener others can reach (a container,
		// say): allowed for trying authd, but the logged links are live.
		a.logger.Warn("development mailer on a listener other machines can reach: reset and verification links "+
			"are written to this log and to files; set AUTHD_SMTP_URL before real users sign up",
			"http_addr", a.cfg.HTTPAddr, "dir", dir)
	}
	return &mail.Dev{Dir: dir, From: a.cfg.MailFrom, Renderer: renderer, Logger: a.logger}, nil
}

func listen(addr, setting string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hint := "stop what uses that address or set " + setting
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr), errors.Is(err, syscall.EADDRNOTAVAIL):
			hint = "the address is not one of this machine's (or a name it cannot resolve): set " + setting +
				" to one of its addresses (or :PORT for all)"
		case errors.Is(err, syscall.EACCES):
			hint = "ports below 1024 need privileges: set " + setting + " to a higher port, or give authd CAP_NET_BIND_SERVICE"
		}
		return nil, &cliError{msg: fmt.Sprintf("cannot listen on %s: %v", addr, err), hint: hint}
	}
	return ln, nil
}

// quietLibrary is the handler of the default logger: serve's, except that
// zitadel/oidc's lines below error are told at debug: a "registered route"
// per endpoint at every start, and a "request error" per refused request,
// a second line beside the request's own (whose status says it), which
// anyone could have written at warn as fast as they can send requests; the
// refusal's reason is in its answer. Its failures (error) keep their level.
// A line of the library's about a request carries the request's id. Every
// line of anything else that logs through the default, such as the log
// package, is told as it comes.
type quietLibrary struct{ slog.Handler }

func (h quietLibrary) Handle(ctx context.Context, r slog.Record) error {
	frame, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
	if !strings.HasPrefix(frame.Function, "github.com/zitadel/oidc/") {
		return h.Handler.Handle(ctx, r)
	}
	if r.Level < slog.LevelError {
		if !h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	if id := httpapi.RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietLibrary) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietLibrary{h.Handler.WithAttrs(attrs)}
}

func (h quietLibrary) WithGroup(name string) slog.Handler {
	return quietLibrary{h.Handler.WithGroup(name)}
}

// maxAdminConnections bounds the admin listener's connections (metrics
// scrapers, operators): descriptors of its own, which the public
// listener's crowd cannot take.
const maxAdminConnections = 128

// maxHeaderBlock bounds a request's line and headers: past it Go's server
// answers 431 itself. It reads 4,096 bytes past http.Server.MaxHeaderBytes
// before it refuses (its "bufio slop"), so that is set this much lower.
const maxHeaderBlock = 16 << 10

func (a *App) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           a.requests.track(h),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBlock - 4096,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
}

// AdminAddr is the address the admin listener is bound to, nil when
// AUTHD_ADMIN_ADDR is empty.
func (a *App) AdminAddr() net.Addr {
	if a.adminListener == nil {
		return nil
	}
	return a.adminListener.Addr()
}

// Addr is the address the public listener is bound to.
func (a *App) Addr() net.Addr { return a.listener.Addr() }

// Run serves until ctx ends, then stops within one deadline (see
// stopTimeout): it stops accepting, lets in-flight requests finish, lets
// the mail sender finish its pass and returns. Mail not sent stays in the
// outbox for the next start.
func (a *App) Run(ctx context.Context) error {
	jobs, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	work, cutWork := context.WithCancel(context.WithoutCancel(ctx)) // ended at the stop's deadline
	deadline := time.AfterFunc(math.MaxInt64, func() {              // set as the stop begins
		cutWork()
		stopJobs()
	})
	var wg sync.WaitGroup
	wg.Go(func() { a.service.RunOutbox(jobs, work, outboxPoll) })
	wg.Go(func() { a.maintain(jobs) })
	wg.Go(func() { a.service.RunRetention(jobs, a.cfg.SecurityLogRetention, time.Hour) })
	if feed, ok := a.db.(authd.RevocationFeed); ok {
		wg.Go(func() {
			feed.Listen(jobs, a.service.Revocations().Apply, func(ctx context.Context) {
				// Notifications sent while the listener was away are lost;
				// the feed's table has them all, in commit order. A
				// failure is retried within a second (maintain).
				ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
				defer cancel()
				if err := a.service.CatchUpRevocations(ctx); err != nil {
					a.logger.Warn("catching up with revocations after the listener reconnected", "err", err)
				}
			})
		})
	}
	defer func() {
		stopJobs()
		wg.Wait()
		deadline.Stop()
		cutWork()
	}()

	servers := []*http.Server{a.server}
	errc := make(chan error, 2)
	go func() { errc <- a.server.Serve(a.listener) }()
	if a.admin != nil {
		servers = append(servers, a.admin)
		go func() { errc <- a.admin.Serve(a.adminListener) }()
		api := "on"
		if a.cfg.AdminToken == "" {
			api = "off: set AUTHD_ADMIN_TOKEN to enable it"
		}
		a.logger.Info("admin listener (metrics, admin API) listening", "addr", a.adminListener.Addr().String(),
			"admin_api", api)
	}
	if a.cfg.WebAuthnRPID == "" {
		a.logger.Info("passkeys are off: AUTHD_PUBLIC_URL is on an IP address, which cannot be a WebAuthn relying party " +
			"(set AUTHD_PUBLIC_URL to http://localhost:PORT, or AUTHD_WEBAUTHN_RP_ID)")
	}
	a.logger.Info("authd started", "addr", a.listener.Addr().String(), "database", a.databaseKind(),
		"signing_key", a.keys.Signing(a.clock.Now()).ID, "alg", a.keys.Alg())
	serving := len(servers) // the servers whose Serve has not returned
	var failed error        // a Serve's, which stops the others
	select {
	case failed = <-errc:
		serving--
	case <-ctx.Done():
	}
	a.stopping.Store(true)
	end := time.Now().Add(a.stopTime)
	deadline.Reset(time.Until(end))
	if failed == nil && a.cfg.ShutdownDelay > 0 {
		// Lame duck: a load balancer that probes /readyz, or Kubernetes
		// removing the endpoint, stops sending requests before the
		// listeners close and refuse them.
		a.logger.Info("shutting down: /readyz answers 503; serving on until the listeners close",
			"delay", a.cfg.ShutdownDelay)
		// And each answer closes its connection: a client's pool (a
		// proxy's) then opens a new one, which goes elsewhere, rather than
		// send on this one until it is refused.
		for _, srv := range servers {
			srv.SetKeepAlivesEnabled(false)
		}
		time.Sleep(a.cfg.ShutdownDelay)
	}
	why := context.Cause(ctx)
	if failed != nil {
		why = failed
	}
	a.logger.Info("shutting down", "cause", why)
	// Last, whatever the shutdown's outcome: one that timed out under load
	// is when a count is most likely held back.
	defer func() {
		for _, flush := range a.flushLogs {
			flush()
		}
	}()
	return errors.Join(failed, a.shutdown(ctx, servers, end, errc, serving))
}

// coverBcrypt makes failed logins answer no sooner than a check of the
// costliest bcrypt hash imported and not yet upgraded takes
// (password.Hasher.CoverBcrypt), so that one wrong guess cannot tell those
// accounts apart from unknown emails. Hashes above password.MaxBcryptCost
// never match (and are not covered): they are logged.
func (a *App) coverBcrypt(ctx context.Context, h *password.Hasher) error {
	costs, err := a.db.BcryptCosts(ctx)
	if err != nil {
		return fmt.Errorf("reading the bcrypt costs of imported passwords: %w", err)
	}
	if slices.ContainsFunc(costs, func(c int) bool { return c > password.MaxBcryptCost }) {
		a.logger.Warn("bcrypt hashes above the costliest checked never match: their owners must reset their passwords",
			"max_cost", password.MaxBcryptCost)
	}
	costs = slices.DeleteFunc(costs, func(c int) bool { return c < 4 || c > password.MaxBcryptCost }) // 4: bcrypt's least
	if len(costs) == 0 {
		return nil
	}
	cost := slices.Max(costs)
	took, err := h.CoverBcrypt(cost)
	if err != nil {
		return err
	}
	a.logger.Info("failed logins answer no sooner than a check of the imported bcrypt hashes", "cost", cost, "floor", took)
	return nil
}

// coverArgon2 makes failed logins answer no sooner than a check of the
// costliest argon2id hash stored at a cost above AUTHD_ARGON2_* takes
// (password.Hasher.CoverArgon2): after the cost is lowered, such accounts
// would otherwise be told apart from unknown emails by one wrong guess
// until their owners next log in (and the hash is upgraded).
func (a *App) coverArgon2(ctx context.Context, h *password.Hasher) error {
	costs, err := a.db.Argon2Costs(ctx)
	if err != nil {
		return fmt.Errorf("reading the argon2id costs of stored passwords: %w", err)
	}
	if p, took := h.CoverArgon2(costs); took > 0 {
		a.logger.Info("failed logins answer no sooner than a check of the costlier argon2id hashes stored",
			"memory_kib", p.MemoryKiB, "iterations", p.Iterations, "parallelism", p.Parallelism, "floor", took)
	}
	return nil
}

// maintain runs the periodic upkeep until ctx ends: catching the
// revocation set up with the revocation feed's table twice a second, pruning
// it, lifting the timed locks that ran out and rereading the keys
// directory, which other instances and `authd keys rotate` write to.
//
// The catch-up is what bounds how late a revocation committed elsewhere
// (another instance, an `authd admin` command) reaches this instance, on
// every store: PostgreSQL's notifications bring it sooner, but one lost
// with a connection the listener has not yet found dead, or behind a
// pooler that does not carry them, would otherwise never arrive.
func (a *App) maintain(ctx context.Context) {
	slow := time.NewTicker(token.ReloadInterval)
	defer slow.Stop()
	fast := time.NewTicker(catchUpInterval)
	defer fast.Stop()
	behind := false // the last catch-up failed; told once, and when it works again
	var sweeps sync.WaitGroup
	defer sweeps.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fast.C:
			catchUp, cancel := context.WithTimeout(ctx, catchUpTimeout)
			err := a.service.CatchUpRevocations(catchUp)
			cancel()
			switch {
			case err != nil && ctx.Err() == nil && !behind:
				a.logger.Error("catching up with revocations; retrying twice a second", "err", err)
				behind = true
			case err == nil && behind:
				a.logger.Info("caught up with revocations again")
				behind = false
			}
		case <-slow.C:
			a.service.Revocations().Prune(a.clock.Now())
			a.sweepLocks(ctx, &sweeps)
			if err := a.keys.Reload(); err != nil {
				a.logger.Error("reloading signing keys", "err", err)
			}
			if a.idKeys != a.keys {
				if err := a.idKeys.Reload(); err != nil {
					a.logger.Error("reloading ID-token signing keys", "err", err)
				}
			}
		}
	}
}

// sweepLocks starts a sweep of the timed locks that ran out (UnlockExpired)
// unless the last one still runs, and returns at once: a sweep held up by
// the database (a row lock, a connection that hangs) must not hold up
// maintain's revocation catch-ups and key reloads, nor pile up behind
// itself. A sweep is given up after lockSweepTimeout; the next tick starts
// another. sweeps counts the running sweep, so that maintain returns only
// once it has ended.
func (a *App) sweepLocks(ctx context.Context, sweeps *sync.WaitGroup) {
	if !a.sweeping.CompareAndSwap(false, true) {
		return
	}
	sweeps.Go(func() {
		defer a.sweeping.Store(false)
		ctx, cancel := context.WithTimeout(ctx, lockSweepTimeout)
		defer cancel()
		n, err := a.service.UnlockExpired(ctx)
		if n > 0 {
			a.logger.Info("lifted expired locks", "accounts", n)
		}
		if err != nil && ctx.Err() != context.Canceled {
			a.logger.Error("lifting expired locks", "err", err)
		}
	})
}

// lockSweepTimeout bounds one sweep of expired locks: under the interval
// between sweeps, so that one that hangs is given up before the next.
const lockSweepTimeout = token.ReloadInterval - 5*time.Second

// catchUpInterval is how often every instance reads the revocation feed's
// table for revocations it has not heard of (SPEC §9: within one second,
// the read's own time included), and catchUpTimeout how long one read may
// take before the next try.
// revocationMaxLag is how long since the last catch-up that succeeded an
// instance still trusts its revocation set (authd.Config.RevocationMaxLag):
// past it, cut off from the database, it answers 503 to access tokens
// rather than take one revoked on another instance.
const (
	catchUpInterval = 500 * time.Millisecond
	// Shorter than revocationMaxLag: a slow read held past the lag would
	// hold the catch-up slot while the requests' own catch-ups give up, and
	// a merely slow database would answer every token 503.
	catchUpTimeout   = 2 * time.Second
	revocationMaxLag = 3 * time.Second
)

func (a *App) databaseKind() string {
	if strings.HasPrefix(a.cfg.DatabaseURL, "sqlite:") {
		return "sqlite"
	}
	return "postgres"
}

// poolStats reads the database pool for the metrics.
func (a *App) poolStats() metrics.PoolStats {
	switch db := a.db.(type) {
	case *postgres.Store:
		st := db.Pool().Stat()
		return metrics.PoolStats{InUse: int(st.AcquiredConns()), Idle: int(st.IdleConns()), Max: int(st.MaxConns()),
			WaitCount: st.EmptyAcquireCount()}
	case *sqlite.Store:
		st := db.DB().Stats()
		return metrics.PoolStats{InUse: st.InUse, Idle: st.Idle, Max: st.MaxOpenConnections, WaitCount: st.WaitCount}
	}
	return metrics.PoolStats{}
}

// Close releases what Open acquired.
func (a *App) Close() error {
	for _, ln := range []net.Listener{a.listener, a.adminListener} {
		if ln != nil {
			ln.Close()
		}
	}
	for _, c := range a.closers {
		c()
	}
	if a.db == nil {
		return nil
	}
	// Bounded: a pool waits for each connection cut mid-statement to hear
	// the server's answer to its cancellation (15 s), which a database that
	// stopped answering never gives; the process's exit closes them anyway.
	closed := make(chan error, 1)
	go func() { closed <- a.db.Close() }()
	select {
	case err := <-closed:
		return err
	case <-time.After(dbCloseTimeout):
		a.logger.Warn("the database's connections did not close in time (the database is not answering): left to the exit",
			"limit", dbCloseTimeout)
		return fmt.Errorf("closing the database: not done within %v", dbCloseTimeout)
	}
}

// ready is /readyz's check: the database answers at head, and still
// records the checks of the secrets this instance holds (keys[i] is
// secs[i]'s). `authd keys secrets --replace-lost` or `--adopt` run while
// the instance is up leaves it holding keys no instance started since
// holds: it is not ready until restarted with the new ones, so that a load
// balancer stops sending it requests whose CSRF forms, refresh retries
// and client secrets the others would not take. A check gone from the
// database (its table rolled back and migrated again) is recorded anew.
// The answer names nothing; the log says which key.
func (a *App) ready(keys [][]byte, secs ...token.Secret) func(context.Context) error {
	own := make([]authd.KeyCheck, len(secs))
	for i, sec := range secs {
		own[i] = authd.KeyCheck{Name: sec.File, Value: sec.Check(keys[i])}
	}
	return func(ctx context.Context) error {
		if a.stopping.Load() {
			return &authd.Error{Code: authd.EUnavailable, Message: "This instance is shutting down.", Err: httpapi.ErrStopping}
		}
		if err := a.db.Ready(ctx); err != nil {
			return err
		}
		recorded, err := a.db.KeyChecks(ctx)
		if err != nil {
			return err
		}
		for _, c := range own {
			if _, ok := recorded[c.Name]; !ok {
				c.RecordedAt = a.clock.Now()
				if recorded, err = a.db.RecordKeyChecks(ctx, []authd.KeyCheck{c}); err != nil {
					return err
				}
			}
			if r := recorded[c.Name]; r.Value != c.Value {
				return &authd.Error{Code: authd.EUnavailable, Message: "This instance is not ready.",
					Err: fmt.Errorf("the database's check of %s was replaced %s: restart this instance with the keys directory "+
						"the other instances use", c.Name, r.RecordedAt.UTC().Format(time.RFC3339))}
			}
		}
		return nil
	}
}

// formKey derives the key of the hosted pages' CSRF tokens from the shared
// refresh key, under its own label, so every instance agrees on it.
func formKey(refreshKey []byte) []byte {
	m := hmac.New(sha256.New, refreshKey)
	m.Write([]byte("authd form key v1"))
	return m.Sum(nil)
}

// jwks publishes the access-token keys and the ID-token keys. Both live in
// AUTHD_KEYS_DIR: once the access-token keyring finds it emptied (how an
// operator withdraws compromised keys), nothing is published until keys are
// back, without waiting for the ID-token keyring's next reload. A key
// `authd keys rotate` wrote is published at once: the keyrings reread the
// directory when it changed.
func (a *App) jwks() ([]byte, error) {
	for _, kr := range []*token.Keyring{a.keys, a.idKeys} {
		// An unreadable directory leaves the keys read before, an
		// emptied one none (answered below); the periodic reload logs
		// either.
		_ = kr.ReloadIfChanged()
	}
	now := a.clock.Now()
	if a.keys.Signing(now) == nil {
		return a.keys.JWKS(now, a.cfg.AccessTokenTTL)
	}
	return token.JWKS(now, a.cfg.AccessTokenTTL, a.keys, a.idKeys)
}

// pagesDir is where the hosted pages' overrides live: the oidc directory of
// AUTHD_TEMPLATES_DIR, beside the mail templates.
func pagesDir(templates string) string {
	if templates == "" {
		return ""
	}
	return filepath.Join(templates, "oidc")
}
