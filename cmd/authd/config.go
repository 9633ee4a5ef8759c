package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/authd/authd"
	authdmail "github.com/authd/authd/mail"
	"github.com/authd/authd/password"
	"github.com/authd/authd/ratelimit"
	"github.com/authd/authd/token"
	"github.com/joho/godotenv"
)

// Config is every setting of SPEC §2, parsed and validated.
type Config struct {
	DatabaseURL string
	// DefaultDatabase: DATABASE_URL was not set, so DatabaseURL is the
	// zero-set-up SQLite database, $AUTHD_DATA_DIR/authd.db: the only one
	// that creates and migrates itself, and that seed fills without --force
	// (SPEC §8). A DATABASE_URL set to the same file is an operator's choice.
	DefaultDatabase      bool
	DataDir              string
	HTTPAddr             string
	AdminAddr            string // empty: no admin listener (metrics, admin API)
	AdminToken           string // empty: admin API off, metrics still served
	ServiceTokens        []string
	RevocationStreams    int
	ShutdownDelay        time.Duration // a stop's lame-duck time: /readyz 503, requests still served
	PublicURL            string        // scheme and host in lower case, no trailing slash
	Issuer               string
	Audience             string
	AccessTokenTTL       time.Duration
	RefreshTokenTTL      time.Duration
	SessionMaxAge        time.Duration
	RefreshReuseGrace    time.Duration
	SigningAlg           string
	KeysDir              string
	SMTPURL              string
	DevMailer            bool // the dev mailer may stand in for SMTP with a public AUTHD_PUBLIC_URL
	MailFrom             string
	TemplatesDir         string
	AppName              string // the hosted sign-in pages' branding
	BrandColor           string
	LogoURL              string
	RequireVerifiedEmail bool
	PasswordMinLength    int
	Argon2               password.Params
	LockoutThreshold     int
	LockoutDuration      time.Duration
	MaxSessions          int
	RateLimit            bool
	RedisURL             string
	TrustedProxies       []netip.Prefix
	MaxConnections       int
	MaxConnectionsPerIP  int
	CORSOrigins          []string
	WebAuthnRPID         string   // empty after resolve: passkeys off (AUTHD_PUBLIC_URL on an IP address)
	WebAuthnOrigins      []string // full origins of the pages that use passkeys
	SecurityLogRetention time.Duration
	LogLevel             slog.Level
	LogFormat            string
}

// setting is one configuration variable: its name, default, meaning, and
// how it is parsed into a Config. Secret settings are read from the
// environment only, never from flags, which other users can see in ps.
type setting struct {
	env    string
	def    string
	help   string
	secret bool
	parse  func(c *Config, v string) error
}

