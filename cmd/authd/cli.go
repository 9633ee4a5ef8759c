package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/authd/authd"
)

// Exit statuses (SPEC §3).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// env is what a command may touch of the outside world, so that tests can
// run commands in-process.
type env struct {
	stdout, stderr io.Writer
	// stdoutNull: stdout is the null device, where output goes unread. A
	// closed stdout is too: the Go runtime opens the null device in its
	// place, so writes to it cannot fail.
	stdoutNull bool
	getenv     func(string) (string, bool)
	names      []string // of the environment's variables
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the API, the admin API and the background jobs", serveCmd},
		{"migrate", "apply, roll back and inspect schema migrations", migrateCmd},
		{"seed", "insert idempotent demo data and print its credentials", seedCmd},
		{"keys", "generate, list and rotate the token signing keys; make the shared secrets", keysCmd},
		{"purge", "apply the retention policy now", purgeCmd},
		{"admin", "manage users and read the security log, straight on the database", adminCmd},
		{"clients", "register and manage OpenID Connect clients, straight on the database", clientsCmd},
		{"version", "print the version", versionCmd},
	}
}

// cliError is a failure explained for a person: one line, and a hint saying
// what to do about it.
type cliError struct {
	msg, hint string
	err       error // the cause told, if any (a service's error)
}

func (e *cliError) Error() string { return e.msg }
func (e *cliError) Unwrap() error { return e.err }

// reportedError is a failure already told in the log (as a JSON line); it
// only sets the exit status.
type reportedError struct{ err error }

func (e *reportedError) Error() string { return e.err.Error() }
func (e *reportedError) Unwrap() error { return e.err }

// usageError is a command line that does not parse; it exits with 2. It
// names the command, or the action within it (cmd, such as "admin users
// show"), that was misused; the hint defaults to the command's --help.
type usageError struct{ cmd, msg, hint string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// usageOf is a usage error of an action within a command, cmd being its
// words after authd.
func usageOf(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// run runs the command args names with environ, the environment as
// os.Environ gives it (NAME=value; of a name given twice the first counts,
// as for os.Getenv), and returns the exit status. Errors go to stderr as
// one line plus a hint.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	vars := map[string]string{}
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok {
			if _, seen := vars[name]; !seen {
				vars[name] = value
			}
		}
	}
	out := &outputWriter{w: stdout}
	e := &env{stdout: out, stderr: stderr, stdoutNull: nullDevice(stdout), names: slices.Sorted(maps.Keys(vars)),
		getenv: func(name string) (string, bool) { v, ok := vars[name]; return v, ok }}
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "authd: missing command\nhint: authd --help lists the commands")
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		printUsage(e.stdout) // asked for: `authd --help | less` shows it
		return report(e, args[0], unwritten(out, nil))
	case "-v", "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			if c.name != "serve" && errors.Is(ctx.Err(), context.Canceled) && errors.Is(err, context.Canceled) {
				// Interrupted (SIGINT, SIGTERM, SIGHUP) while it waited:
				// told as such, not as the database outage a canceled wait
				// looks like. An error of its own stays as it is.
				err = &cliError{msg: "interrupted before it finished", hint: "what it completed before the signal " +
					"stays done (a migration step, a change it reported): check before running it again"}
			}
			if c.name != "serve" || errors.Is(err, flag.ErrHelp) {
				// serve's one line to stdout is its banner; what the
				// others print (and --help) is what they were run for.
				err = unwritten(out, err)
			}
			return report(e, c.name, err)
		}
	}
	fmt.Fprintf(e.stderr, "authd: unknown command %q\nhint: run `authd --help` for the list of commands\n", args[0])
	return exitUsage
}

// outputWriter is stdout, remembering the first write that failed: most
// output is printed with fmt, which drops the error, and a command whose
// output went nowhere must not exit 0.
type outputWriter struct {
	w   io.Writer
	err error
}

// nullDevice reports whether w is a file on the null device.
func nullDevice(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	if err != nil {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err == nil && os.SameFile(info, null)
}

func (o *outputWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil && o.err == nil {
		o.err = err
	}
	return n, err
}

// unwritten is a command's err, or, when out could not be written and err
// says nothing else (nil, --help, out's own error), an error saying so.
func unwritten(out *outputWriter, err error) error {
	if out.err == nil || !(err == nil || errors.Is(err, flag.ErrHelp) || errors.Is(err, out.err)) {
		return err
	}
	return &cliError{msg: "the command ran, but its output could not be written: " + out.err.Error(),
		hint: "stdout is closed, or where it goes is full; check what the command did before running it again " +
			"(a client it created, a secret or key it made, would be made anew)"}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "authd — a self-hosted authentication service\n\nUsage: authd COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `authd COMMAND --help` for a command's flags. Configuration comes from the\nenvironment and .env; see .env.example.")
}

