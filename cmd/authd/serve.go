package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/authd/authd/httpapi"
)

// shutdownTimeout bounds how long a graceful shutdown waits for in-flight
// requests.
const shutdownTimeout = 20 * time.Second

func serveCmd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "authd serve [flags]\n\nRuns the public API on AUTHD_HTTP_ADDR until SIGTERM or SIGINT, then shuts down\ngracefully. Flags override the environment, which overrides .env.")
	flags := configFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments")
	}
	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		return err
	}
	app := NewApp(cfg, newLogger(cfg, e.stderr))
	if err := app.Open(ctx); err != nil {
		return err
	}
	defer app.Close()
	fmt.Fprintf(e.stdout, "authd listening on http://%s\n", app.Addr())
	return app.Run(ctx)
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
	db       database
	listener net.Listener
	server   *http.Server
}

// NewApp returns an App for cfg; Open starts it.
func NewApp(cfg *Config, logger *slog.Logger) *App {
	return &App{cfg: cfg, logger: logger}
}

// Open connects to the database (refusing one whose schema is behind) and
// binds the listener.
func (a *App) Open(ctx context.Context) error {
	db, err := openDatabase(ctx, a.cfg, true)
	if err != nil {
		return err
	}
	a.db = db
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		a.Close()
		return &cliError{msg: fmt.Sprintf("cannot listen on %s: %v", a.cfg.HTTPAddr, err),
			hint: "stop what uses that address or set AUTHD_HTTP_ADDR"}
	}
	a.listener = ln
	a.server = &http.Server{
		Handler:           httpapi.New(a.logger, db.Ready),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	return nil
}

// Addr is the address the public listener is bound to.
func (a *App) Addr() net.Addr { return a.listener.Addr() }

// Run serves until ctx ends, then stops accepting, lets in-flight requests
// finish (up to shutdownTimeout) and returns.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(a.listener) }()
	a.logger.Info("authd started", "addr", a.listener.Addr().String(), "database", a.databaseKind())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := a.server.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (a *App) databaseKind() string {
	if strings.HasPrefix(a.cfg.DatabaseURL, "sqlite:") {
		return "sqlite"
	}
	return "postgres"
}

// Close releases what Open acquired.
func (a *App) Close() error {
	if a.listener != nil {
		a.listener.Close()
	}
	if a.db != nil {
		return a.db.Close()
	}
	return nil
}