// settings is the table of SPEC §2, defaults included. Defaults that depend
// on another setting are empty here and derived in resolve.
var settings = []setting{
	{"DATABASE_URL", "", "postgres://… or postgresql://…, or sqlite://PATH (default: sqlite://$AUTHD_DATA_DIR/authd.db, the embedded database, the only one that creates and migrates itself)", false,
		func(c *Config, v string) error {
			scheme, rest, _ := strings.Cut(v, "://")
			switch {
			case v == "": // the default, derived in resolve
			case (scheme == "postgres" || scheme == "postgresql") && rest != "":
			case scheme == "sqlite" && strings.ContainsAny(rest, "?#"):
				return errors.New("sqlite://PATH takes no query or fragment: authd sets SQLite's options itself")
			case scheme == "sqlite" && rest == ":memory:":
				// SQLite's name for a database in memory: every account gone at exit.
				return errors.New("sqlite://:memory: is a database that ends with the process: give a file's path, such as sqlite://./authd-data/authd.db")
			case scheme == "sqlite" && rest != "":
			default:
				return errors.New("must be postgres://USER@HOST:PORT/DB, postgresql://… or sqlite://PATH")
			}
			c.DatabaseURL = v
			return nil
		}},
	{"AUTHD_DATA_DIR", "./authd-data", "directory for the SQLite file, dev keys and the dev outbox", false,
		func(c *Config, v string) error { return nonEmpty(&c.DataDir, v) }},
	{"AUTHD_HTTP_ADDR", "127.0.0.1:8080", "public API listener (host:port)", false,
		func(c *Config, v string) error { return hostPort(&c.HTTPAddr, v, false) }},
	{"AUTHD_ADMIN_ADDR", "127.0.0.1:8081", "internal listener for /metrics, and the admin API when AUTHD_ADMIN_TOKEN is set (host:port; empty: disabled)", false,
		func(c *Config, v string) error { return hostPort(&c.AdminAddr, v, true) }},
	{"AUTHD_ADMIN_TOKEN", "", "bearer secret of the admin API (at least 32 characters); unset: admin API disabled", true,
		func(c *Config, v string) error {
			if v == "" {
				c.AdminToken = ""
				return nil
			}
			if err := bearerSecret(v); err != nil {
				return err
			}
			c.AdminToken = v
			return nil
		}},
	{"AUTHD_SERVICE_TOKENS", "", "comma-separated bearer secrets of resource servers for introspection", true,
		func(c *Config, v string) error {
			c.ServiceTokens = nil
			for _, tok := range splitList(v) {
				if err := bearerSecret(tok); err != nil {
					return fmt.Errorf("each token %w", err)
				}
				c.ServiceTokens = append(c.ServiceTokens, tok)
			}
			return nil
		}},
	{"AUTHD_REVOCATION_STREAMS", "100", "revocation-feed streams (resource servers' verifiers) one instance serves at once; with several service tokens one holds at most half (at least one)", false,
		func(c *Config, v string) error { return integer(&c.RevocationStreams, v, 1, 10000) }},
	{"AUTHD_MAX_CONNECTIONS", "2048", "connections the public listener holds open at once (16–1000000): past it an idle keep-alive one is closed to make room, or the new one answered 503", false,
		func(c *Config, v string) error { return integer(&c.MaxConnections, v, 16, 1000000) }},
	{"AUTHD_MAX_CONNECTIONS_PER_IP", "256", "connections one client address holds open at once on the public listener (1–1000000; AUTHD_TRUSTED_PROXIES exempt): past it a new one is answered 429", false,
		func(c *Config, v string) error { return integer(&c.MaxConnectionsPerIP, v, 1, 1000000) }},
	{"AUTHD_SHUTDOWN_DELAY", "0s", "on a stop signal, how long /readyz answers 503 while requests are still served, before the listeners close (0s to 10s; counted within the stop's 25 s)", false,
		func(c *Config, v string) error { return duration(&c.ShutdownDelay, v, 0, 10*time.Second) }},
	{"AUTHD_PUBLIC_URL", "http://127.0.0.1:8080", "base URL of the links in emails and the pages (a path: for a proxy that strips it)", false,
		func(c *Config, v string) error {
			u, ok := baseURL(v)
			if !ok || u.User != nil {
				return errors.New("must be an absolute http:// or https:// URL without user, query or fragment")
			}
			if h := u.Hostname(); !authd.DNSHostName(h) {
				if ip, err := netip.ParseAddr(h); err != nil || ip.Zone() != "" {
					// Told here, not as the passkeys' relying party it is the default of.
					return errors.New("must name its host as a DNS name (labels of ASCII letters, digits and inner " +
						"hyphens, at most 63 bytes each; a Unicode name in its xn-- form) or an IP address")
				}
			}
			if p := u.Port(); p != "" {
				n, err := strconv.Atoi(p)
				if err != nil || n < 1 || n > 65535 {
					return errors.New("has a port outside 1-65535: the links and the tokens' iss would point nowhere")
				}
				// As browsers write it (:08080 is :8080), or the passkeys'
				// origin would never match theirs.
				u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(n))
			}
			// A path is where a proxy in front serves authd (it strips the
			// path before authd's routes): the pages' addresses start with
			// it, and a browser would resolve an empty, . or .. segment
			// elsewhere than the proxy serves.
			if path := strings.TrimRight(u.Path, "/"); path != "" {
				// Only the first "/" goes: //idp would make the pages'
				// addresses //idp/signin, another host's to a browser.
				for seg := range strings.SplitSeq(path[1:], "/") {
					if seg == "" || seg == "." || seg == ".." {
						return errors.New("has a path with an empty, . or .. segment: the pages' addresses under it would lead elsewhere")
					}
				}
			}
			// Scheme and host in lower case, as every consumer compares
			// them: HTTPS://… must still mean Secure cookies and HSTS.
			u.Host = strings.ToLower(u.Host) // url.Parse lower-cases the scheme
			c.PublicURL = strings.TrimRight(u.String(), "/")
			return nil
		}},
	{"AUTHD_ISSUER", "", "JWT iss and the OpenID provider's issuer (default: AUTHD_PUBLIC_URL)", false,
		func(c *Config, v string) error { return stringOrURI(&c.Issuer, v) }},
	{"AUTHD_AUDIENCE", "authd", "JWT aud", false,
		func(c *Config, v string) error {
			if err := stringOrURI(&c.Audience, v); err != nil {
				return err
			}
			return nonEmpty(&c.Audience, v)
		}},
	{"AUTHD_ACCESS_TOKEN_TTL", "15m", "lifetime of access tokens", false,
		func(c *Config, v string) error {
			return duration(&c.AccessTokenTTL, v, time.Second, token.MaxAccessTokenTTL)
		}},
	{"AUTHD_REFRESH_TOKEN_TTL", "168h", "idle lifetime of refresh tokens: each rotation issues one valid this long", false,
		func(c *Config, v string) error { return duration(&c.RefreshTokenTTL, v, time.Second, 0) }},
	{"AUTHD_SESSION_MAX_AGE", "720h", "absolute lifetime of a session from its login", false,
		func(c *Config, v string) error { return duration(&c.SessionMaxAge, v, time.Second, 0) }},
	{"AUTHD_REFRESH_REUSE_GRACE", "10s", "window in which a repeated refresh is a retry, not reuse (0s: none)", false,
		func(c *Config, v string) error { return duration(&c.RefreshReuseGrace, v, 0, time.Minute) }},
	{"AUTHD_SIGNING_ALG", "EdDSA", "JWT signing algorithm: EdDSA, ES256 or RS256", false,
		func(c *Config, v string) error {
			return oneOf(&c.SigningAlg, v, "EdDSA", "ES256", "RS256")
		}},
	{"AUTHD_KEYS_DIR", "", "directory of PEM private signing keys (default: $AUTHD_DATA_DIR/keys)", false,
		func(c *Config, v string) error { c.KeysDir = v; return nil }},
	{"AUTHD_SMTP_URL", "", "smtp://user:pass@host:port (STARTTLS required, except to a loopback host; ?starttls=opportunistic allows plain text) or smtps://… (implicit TLS); unset: dev mailer", true,
		func(c *Config, v string) error {
			if v != "" {
				if _, err := authdmail.ParseSMTPURL(v); err != nil {
					return err
				}
			}
			c.SMTPURL = v
			return nil
		}},
	{"AUTHD_DEV_MAILER", "off", "on: allow the dev mailer (no SMTP; links in the log and in $AUTHD_DATA_DIR/outbox) with a non-loopback AUTHD_PUBLIC_URL", false,
		func(c *Config, v string) error {
			var s string
			err := oneOf(&s, v, "on", "off")
			c.DevMailer = s == "on"
			return err
		}},
	{"AUTHD_MAIL_FROM", "authd <no-reply@localhost>", "From of every mail", false,
		func(c *Config, v string) error {
			if _, err := mail.ParseAddress(v); err != nil {
				return errors.New(`must be an address such as "authd <no-reply@example.org>"`)
			}
			c.MailFrom = v
			return nil
		}},
	{"AUTHD_TEMPLATES_DIR", "", "directory whose mail templates (and, in its pages/ and oidc/ subdirectories, page templates) override the embedded ones", false,
		func(c *Config, v string) error { c.TemplatesDir = v; return nil }},
	{"AUTHD_APP_NAME", "authd", "name shown on the hosted sign-in pages (OpenID Connect)", false,
		func(c *Config, v string) error {
			if len(v) > 64 || strings.ContainsAny(v, "<>") || strings.ContainsFunc(v, unicode.IsControl) {
				return errors.New("must be at most 64 characters, without control characters (line breaks, escapes) or angle brackets")
			}
			return nonEmpty(&c.AppName, v)
		}},
	{"AUTHD_BRAND_COLOR", "#0b57d0", "colour of the hosted pages' buttons, #RRGGBB", false,
		func(c *Config, v string) error {
			if len(v) != 7 || v[0] != '#' || strings.Trim(v[1:], "0123456789abcdefABCDEF") != "" {
				return errors.New("must be a colour such as #0b57d0")
			}
			c.BrandColor = v
			return nil
		}},
	{"AUTHD_LOGO_URL", "", "https URL of a logo for the hosted pages; empty: none", false,
		func(c *Config, v string) error {
			if v != "" {
				u, err := url.Parse(v)
				if err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(v, " \"'") {
					return errors.New("must be an https:// URL")
				}
			}
			c.LogoURL = v
			return nil
		}},
	{"AUTHD_REQUIRE_VERIFIED_EMAIL", "true", "false: new accounts may log in before verifying", false,
		func(c *Config, v string) error { return boolean(&c.RequireVerifiedEmail, v) }},
	{"AUTHD_PASSWORD_MIN_LENGTH", "12", "minimum password length in code points (8 to 128)", false,
		func(c *Config, v string) error { return integer(&c.PasswordMinLength, v, 8, 128) }},
	{"AUTHD_ARGON2_MEMORY_KIB", "19456", "argon2id memory in KiB", false,
		func(c *Config, v string) error {
			var n int
			err := integer(&n, v, 1024, password.MaxMemoryKiB)
			c.Argon2.MemoryKiB = uint32(n)
			return err
		}},
	{"AUTHD_ARGON2_ITERATIONS", "2", "argon2id iterations", false,
		func(c *Config, v string) error {
			var n int
			err := integer(&n, v, 1, 100)
			c.Argon2.Iterations = uint32(n)
			return err
		}},
	{"AUTHD_ARGON2_PARALLELISM", "1", "argon2id lanes", false,
		func(c *Config, v string) error {
			var n int
			err := integer(&n, v, 1, 64)
			c.Argon2.Parallelism = uint8(n)
			return err
		}},
	{"AUTHD_LOCKOUT_THRESHOLD", "5", "consecutive failed logins before the account locks", false,
		func(c *Config, v string) error { return integer(&c.LockoutThreshold, v, 1, 1000) }},
	{"AUTHD_LOCKOUT_DURATION", "15m", "how long a lockout lasts", false,
		func(c *Config, v string) error { return duration(&c.LockoutDuration, v, time.Second, 0) }},
	{"AUTHD_MAX_SESSIONS", "100", "active sessions per user; a login beyond it ends the least recently used one", false,
		func(c *Config, v string) error { return integer(&c.MaxSessions, v, 1, 100000) }},
	{"AUTHD_RATE_LIMIT", "on", "per-IP and per-account rate limits: on or off", false,
		func(c *Config, v string) error {
			var s string
			err := oneOf(&s, v, "on", "off")
			c.RateLimit = s == "on"
			return err
		}},
	{"AUTHD_REDIS_URL", "", "redis://… to share rate limits across instances", true,
		func(c *Config, v string) error {
			if v != "" {
				if err := ratelimit.CheckURL(v); err != nil {
					return err
				}
			}
			c.RedisURL = v
			return nil
		}},
	{"AUTHD_TRUSTED_PROXIES", "", "comma-separated CIDRs whose X-Forwarded-For is believed", false,
		func(c *Config, v string) error {
			c.TrustedProxies = nil
			for _, s := range splitList(v) {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					a, aerr := netip.ParseAddr(s)
					if aerr != nil {
						return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or an IP address", s)
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				c.TrustedProxies = append(c.TrustedProxies, p.Masked())
			}
			return nil
		}},
	{"AUTHD_CORS_ORIGINS", "", "comma-separated browser origins allowed by CORS", false,
		func(c *Config, v string) error { return originList(&c.CORSOrigins, v, "https://app.example.org") }},
	{"AUTHD_WEBAUTHN_RP_ID", "", "WebAuthn relying party id of passkeys: a domain, never an IP address (default: the host of AUTHD_PUBLIC_URL; passkeys are off when that is an IP address)", false,
		func(c *Config, v string) error { c.WebAuthnRPID = strings.ToLower(v); return nil }},
	{"AUTHD_WEBAUTHN_ORIGINS", "", "comma-separated origins of the pages that use passkeys (default: the origin of AUTHD_PUBLIC_URL)", false,
		func(c *Config, v string) error { return originList(&c.WebAuthnOrigins, v, "https://auth.example.org") }},
	{"AUTHD_SECURITY_LOG_RETENTION", "2160h", "how long security logs are kept (at least 24h)", false,
		func(c *Config, v string) error { return duration(&c.SecurityLogRetention, v, 24*time.Hour, 0) }},
	{"AUTHD_LOG_LEVEL", "info", "debug, info, warn or error", false,
		func(c *Config, v string) error {
			if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
				return errors.New("must be debug, info, warn or error")
			}
			return nil
		}},
	{"AUTHD_LOG_FORMAT", "text", "text or json", false,
		func(c *Config, v string) error { return oneOf(&c.LogFormat, v, "text", "json") }},
}