// report prints err for a person and returns the exit status for it.
func report(e *env, name string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var usage *usageError
	if errors.As(err, &usage) {
		hint := usage.hint
		if hint == "" {
			hint = "run `authd " + name + " --help`"
		}
		cmd := usage.cmd
		if cmd == "" {
			cmd = name
		}
		fmt.Fprintf(e.stderr, "authd %s: %s\nhint: %s\n", cmd, clip(usage.msg), hint)
		return exitUsage
	}
	var told *reportedError
	if errors.As(err, &told) {
		return exitFailure
	}
	var de *authd.Error
	if errors.As(err, &de) && !errors.As(err, new(*cliError)) {
		// Not told by the command: the generic hint.
		return report(e, name, fromService(name, err, nil, ""))
	}
	msg, hint := explain(err)
	fmt.Fprintf(e.stderr, "authd %s: %s\n", name, clip(msg))
	if hint != "" {
		fmt.Fprintf(e.stderr, "hint: %s\n", hint)
	}
	return exitFailure
}

// fromService turns an error of the service (an *authd.Error) into one told
// for a person: the one place this happens. cmd is the command's words after
// authd ("clients delete"); flags names the flag that set a service field,
// where the command knows it ("until": "--until"); hint says what to do when
// the error carries no hint of its own ("" for the command's --help). An
// invalid value (the service names its field) is a usage error, exit 2,
// naming each field's problem; anything else, a refusal of a well-formed
// command included (a public client has no secret to rotate), fails with
// exit 1. Other errors are returned as they are.
func fromService(cmd string, err error, flags map[string]string, hint string) error {
	var de *authd.Error
	if !errors.As(err, &de) {
		return err
	}
	msg := asLine(de.Message)
	switch {
	case len(de.Fields) > 0:
		var msgs []string
		for _, f := range de.Fields {
			name := f.Field
			if flag, ok := flags[f.Field]; ok {
				name = flag
			}
			msgs = append(msgs, name+" "+f.Message)
		}
		msg = strings.Join(msgs, "; ")
	case de.Err != nil && msg != "" && (de.Code == authd.EUnavailable || de.Code == authd.EInternal) &&
		!errors.Is(de.Err, authd.ErrBusy):
		// The cause helps with an outage (which database, what it said);
		// of a conflict or a refusal the message says all, and the store's
		// wording (a constraint's name, SQLSTATE) is not the operator's; a
		// shed's cause (ErrBusy) only says busy again.
		msg += ": " + de.Err.Error()
	case msg == "":
		msg = de.Error()
	}
	if error(de) != err { // wrapped: the wrapping says where, before the service's words
		if where, ok := strings.CutSuffix(err.Error(), de.Error()); ok {
			msg = where + msg
		} else {
			msg = err.Error()
		}
	}
	if de.Hint != "" {
		hint = de.Hint
	}
	if hint == "" {
		hint = "run `authd " + strings.Fields(cmd)[0] + " --help`"
	}
	if de.Code == authd.EInvalid && len(de.Fields) > 0 {
		return &usageError{cmd: cmd, msg: oneLine(msg), hint: hint}
	}
	return &cliError{msg: oneLine(msg), hint: hint, err: err}
}

// asLine writes a message of the service, a sentence for API clients ("No
// such client."), as the CLI writes its errors: from a lower-case letter
// (unless the first word is a name with capitals of its own, such as TOTP
// or PostgreSQL), without the full stop.
func asLine(msg string) string {
	msg = strings.TrimSuffix(msg, ".")
	if msg == "" {
		return ""
	}
	first, size := utf8.DecodeRuneInString(msg)
	word, _, _ := strings.Cut(msg[size:], " ")
	if !strings.ContainsFunc(word, unicode.IsUpper) {
		msg = string(unicode.ToLower(first)) + msg[size:]
	}
	return msg
}

// explain gives err as one line for a person, and the hint saying what to
// do about it when there is one.
func explain(err error) (msg, hint string) {
	msg = err.Error()
	var ce *cliError
	var de *authd.Error
	switch {
	case errors.As(err, &ce):
		msg, hint = ce.msg, ce.hint
	case errors.As(err, &de) && de.Hint != "":
		msg, hint = de.Message, de.Hint
	}
	return oneLine(msg), hint
}

