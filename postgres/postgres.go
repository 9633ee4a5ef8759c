// Package postgres implements authd.Store on PostgreSQL through pgx, with
// its schema migrations embedded.
package postgres

import (
	"context"
	"crypto/tls"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/migrate"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsDir is where `authd migrate create` writes new migrations,
// relative to the repository root.
const MigrationsDir = "postgres/migrations"

// connectTimeout bounds how long Open waits for the first connection.
const connectTimeout = 10 * time.Second

// Store is an authd.Store on a PostgreSQL connection pool.
type Store struct {
	queries
	pool     *pgxpool.Pool
	migrator *migrate.Migrator
	log      *slog.Logger
	// listenCheck is how long the revocation listener waits in silence
	// before it pings its connection; 0: listenCheck.
	listenCheck time.Duration
}

var _ authd.Store = (*Store)(nil)

// Open connects to the database at url (postgres:// or postgresql://) and
// checks that it answers. Failing that, it returns an *authd.Error whose
// message and hint name the troubleshooting case: server unreachable,
// database missing, or credentials refused.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, &authd.Error{Code: authd.EInvalid, Message: "DATABASE_URL is not a valid PostgreSQL URL",
			Hint: "use postgres://USER:PASSWORD@HOST:PORT/DBNAME", Err: err}
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// pgxpool's default (four connections on two cores) starves concurrent
	// flows that each hold a transaction; DATABASE_URL's pool_max_conns wins.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = int32(max(16, 4*runtime.GOMAXPROCS(0)))
	}
	// An unreachable server must fail a request fast (503), not hang it.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		// Every time leaves the store in UTC, whatever the server's TimeZone.
		c.TypeMap().RegisterType(&pgtype.Type{
			Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		registerUUID(c.TypeMap())
		if o.lockTimeout > 0 {
			// Only where nothing else set one, 0 (no bound) included: the
			// URL, options, PGOPTIONS, ALTER ROLE or DATABASE … SET,
			// postgresql.conf.
			if _, err := c.Exec(ctx, `SELECT set_config('lock_timeout', $1, false)
				WHERE (SELECT source FROM pg_settings WHERE name = 'lock_timeout') = 'default'`,
				strconv.FormatInt(o.lockTimeout.Milliseconds(), 10)); err != nil {
				return err
			}
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(cfg.ConnConfig, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, connectError(cfg.ConnConfig, err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		pool.Close()
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		pool.Close()
		return nil, err
	}
	commandLocker, err := lock.NewPostgresSessionLocker(lock.WithLockID(MigrationCommandLockID))
	if err != nil {
		pool.Close()
		return nil, err
	}
	serial := &migrate.CommandLock{Locker: commandLocker, Open: func() (*sql.DB, error) {
		return stdlib.OpenDB(*pool.Config().ConnConfig.Copy(), stdlib.OptionAfterConnect(keepIdleSession)), nil
	}}
	m, err := migrate.New(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), sub, serial, goose.WithSessionLocker(locker))
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{queries: queries{db: pool}, pool: pool, migrator: m}, nil
}

// keepIdleSession keeps the connection of the migration command lock from
// idle_session_timeout (PostgreSQL 14 on; managed servers set it): the
// connection idles while the command runs on others, and its session's end
// would drop the lock midway. Older servers lack the setting, and need
// nothing.
func keepIdleSession(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SELECT set_config('idle_session_timeout', '0', false)`)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "42704" { // undefined_object
		return nil
	}
	return err
}

// MigrationCommandLockID is the advisory lock a migration command holds from
// start to end (goose's own, lock.DefaultLockID, is held for each step);
// exported for operators' scripts and tests that must wait for, or hold
// off, a migration.
const MigrationCommandLockID int64 = 0x61757468645f6d67 // "authd_mg"

// An Option adjusts how Open connects.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
}

// WithLockTimeout bounds each wait of the store's statements for a lock
// another session holds to d (PostgreSQL's lock_timeout), unless the
// connection has a lock_timeout of its own (set in the URL, its options,
// PGOPTIONS, for the role or database, or server-wide); a statement that
// waits longer fails with EUnavailable (LockTimedOut): neither a command
// nor a request hangs on a transaction left open elsewhere. The setting is
// the session's, made once per connection: behind a pooler in transaction
// mode (PgBouncer) set lock_timeout for authd's role instead.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// LockTimedOut reports whether err, however wrapped, is a statement's
// lock_timeout running out (SQLSTATE 55P03).
func LockTimedOut(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// SetLogger sets where the store reports background trouble (the
// revocation listener); the default is slog.Default().
func (s *Store) SetLogger(l *slog.Logger) { s.log = l }

func (s *Store) logger() *slog.Logger {
	if s.log == nil {
		return slog.Default()
	}
	return s.log
}

// Migrator returns the store's schema migrator.
func (s *Store) Migrator() *migrate.Migrator { return s.migrator }

// Pool returns the underlying connection pool, for the scale-out machinery
// (LISTEN/NOTIFY) and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// InTx implements authd.Store.
func (s *Store) InTx(ctx context.Context, fn func(authd.Queries) error) error {
	return s.inTx(ctx, func(q *queries) error { return fn(q) })
}

func (s *Store) inTx(ctx context.Context, fn func(*queries) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return translate(err)
	}
	// A connection left inside a transaction (one whose COMMIT never ran) is
	// closed by the pool on release, never reused; the ROLLBACK is manners.
	defer conn.Release()
	// BEGIN and COMMIT travel with the statements next to them (queries.send).
	q := &queries{db: conn, locking: true}
	q.queue(nil, "BEGIN")
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
			defer cancel()
			conn.Exec(ctx, "ROLLBACK") //nolint:errcheck // the pool drops a broken conn
		}
	}()
	if err := fn(q); err != nil {
		return err
	}
	if err := q.insertRevocationEvents(ctx); err != nil {
		return err
	}
	q.queue(committed, "COMMIT")
	return q.flush(ctx)
}

// rollbackTimeout bounds the ROLLBACK of a failed transaction: a stalled
// server must not hold the request.
const rollbackTimeout = 5 * time.Second

// committed checks COMMIT's answer: on a transaction a swallowed error had
// aborted, PostgreSQL answers ROLLBACK, without an error.
func committed(tag pgconn.CommandTag) error {
	if tag.String() != "COMMIT" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Ready implements authd.Store.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return translate(err)
	}
	return s.migrator.CheckHead(ctx)
}

// Close implements authd.Store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// connectError turns a failure to reach the server into the seed's
// troubleshooting messages.
func connectError(cfg *pgx.ConnConfig, err error) error {
	where := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") {
		where = cfg.Host + " (Unix socket)"
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server's own error is the cause: pgx's wrapping repeats it
		// for every address it tried.
		switch pgErr.Code {
		case "3D000": // invalid_catalog_name
			return &authd.Error{Code: authd.EUnavailable, Err: pgErr,
				Message: fmt.Sprintf("database %q does not exist on the PostgreSQL server at %s", cfg.Database, where),
				Hint:    fmt.Sprintf("create it: createdb %s", cfg.Database)}
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return &authd.Error{Code: authd.EUnavailable, Err: pgErr,
				Message: fmt.Sprintf("PostgreSQL at %s refused user %q", where, cfg.User),
				Hint:    "check the user and password in DATABASE_URL"}
		}
		return &authd.Error{Code: authd.EUnavailable, Err: pgErr,
			Message: fmt.Sprintf("PostgreSQL at %s refused the connection", where),
			Hint:    "check DATABASE_URL"}
	}
	// The cause alone: pgx's error repeats it for every address it tried
	// (IPv4 and IPv6, TLS and plain).
	e := &authd.Error{Code: authd.EUnavailable, Err: err,
		Message: fmt.Sprintf("could not connect to PostgreSQL at %s", where),
		Hint: "start PostgreSQL (Debian: pg_ctlcluster <version> main start; macOS: brew services start postgresql) " +
			"or fix the host and port in DATABASE_URL"}
	var dnsErr *net.DNSError
	var verification *tls.CertificateVerificationError
	var alert tls.AlertError
	var record tls.RecordHeaderError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		e.Message, e.Err, e.Hint = e.Message+": no such host", dnsErr, "fix the host in DATABASE_URL"
	case errors.As(err, &verification):
		e.Message, e.Err = e.Message+": its certificate was refused", verification
		e.Hint = "the server answered with a certificate DATABASE_URL's sslmode does not accept: give the CA that " +
			"signed it (sslrootcert=…), a host name the certificate names, or a weaker sslmode (require)"
	case errors.As(err, &alert):
		e.Message, e.Err = e.Message+": TLS failed", alert
		e.Hint = "check sslmode in DATABASE_URL, and that HOST:PORT is PostgreSQL's"
	case errors.As(err, &record):
		e.Message, e.Err = e.Message+": TLS failed", record
		e.Hint = "check sslmode in DATABASE_URL, and that HOST:PORT is PostgreSQL's"
	case strings.Contains(err.Error(), "server refused TLS connection"): // pgconn's words, no type of its own
		e.Message, e.Err = e.Message+": the server does not speak TLS", nil
		e.Hint = "turn TLS on in PostgreSQL (ssl = on), or use sslmode=prefer or disable in DATABASE_URL on a trusted network"
	case errors.As(err, &opErr):
		e.Err = opErr // dial tcp …: connect: connection refused
	case errors.Is(err, context.DeadlineExceeded):
		e.Message, e.Err = e.Message+": no answer in time", nil // pgx's words say it again, per address
		e.Hint = "check that HOST:PORT in DATABASE_URL is PostgreSQL's, reachable from here (a firewall drops what it does not answer)"
	default:
		// Something answered, but not as PostgreSQL does (another
		// service's port, a proxy): pgx's parse of its bytes.
		e.Hint = "check that HOST:PORT in DATABASE_URL is PostgreSQL's, not another service's"
	}
	return e
}

// lockTimeoutHint tells an operator what a lock_timeout means.
const lockTimeoutHint = "another database session holds a lock this needs (a long or idle transaction, a migration): " +
	"find it in pg_stat_activity, let it end, and try again"

// schemaChangedHint tells the operator why a statement met a schema it
// was not written for.
const schemaChangedHint = "the schema is not the one this authd was built for (a migration ran under it): " +
	"run the authd release that matches `authd migrate status`, or `authd migrate up` with this one"

// translate turns driver errors into domain errors where they meet the
// database; anything unexpected stays an internal error with its cause.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var done *authd.Error
	if errors.As(err, &done) {
		return err // translated already
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return authd.WrapError(authd.ENotFound, err, "not found")
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		// No connection could be made, whatever the server said (it does
		// not accept connections, is starting up or shutting down, has too
		// many clients): the database is unavailable, not the request wrong.
		return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable",
			RetryAfter: time.Second, Err: err}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "55P03": // lock_not_available: lock_timeout ran out (WithLockTimeout)
			return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable",
				RetryAfter: time.Second, Err: err, Hint: lockTimeoutHint}
		case pgErr.Code == "23505": // unique_violation
			return authd.WrapError(authd.EConflict, err, "already exists")
		case pgErr.Code == "P0002": // no_data_found: a checked write changed too few rows (authd_expect_rows)
			return authd.WrapError(authd.ENotFound, err, pgErr.Message)
		case pgErr.Code == "23503": // foreign_key_violation
			return authd.WrapError(authd.ENotFound, err, "a referenced record does not exist")
		case strings.HasPrefix(pgErr.Code, "22"), pgErr.Code == "23502", pgErr.Code == "23514":
			// data exception, not_null_violation, check_violation
			return authd.WrapError(authd.EInvalid, err, "invalid value")
		case pgErr.Code == "42P01", pgErr.Code == "42703",
			pgErr.Code == "42883" && strings.HasPrefix(pgErr.Message, "function "), // not "operator does not exist", a bug
			pgErr.Code == "0A000" && strings.Contains(pgErr.Message, "cached plan"),
			pgErr.Code == "XX000" && strings.Contains(pgErr.Message, "cache lookup failed"):
			// undefined_table, undefined_column, undefined_function, and
			// what prepared statements meet once types are made again: the
			// schema changed under this instance (a migration up or down),
			// which /readyz says too. An outage to retry, not a 500.
			return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable",
				RetryAfter: time.Second, Err: err, Hint: schemaChangedHint}
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "53"),
			strings.HasPrefix(pgErr.Code, "57P"), pgErr.Code == "40001", pgErr.Code == "40P01",
			pgErr.Code == "25006":
			// connection exception, insufficient resources, operator
			// intervention, serialization failure, deadlock, a read-only
			// transaction (a standby, mid failover): try again.
			return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable",
				RetryAfter: time.Second, Err: err}
		}
		return fmt.Errorf("postgres: %w", err)
	}
	var netErr net.Error
	// ErrConnClosed: a connection lost earlier in the transaction, used
	// again (the next statement, the commit).
	if errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, pgconn.ErrConnClosed) {
		return &authd.Error{Code: authd.EUnavailable, Message: "the database is unavailable",
			RetryAfter: time.Second, Err: err}
	}
	return fmt.Errorf("postgres: %w", err)
}