const minSecretLength = 32

// bearerSecret checks a secret that clients send as a bearer token: long
// enough, and of the characters a token can carry in an Authorization
// header (a space or tab ends it there, so a secret holding one would be
// taken at start and never match).
func bearerSecret(v string) error {
	if len(v) < minSecretLength {
		return fmt.Errorf("must be at least %d characters (try: openssl rand -hex 32)", minSecretLength)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < '!' || r > '~' }) {
		return errors.New("must be printable ASCII without spaces, as a bearer token is sent (try: openssl rand -hex 32)")
	}
	return nil
}

// flagName is the command-line flag of a setting: AUTHD_HTTP_ADDR → http-addr.
func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "AUTHD_")), "_", "-")
}

// configFlag is a setting's flag: its value, and whether it was given,
// so that an empty one (--data-dir "") is a value, as an empty variable
// is, and not the flag left out.
type configFlag struct {
	value *string
	fs    *flag.FlagSet
	name  string
}

// given reports whether the flag was on the command line.
func (f *configFlag) given() bool {
	given := false
	f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == f.name })
	return given
}

// configFlags registers a flag for each named non-secret setting (all when
// names is empty) and returns the values given on the command line.
func configFlags(fs *flag.FlagSet, names ...string) map[string]*configFlag {
	out := map[string]*configFlag{}
	for _, s := range settings {
		if s.secret || (len(names) > 0 && !slices.Contains(names, s.env)) {
			continue
		}
		name := flagName(s.env)
		out[s.env] = &configFlag{value: fs.String(name, "", fmt.Sprintf("%s (env %s, default %q)", s.help, s.env, s.def)),
			fs: fs, name: name}
	}
	return out
}