// logFailure tells err as one log line, for commands whose every line is
// JSON, and returns it marked as told.
func logFailure(logger *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	msg, hint := explain(err)
	var attrs []any
	if hint != "" {
		attrs = append(attrs, "hint", hint)
	}
	logger.Error(msg, attrs...)
	return &reportedError{err}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// maxErrorRunes bounds an error line: a value it echoes (a pasted cursor,
// a 50,000-character argument) must not flood the terminal.
const maxErrorRunes = 1024

// clip cuts msg to maxErrorRunes, saying how much it left out.
func clip(msg string) string {
	rs := []rune(msg)
	if len(rs) <= maxErrorRunes {
		return msg
	}
	return fmt.Sprintf("%s… (%d more characters)", string(rs[:maxErrorRunes]), len(rs)-maxErrorRunes)
}

// newFlagSet returns a flag set whose errors are returned, not fatal, and
// whose --help prints the synopsis and the flags, to stdout: asked for, it
// is the command's output (parseFlags tells a bad flag on stderr).
func newFlagSet(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stdout)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n", synopsis)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// flagSet reports whether the flag name was given on the command line (a
// bool flag's false is then a choice, not the default).
func flagSet(fs *flag.FlagSet, name string) bool {
	var set bool
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// onlyItsFlags refuses, as a usage error of cmd, a flag given that one of
// byAction's commands uses but action does not.
func onlyItsFlags(fs *flag.FlagSet, cmd string, byAction map[string][]string, action string) error {
	var stray string
	fs.Visit(func(f *flag.Flag) {
		if stray != "" || slices.Contains(byAction[action], f.Name) {
			return
		}
		for _, names := range byAction {
			if slices.Contains(names, f.Name) {
				stray = f.Name
			}
		}
	})
	if stray != "" {
		return usageOf(cmd, "--%s does not apply to %s", stray, cmd)
	}
	return nil
}

// parseFlags parses args and turns a bad flag into a usage error, told as
// one line plus a hint like any other. The flag package would print the
// error and the whole usage: it prints nothing while parsing, and the usage
// only for --help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	repeated := refuseRepeats(fs)
	err := fs.Parse(args)
	twice := repeated()
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	case err != nil:
		return &usageError{msg: flagError(err), hint: "`authd " + fs.Name() + " --help` lists its flags"}
	case twice != "":
		// Named, not echoed: a value may be a secret (a database URL's
		// password).
		return &usageError{msg: "flag --" + twice + " given more than once", hint: "give it once"}
	}
	return nil
}

// flagErrors match the flag package's errors, which name a flag with one
// dash (-limit) and a bad number as a "parse error".
var flagErrors = []struct {
	re   *regexp.Regexp
	tell string // the replacement, $1 the flag or what was given, $2 the value
}{
	{regexp.MustCompile(`^flag provided but not defined: -([0-9]+)$`), "-$1 is read as a flag: numbers here are positive"},
	{regexp.MustCompile(`^flag provided but not defined: -+(.*)$`), "unknown flag --$1"},
	{regexp.MustCompile(`^flag needs an argument: -+(.*)$`), "--$1 needs a value"},
	{regexp.MustCompile(`^invalid boolean value ("(?:[^"\\]|\\.)*") for -+(\S+): .*$`), "--$2 $1: must be true or false"},
	{regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -+(\S+): parse error$`), "--$2 $1: must be a whole number"},
	{regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -+(\S+): value out of range$`), "--$2 $1: is too large"},
	{regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -+(\S+): (.*)$`), "--$2 $1: $3"},
}

// flagError is err, an error of the flag package, in the words and the
// --flag form of the CLI's other errors.
func flagError(err error) string {
	msg := err.Error()
	for _, f := range flagErrors {
		if f.re.MatchString(msg) {
			return f.re.ReplaceAllString(msg, f.tell)
		}
	}
	return msg
}

// repeatable marks a flag value that may be given many times (stringList).
type repeatable interface{ repeatable() }

// refuseRepeats has fs note, while it parses, a second value for a flag
// that takes one, where the flag package would keep the last and hide the
// first (a command line pasted together, a typo'd --email). The returned
// func puts the flags' own values back and names the first flag given
// twice, if any ("" for none). A flag given in an earlier Parse of fs
// (parseInterleaved) counts as given.
func refuseRepeats(fs *flag.FlagSet) (repeated func() string) {
	var orig []*flag.Flag
	var values []flag.Value
	var twice string
	fs.VisitAll(func(f *flag.Flag) {
		if _, many := f.Value.(repeatable); many {
			return
		}
		orig, values = append(orig, f), append(values, f.Value)
		f.Value = once{Value: f.Value, again: func() bool {
			if !flagSet(fs, f.Name) {
				return false
			}
			if twice == "" {
				twice = f.Name
			}
			return true
		}}
	})
	return func() string {
		for i, f := range orig {
			f.Value = values[i]
		}
		return twice
	}
}

// once is a flag's value that ignores a second Set, which again notes.
type once struct {
	flag.Value
	again func() bool // the flag was set already (noted)
}

func (o once) Set(v string) error {
	if o.again() {
		return nil
	}
	return o.Value.Set(v)
}

// IsBoolFlag keeps a bool flag's form (--flag without a value).
func (o once) IsBoolFlag() bool {
	b, ok := o.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func versionCmd(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "authd version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("version takes no arguments")
	}
	rev := "unknown revision"
	goVersion := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(e.stdout, "authd %s (%s, %s)\n", version, rev, goVersion)
	return nil
}

// parseInterleaved parses flags wherever they stand among the positional
// arguments (authd migrate down 2 --database-url …) and returns the latter.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