// sources are where settings come from: flags win over the environment,
// which wins over .env in the working directory, which wins over the
// defaults.
type sources struct {
	flags  map[string]*configFlag
	getenv func(string) (string, bool)
	dotenv map[string]string
}

func readSources(flags map[string]*configFlag, getenv func(string) (string, bool)) (sources, error) {
	dotenv, err := readDotenv(".env")
	if err != nil {
		return sources{}, err
	}
	return sources{flags: flags, getenv: getenv, dotenv: dotenv}, nil
}

// readDotenv reads the .env file at path; a missing file is no settings.
// A file that does not parse is told by the line where parsing fails, never
// by the parser's message, which quotes the rest of the file, secrets and
// all.
func readDotenv(path string) (map[string]string, error) {
	src, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &cliError{msg: fmt.Sprintf("cannot read .env: %v", err), hint: "fix or remove .env in the working directory"}
	}
	dotenv, err := godotenv.UnmarshalBytes(src)
	if err != nil {
		line := dotenvErrorLine(src)
		return nil, &cliError{msg: fmt.Sprintf(".env in the working directory does not parse at line %d", line),
			hint: fmt.Sprintf("make line %d NAME=value (a name of letters, digits, _ and ., no byte order mark, "+
				"quotes closed), a # comment or blank; or remove .env", line)}
	}
	return dotenv, nil
}

// dotenvErrorLine is the line of src, which does not parse, where parsing
// fails: the one after the longest run of leading lines that parses. (A
// quoted value may span lines, so a shorter run can fail where the whole
// would not.)
func dotenvErrorLine(src []byte) int {
	lines := bytes.SplitAfter(src, []byte("\n"))
	line := 1
	for n := 1; n < len(lines); n++ {
		if _, err := godotenv.UnmarshalBytes(bytes.Join(lines[:n], nil)); err == nil {
			line = n + 1
		}
	}
	return line
}

// fromFlag reports whether the setting's value is a flag's.
func (src sources) fromFlag(s setting) bool {
	p := src.flags[s.env]
	return p != nil && p.given()
}

// value is the setting's value as given, before parsing.
func (src sources) value(s setting) string {
	v, ok := src.getenv(s.env)
	if !ok {
		v, ok = src.dotenv[s.env]
	}
	if src.fromFlag(s) {
		v, ok = *src.flags[s.env].value, true
	}
	if !ok {
		v = s.def
	}
	return v
}

// unknownSetting is a variable named like a setting that is none, with
// the setting it is closest to ("" when none is near).
type unknownSetting struct{ name, near string }

// unknownSettings lists the AUTHD_ variables of the environment (names)
// and of .env that are no setting: a misspelt one is otherwise ignored
// without a word (AUTHD_ADMIN_TOKNE: no admin API). The load generator's
// own (AUTHD_LOAD_…) and those the README's resource-server example reads
// (AUTHD_URL, AUTHD_SERVICE_TOKEN), often in the same environment, are not
// authd's.
func unknownSettings(names []string) []unknownSetting {
	dotenv, _ := readDotenv(".env") // read and checked by loadConfig already
	all := slices.Concat(names, slices.Collect(maps.Keys(dotenv)))
	slices.Sort(all)
	var out []unknownSetting
	for _, name := range slices.Compact(all) {
		if !strings.HasPrefix(name, "AUTHD_") || strings.HasPrefix(name, "AUTHD_LOAD_") ||
			name == "AUTHD_URL" || name == "AUTHD_SERVICE_TOKEN" ||
			slices.ContainsFunc(settings, func(s setting) bool { return s.env == name }) {
			continue
		}
		u, best := unknownSetting{name: name}, 4 // near: at most 3 edits away
		for _, s := range settings {
			if d := editDistance(name, s.env); d < best {
				u.near, best = s.env, d
			}
		}
		out = append(out, u)
	}
	return out
}

// editDistance is the Levenshtein distance between two ASCII names.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// maxStringOrURI bounds AUTHD_ISSUER and AUTHD_AUDIENCE, which every token
// carries.
const maxStringOrURI = 1024

// stringOrURI sets *dst to v, a token's iss or aud: RFC 7519's StringOrURI,
// a name, or a URI when it has a ':'; without spaces or control characters,
// which a resource server's configuration could not match.
func stringOrURI(dst *string, v string) error {
	if len(v) > maxStringOrURI {
		return fmt.Errorf("must be at most %d bytes: every token carries it", maxStringOrURI)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return errors.New("must be a URL (or a name) without spaces or control characters")
	}
	if u, err := url.Parse(v); strings.Contains(v, ":") && (err != nil || u.Scheme == "") {
		return errors.New("has a ':' but is no URL (RFC 7519: a name, or a URI)")
	}
	*dst = v
	return nil
}

// emptyIsAValue are the settings whose empty value is not "unset": an
// empty AUTHD_ADMIN_ADDR turns the admin listener off; an empty
// AUTHD_PUBLIC_URL or AUTHD_DATA_DIR is refused, since a deployment's
// variable left unset (a compose file's ${VAR}) would otherwise serve on
// the loopback default, where the development mailer logs reset links, or
// keep its data in the working directory. Any other empty one is unset.
var emptyIsAValue = map[string]bool{"AUTHD_ADMIN_ADDR": true, "AUTHD_PUBLIC_URL": true, "AUTHD_DATA_DIR": true}

// loadConfig builds the Config from its sources. Every invalid value is
// reported, each naming its variable.
func loadConfig(flags map[string]*configFlag, getenv func(string) (string, bool)) (*Config, error) {
	src, err := readSources(flags, getenv)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	var errs, flagErrs []string
	for _, s := range settings {
		v := src.value(s)
		if s.secret && v != "" && strings.TrimSpace(v) == "" {
			// Meant as set (a quoted blank), read as unset, it would turn off
			// what the secret guards (the admin API): refused instead.
			errs = append(errs, fmt.Sprintf("%s is only whitespace: unset it, or give the secret", s.env))
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" && !emptyIsAValue[s.env] {
			v = s.def // an empty value means unset, as .env.example says
		}
		if err := s.parse(c, v); err != nil {
			if src.fromFlag(s) { // a usage error, told by the flag's name
				flagErrs = append(flagErrs, fmt.Sprintf("--%s %q: %v", flagName(s.env), redact(s, v), err))
				continue
			}
			errs = append(errs, fmt.Sprintf("%s=%q: %v", s.env, redact(s, v), err))
		} else if s.env == "DATABASE_URL" && src.fromFlag(s) && carriesPassword(v) {
			// As the secrets are kept off flags: other users see them in ps.
			flagErrs = append(flagErrs, fmt.Sprintf("--%s %q: holds a password, which other users of the machine "+
				"see in ps: give it in DATABASE_URL (the environment or .env), PGPASSWORD or ~/.pgpass", flagName(s.env),
				redact(s, v)))
		}
	}
	if len(flagErrs) > 0 {
		return nil, &usageError{msg: strings.Join(flagErrs, "; ")}
	}
	if len(errs) == 0 {
		errs = c.resolve()
	}
	if len(errs) > 0 {
		return nil, &cliError{msg: "invalid configuration: " + strings.Join(errs, "; "),
			hint: "see .env.example for every variable, its default and what it allows"}
	}
	return c, nil
}

// resolve fills the derived defaults and checks the settings against each
// other.
func (c *Config) resolve() []string {
	var errs []string
	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite://" + filepath.Join(c.DataDir, "authd.db")
		c.DefaultDatabase = true
	}
	if c.Issuer == "" {
		c.Issuer = c.PublicURL
	}
	if c.KeysDir == "" {
		c.KeysDir = filepath.Join(c.DataDir, "keys")
	}
	if c.AdminToken != "" && slices.Contains(c.ServiceTokens, c.AdminToken) {
		// Every resource server holding it could act as an administrator.
		errs = append(errs, "AUTHD_ADMIN_TOKEN must differ from every token of AUTHD_SERVICE_TOKENS")
	}
	if c.AdminAddr != "" && c.AdminAddr == c.HTTPAddr && !strings.HasSuffix(c.HTTPAddr, ":0") {
		errs = append(errs, "AUTHD_ADMIN_ADDR must differ from AUTHD_HTTP_ADDR")
	}
	if err := c.resolveWebAuthn(); err != nil {
		errs = append(errs, err.Error())
	}
	return errs
}

// resolveWebAuthn derives the WebAuthn relying party from AUTHD_PUBLIC_URL
// where it is not set, and checks it. A public URL on an IP address (the
// default, 127.0.0.1) cannot be a relying party: passkeys are then off
// unless AUTHD_WEBAUTHN_RP_ID is set (serve says so).
func (c *Config) resolveWebAuthn() error {
	public, err := url.Parse(c.PublicURL)
	if err != nil {
		return nil // reported by AUTHD_PUBLIC_URL
	}
	if len(c.WebAuthnOrigins) == 0 {
		c.WebAuthnOrigins = []string{public.Scheme + "://" + public.Host}
	}
	if c.WebAuthnRPID == "" {
		host := strings.ToLower(public.Hostname())
		if net.ParseIP(host) != nil {
			return nil
		}
		c.WebAuthnRPID = host
	}
	if err := authd.CheckRelyingParty(c.WebAuthnRPID, c.WebAuthnOrigins); err != nil {
		return fmt.Errorf("AUTHD_WEBAUTHN_RP_ID=%q with AUTHD_WEBAUTHN_ORIGINS=%q: %v (the RP ID must be the host of every origin or a registrable suffix of it)",
			c.WebAuthnRPID, strings.Join(c.WebAuthnOrigins, ","), err)
	}
	return nil
}

// jsonLogs reports whether the sources ask for JSON logs, for telling a
// configuration that does not load in the format its operator reads.
func jsonLogs(flags map[string]*configFlag, getenv func(string) (string, bool)) bool {
	src, err := readSources(flags, getenv)
	if err != nil {
		return false
	}
	for _, s := range settings {
		if s.env == "AUTHD_LOG_FORMAT" {
			return strings.TrimSpace(src.value(s)) == "json"
		}
	}
	return false
}

// lifetime is a duration setting that SPEC §2 calls a lifetime: anything
// from 1s up is accepted, since short ones are how people try expiry.
type lifetime struct {
	env   string
	value time.Duration
}

// publicURLElsewhere reports whether AUTHD_PUBLIC_URL names this machine
// (a loopback host) on another port than the public listener's, which
// serve warns about: the links in mails, the tokens' iss and the OpenID
// discovery would point where authd does not listen (AUTHD_HTTP_ADDR was
// moved, AUTHD_PUBLIC_URL left at its default). A public host may differ
// from the listener (a proxy in front), and port 0 is picked at start.
func (c *Config) publicURLElsewhere() bool {
	public, err := url.Parse(c.PublicURL)
	if err != nil {
		return false
	}
	_, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil || port == "0" {
		return false
	}
	host := public.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return false
	}
	publicPort := public.Port()
	if publicPort == "" {
		publicPort = map[string]string{"http": "80", "https": "443"}[public.Scheme]
	}
	return publicPort != port
}

// issuerNotURL reports whether AUTHD_ISSUER is no http(s) URL without
// query or fragment: access tokens may carry any name, but OpenID Connect
// relying parties fetch the provider's discovery from its issuer, and
// refuse one that names another.
func (c *Config) issuerNotURL() bool {
	_, ok := baseURL(c.Issuer)
	return !ok
}

// baseURL parses v as an absolute http(s) URL without query or fragment,
// such as links and the tokens' iss are made from.
func baseURL(v string) (*url.URL, bool) {
	u, err := url.Parse(v)
	return u, err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && u.Fragment == ""
}

// mailArchive is where the development mailer writes its files: erasure
// and retention reach them whichever mailer sends now, since a data
// directory first run with the development mailer keeps them after
// AUTHD_SMTP_URL is set.
func (c *Config) mailArchive() *authdmail.Dev {
	return &authdmail.Dev{Dir: filepath.Join(c.DataDir, "outbox")}
}

// shortLifetimes are the lifetimes set under a minute, which serve warns
// about: fine for trying expiry, a mistake in production.
func (c *Config) shortLifetimes() []lifetime {
	var short []lifetime
	for _, l := range []lifetime{
		{"AUTHD_ACCESS_TOKEN_TTL", c.AccessTokenTTL},
		{"AUTHD_REFRESH_TOKEN_TTL", c.RefreshTokenTTL},
		{"AUTHD_SESSION_MAX_AGE", c.SessionMaxAge},
		{"AUTHD_LOCKOUT_DURATION", c.LockoutDuration},
	} {
		if l.value < time.Minute {
			short = append(short, l)
		}
	}
	return short
}

// redact hides from error messages a secret setting's value, all of a
// DATABASE_URL but its scheme, and the password of any other URL. A
// DATABASE_URL the setting refuses may hold a password anywhere: a libpq
// key=value string, a JDBC URL's query, a user-info part that url.Parse
// cannot read.
func redact(s setting, v string) string {
	if s.secret && v != "" {
		return "…"
	}
	if s.env == "DATABASE_URL" && v != "" {
		if scheme, _, ok := strings.Cut(v, "://"); ok && plainScheme.MatchString(scheme) {
			return scheme + "://…"
		}
		return "…"
	}
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return v
}

// plainScheme is what redact shows of a DATABASE_URL: a URL scheme
// (RFC 3986), or a JDBC one (jdbc:postgresql), short.
var plainScheme = regexp.MustCompile(`^(jdbc:)?[A-Za-z][A-Za-z0-9+.-]{0,31}$`)

// carriesPassword reports whether the URL v holds a password: in its
// user-info part, or as libpq's password or sslpassword parameter. A URL
// Go cannot parse (pgx's several hosts, h1:5432,h2:5432) is taken to hold
// one when the part before its last @ has a colon, or it names a password.
func carriesPassword(v string) bool {
	u, err := url.Parse(v)
	if err != nil {
		_, rest, _ := strings.Cut(v, "://")
		at := strings.LastIndexByte(rest, '@')
		return at >= 0 && strings.Contains(rest[:at], ":") || strings.Contains(strings.ToLower(v), "password")
	}
	if _, ok := u.User.Password(); ok {
		return true
	}
	q := u.Query()
	return q.Has("password") || q.Has("sslpassword")
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// originList parses a comma-separated list of browser origins
// (scheme://host[:port]), in lower case; example shows one in the error.
func originList(dst *[]string, v, example string) error {
	*dst = nil
	for _, s := range splitList(v) {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%q is not an origin such as %s", s, example)
		}
		// In lower case, as browsers send an Origin and CORS compares it.
		*dst = append(*dst, u.Scheme+"://"+strings.ToLower(u.Host))
	}
	return nil
}

func nonEmpty(dst *string, v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	*dst = v
	return nil
}

func oneOf(dst *string, v string, allowed ...string) error {
	if !slices.Contains(allowed, v) {
		return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
	}
	*dst = v
	return nil
}

func hostPort(dst *string, v string, emptyOK bool) error {
	if v == "" && emptyOK {
		*dst = ""
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		return errors.New("must be HOST:PORT, such as 127.0.0.1:8080 or :8080")
	}
	*dst = v
	return nil
}

// durationShape is a Go duration's syntax (time.ParseDuration), which
// ParseDuration also refuses when the value is too large.
var durationShape = regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

func duration(dst *time.Duration, v string, lo, hi time.Duration) error {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil && durationShape.MatchString(v) && strings.HasPrefix(v, "-"): // too large a negative
		return fmt.Errorf("must be at least %s", lo)
	case err != nil && durationShape.MatchString(v) && hi > 0: // too large
		return fmt.Errorf("must be at most %s", hi)
	case err != nil && durationShape.MatchString(v):
		return fmt.Errorf("must be at most %s (about 292 years)", time.Duration(math.MaxInt64).Truncate(time.Hour))
	case err != nil:
		return errors.New("must be a Go duration such as 15m, 10s or 720h")
	case d < lo:
		return fmt.Errorf("must be at least %s", lo)
	case hi > 0 && d > hi:
		return fmt.Errorf("must be at most %s", hi)
	}
	*dst = d
	return nil
}

func integer(dst *int, v string, lo, hi int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return fmt.Errorf("must be a whole number from %d to %d", lo, hi)
	}
	*dst = n
	return nil
}

func boolean(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("must be true or false")
	}
	*dst = b
	return nil
}

// service is what the flows need of the configuration.
func (c *Config) service() authd.Config {
	return authd.Config{
		PublicURL:            c.PublicURL,
		AccessTokenTTL:       c.AccessTokenTTL,
		RefreshTokenTTL:      c.RefreshTokenTTL,
		SessionMaxAge:        c.SessionMaxAge,
		RefreshReuseGrace:    c.RefreshReuseGrace,
		RequireVerifiedEmail: c.RequireVerifiedEmail,
		LockoutThreshold:     c.LockoutThreshold,
		LockoutDuration:      c.LockoutDuration,
		MaxSessions:          c.MaxSessions,
		TOTPIssuer:           hostOf(c.Issuer),
		WebAuthnRPID:         c.WebAuthnRPID,
		WebAuthnOrigins:      c.WebAuthnOrigins,
		Audience:             c.Audience,
	}
}

// hostOf is the host of an issuer URL, which names authd in authenticator
// apps; an issuer that is not a URL is used as it is.
func hostOf(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return issuer
}
