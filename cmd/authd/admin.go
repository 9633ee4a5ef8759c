package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/google/uuid"
)

const adminSynopsis = `authd admin [flags] users ACTION | logs

The admin API's operations, straight on the database (DATABASE_URL):

  authd admin users list   [--email PART] [--status S] [--limit N] [--cursor C]
  authd admin users show   USER
  authd admin users lock   USER [--until 2026-12-01T00:00:00Z]   (no --until: until unlocked)
  authd admin users unlock USER
  authd admin users revoke-sessions USER
  authd admin users set-email USER NEW_EMAIL [--verified]        move the account (its sessions end, the old address is told);
                                                                 without --verified a verification link goes to NEW_EMAIL
  authd admin users mfa    USER                                  the second factors (no secrets)
  authd admin users reset-mfa USER                               remove them (the user is mailed): the password alone signs in
  authd admin users delete USER --yes                            (GDPR erasure)
  authd admin logs [--user USER] [--event E] [--result R] [--since T] [--until T] [--limit N] [--cursor C]
  authd admin mail list [--dead] [--limit N] [--cursor C]           the outbox
  authd admin mail retry MAIL_ID                                     a dead mail gets new attempts

USER is an id or an email address. Lists print a table, or JSON with --json;
--cursor continues a list where the previous page ended. Every command, reads
included, is logged as admin_action. Running instances see revocations at
once on PostgreSQL and within two seconds on SQLite.`

// adminClient is who the security log records for CLI actions.
func adminClient(e *env) authd.Client {
	who := "unknown"
	if u, ok := e.getenv("USER"); ok && u != "" {
		who = u
	}
	return authd.Client{UserAgent: "authd admin (cli, " + who + ")"}
}

// adminFieldFlags names the flag that sets a field of the service's requests.
var adminFieldFlags = map[string]string{"until": "--until", "since": "--since", "limit": "--limit",
	"cursor": "--cursor", "email": "--email", "status": "--status", "event_type": "--event", "result": "--result"}

// adminActionFlags are the flags each admin command uses, beside the
// configuration's: any other is refused, not ignored (an operator who adds
// --until to unlock, --user to users list, or --json to an action that
// prints one line, believes it did something).
var adminActionFlags = map[string][]string{
	"logs":       {"user", "event", "result", "since", "until", "limit", "cursor", "json"},
	"users list": {"email", "status", "limit", "cursor", "json"},
	"users lock": {"until"}, "users delete": {"yes"}, "users set-email": {"verified"},
	"mail list":  {"dead", "limit", "cursor", "json"},
	"users show": {"json"}, "users mfa": {"json"},
	// and none for the other users and mail commands
	"users unlock": nil, "users revoke-sessions": nil, "users reset-mfa": nil, "mail retry": nil,
}

func adminCmd(ctx context.Context, e *env, args []string) (err error) {
	fs := newFlagSet(e, "admin", adminSynopsis)
	flags := configFlags(fs, "DATABASE_URL", "AUTHD_DATA_DIR")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	email := fs.String("email", "", "users list: a part of the email address")
	status := fs.String("status", "", "users list: active, inactive, locked or deleted")
	// As the admin API's limit: absent means 50, and 0 is out of range.
	limit := fs.Int("limit", authd.DefaultListLimit, fmt.Sprintf("lists: rows per page, 1–%d", authd.MaxListLimit))
	cursor := fs.String("cursor", "", "lists: continue after the page that printed this cursor")
	until := fs.String("until", "", "users lock: RFC 3339 end of the lock; logs: events before this time")
	since := fs.String("since", "", "logs: events at or after this RFC 3339 time")
	user := fs.String("user", "", "logs: a user's id or email")
	event := fs.String("event", "", "logs: an event type, such as login_failure")
	result := fs.String("result", "", "logs: success or failure")
	yes := fs.Bool("yes", false, "users delete: confirm the erasure")
	dead := fs.Bool("dead", false, "mail list: the dead mails instead of the pending ones")
	verified := fs.Bool("verified", false, "users set-email: you checked that NEW_EMAIL is the user's (no verification link)")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if err := checkAdminWords(rest, *yes); err != nil {
		return err
	}
	action := strings.Join(rest[:min(2, len(rest))], " ") // logs, users lock, mail list …
	if err := onlyItsFlags(fs, "admin "+action, adminActionFlags, action); err != nil {
		return err
	}
	if *limit < 1 || *limit > authd.MaxListLimit {
		return usagef("--limit must be from 1 to %d", authd.MaxListLimit)
	}
	var after *authd.Cursor
	if *cursor != "" {
		if after, err = authd.ParseCursor(*cursor); err != nil {
			return usagef("--cursor %q is not a cursor a list printed", *cursor)
		}
	}
	// Every flag and word is checked before the database is opened: a
	// command line that does not parse creates no database.
	logs := authd.SecurityLogFilter{After: after, Limit: *limit}
	users := authd.UserFilter{Email: *email, After: after, Limit: *limit}
	var lockUntil time.Time
	var retry *uuid.UUID // admin mail retry's MAIL_ID; nil: mail list
	switch {
	case rest[0] == "logs":
		if *user != "" {
			if err := checkUserRef(*user); err != nil {
				return err
			}
		}
		if *event != "" {
			if logs.EventType, err = authd.ParseEventType(*event); err != nil {
				return usagef("--event: %s", authd.ErrorMessage(err))
			}
		}
		if *result != "" {
			if logs.Result, err = authd.ParseResult(*result); err != nil {
				return usagef("--result must be success or failure")
			}
		}
		if logs.Since, err = parseBound("--since", *since); err != nil {
			return err
		}
		if logs.Until, err = parseBound("--until", *until); err != nil {
			return err
		}
		if !logs.Since.IsZero() && !logs.Until.IsZero() && !logs.Since.Before(logs.Until) {
			// The service refuses it too, but in its API's words ("until: must be after since").
			return usageOf("admin logs", "--until must be after --since")
		}
	case rest[0] == "mail" && rest[1] == "retry":
		id, err := uuid.Parse(rest[2])
		if err != nil {
			return usagef("MAIL_ID %q is not an id from `authd admin mail list --dead`", rest[2])
		}
		retry = &id // the zero id too: an unknown mail, not "no id"
	case rest[0] == "users" && rest[1] == "list":
		if *status != "" {
			if users.Status, err = authd.ParseAccountStatus(*status); err != nil {
				return usagef("--status must be active, inactive, locked or deleted")
			}
		}
	case rest[0] == "users":
		if err := checkUserRef(rest[2]); err != nil {
			return err
		}
		if rest[1] == "set-email" {
			if _, err := authd.LookupEmail(rest[3]); err != nil {
				return usageOf("admin users set-email", "NEW_EMAIL %q is not an email address", rest[3])
			}
		}
		if rest[1] == "lock" {
			if lockUntil, err = parseTime("--until", *until); err != nil {
				return err
			}
			if *until != "" && lockUntil.IsZero() { // the zero time would mean "no end"
				return usageOf("admin users lock", "--until must be in the future; leave it out to lock until unlocked")
			}
		}
	}
	// The service's errors, told with the flag that set the field.
	defer func() {
		hint, fields := "", adminFieldFlags
		if rest[0] == "mail" && authd.ErrorCode(err) == authd.ENotFound {
			hint = "`authd admin mail list --dead` lists the dead mails"
		}
		if action == "users set-email" {
			fields = map[string]string{"email": "NEW_EMAIL"}
			if authd.ErrorCode(err) == authd.EConflict {
				hint = "`authd admin users show NEW_EMAIL` shows the account that has it"
			}
		}
		err = fromService("admin "+action, err, fields, hint)
	}()

	cfg, db, err := openConfigured(ctx, e, flags, existing)
	if err != nil {
		return err
	}
	defer db.Close()
	// An erasure reaches the development mailer's files (mailArchive).
	svc := authd.NewService(cfg.service(), authd.Deps{Store: db, Archive: cfg.mailArchive(),
		Logger: slog.New(slog.DiscardHandler)})
	c := adminClient(e)
	if rest[0] == "mail" {
		return adminMail(ctx, e, svc, c, retry, *dead, after, *limit, *asJSON)
	}

	if rest[0] == "logs" {
		if *user != "" {
			u, err := findUser(ctx, db, *user)
			if err != nil {
				return err
			}
			logs.UserID = u.ID
		}
		p, err := svc.SecurityLogs(ctx, c, logs)
		if err != nil {
			return err
		}
		if *asJSON {
			return printPage(e.stdout, p, httpapi.SecurityLogView)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tEVENT\tRESULT\tUSER\tIP\tREASON")
		for _, l := range p.Items {
			uid := "-"
			if l.UserID != uuid.Nil {
				uid = l.UserID.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.Timestamp.Format(time.RFC3339), l.EventType, l.Result, uid,
				dash(l.IPAddress), dash(l.FailureReason))
		}
		tw.Flush()
		return printNext(e.stdout, p.Next)
	}

	if rest[1] == "list" {
		p, err := svc.Users(ctx, c, users)
		if err != nil {
			return err
		}
		if *asJSON {
			return printPage(e.stdout, p, httpapi.AdminUserView)
		}
		printUsers(e.stdout, p.Items)
		return printNext(e.stdout, p.Next)
	}

	u, err := findUser(ctx, db, rest[2])
	if err != nil {
		return err
	}
	if u.IsDeleted() && rest[1] != "show" { // show finds the tombstone; there is nothing else to do to it
		return &cliError{msg: fmt.Sprintf("%s was erased (%s): there is nothing left to act on", rest[2], authd.Tombstone(u.ID)),
			hint: "`authd admin users show " + rest[2] + "` shows what is left of it"}
	}
	switch rest[1] {
	case "show":
		if u, err = svc.User(ctx, c, u.ID); err != nil { // the read is logged
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, httpapi.AdminUserView(u))
		}
		printUsers(e.stdout, []*authd.User{u})
		return nil
	case "lock":
		return done(e, svc.LockUser(ctx, c, u.ID, lockUntil), "locked %s", u.Email)
	case "unlock":
		return done(e, svc.UnlockUser(ctx, c, u.ID), "unlocked %s", u.Email)
	case "revoke-sessions":
		return done(e, svc.RevokeUserSessions(ctx, c, u.ID), "ended every session of %s", u.Email)
	case "set-email":
		err := svc.SetUserEmail(ctx, c, u.ID, rest[3], *verified)
		to := rest[3]
		if moved, rerr := db.User(ctx, u.ID); err == nil && rerr == nil {
			to = moved.Email // as stored
		}
		if *verified {
			return done(e, err, "moved %s to %s, verified; every session ended", u.Email, to)
		}
		return done(e, err, "moved %s to %s; every session ended, and a verification link was mailed to the new address",
			u.Email, to)
	case "mfa":
		st, err := svc.UserMFA(ctx, c, u.ID)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, httpapi.MFAView(st))
		}
		printFactors(e.stdout, st)
		return nil
	case "reset-mfa":
		removed, err := svc.ResetMFA(ctx, c, u.ID)
		if err != nil || !removed.IsZero() {
			return done(e, err, "removed every second factor of %s (%s); the password alone signs in; the user was mailed",
				u.Email, removal(removed))
		}
		return done(e, nil, "%s had no second factor to remove; the password alone signs in", u.Email)
	default: // delete
		return done(e, svc.DeleteUser(ctx, c, u.ID), "erased %s (now %s)", u.Email, authd.Tombstone(u.ID))
	}
}

// removal says what a reset removed: "an authenticator app, 2 passkeys
// and 10 recovery codes".
func removal(r authd.MFARemoval) string {
	var parts []string
	if r.TOTP {
		parts = append(parts, "an authenticator app")
	}
	for _, n := range []struct {
		n    int
		what string
	}{{r.Passkeys, "passkey"}, {r.RecoveryCodes, "unused recovery code"}} {
		switch {
		case n.n == 1:
			parts = append(parts, "1 "+n.what)
		case n.n > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", n.n, n.what))
		}
	}
	if len(parts) < 2 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// checkAdminWords checks the words after the flags (users show USER, logs,
// mail list …) and says which is missing, unknown or too many.
func checkAdminWords(rest []string, yes bool) error {
	if len(rest) == 0 {
		return usagef("missing users, logs or mail")
	}
	// args is how many words an action takes, and what they are called.
	type action struct {
		args int
		what string
	}
	var actions map[string]action
	switch rest[0] {
	case "logs":
		if len(rest) > 1 {
			return usageOf("admin logs", "takes no arguments; filter with --user, --event, --result, --since and --until")
		}
		return nil
	case "users":
		user := action{1, "USER (an id or email)"}
		actions = map[string]action{"list": {}, "show": user, "lock": user, "unlock": user, "revoke-sessions": user,
			"mfa": user, "reset-mfa": user, "delete": user, "set-email": {2, "USER (an id or email) and NEW_EMAIL"}}
	case "mail":
		actions = map[string]action{"list": {}, "retry": {1, "MAIL_ID (from `authd admin mail list --dead`)"}}
	default:
		return usagef("unknown admin command %q", strings.Join(rest, " "))
	}
	cmd := "admin " + rest[0]
	if len(rest) == 1 {
		names := slices.Sorted(maps.Keys(actions))
		return usageOf(cmd, "missing ACTION (%s or %s)", strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
	}
	a, ok := actions[rest[1]]
	if !ok {
		return usageOf(cmd, "unknown action %q", rest[1])
	}
	cmd += " " + rest[1]
	switch {
	case len(rest) == 2 && a.args > 0:
		return usageOf(cmd, "missing %s", a.what)
	case len(rest) < 2+a.args:
		return usageOf(cmd, "missing NEW_EMAIL")
	case len(rest) > 2+a.args:
		takes := "no arguments"
		switch a.args {
		case 1:
			takes = "one " + strings.Fields(a.what)[0]
		case 2:
			takes = "USER and NEW_EMAIL"
		}
		return usageOf(cmd, "takes %s; unexpected %q", takes, strings.Join(rest[2+a.args:], " "))
	case cmd == "admin users delete" && !yes:
		return usageOf(cmd, "erases the account for good; add --yes to confirm")
	}
	return nil
}

// printFactors prints a user's second factors as a table.
func printFactors(w io.Writer, st *authd.MFAStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tENABLED\tCREATED\tLAST USED\tNAME")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, f := range st.Factors {
		fmt.Fprintf(tw, "%s\t%t\t%s\t%s\t\n", f.Kind, f.Confirmed, when(f.CreatedAt), when(f.LastUsedAt))
	}
	for _, p := range st.Passkeys {
		fmt.Fprintf(tw, "%s\t%t\t%s\t%s\t%s\n", authd.MethodPasskey, true, when(p.CreatedAt), when(p.LastUsedAt), p.Name)
	}
	tw.Flush()
	fmt.Fprintf(w, "recovery codes left: %d\n", st.RecoveryCodesLeft)
}

func done(e *env, err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, format+"\n", args...)
	return nil
}

// checkUserRef checks that ref, a USER, is an id or an email address.
func checkUserRef(ref string) error {
	if _, err := uuid.Parse(ref); err == nil {
		return nil
	}
	if _, err := authd.LookupEmail(ref); err != nil {
		return usagef("USER %q is neither a user id nor an email address", ref)
	}
	return nil
}

// findUser looks a user up by id or email.
func findUser(ctx context.Context, db authd.Store, ref string) (*authd.User, error) {
	if err := checkUserRef(ref); err != nil {
		return nil, err
	}
	var u *authd.User
	var err error
	if id, perr := uuid.Parse(ref); perr == nil {
		u, err = db.User(ctx, id)
	} else {
		email, _ := authd.LookupEmail(ref) // erased and moved-aside accounts' addresses too
		u, err = db.UserByEmail(ctx, email)
	}
	if authd.ErrorCode(err) == authd.ENotFound {
		return nil, &cliError{msg: fmt.Sprintf("no user %q", ref), hint: "find it with `authd admin users list --email PART`"}
	}
	return u, err
}

// parseBound is parseTime for a listing's bound, refusing the zero time:
// it is what no bound is, so the filter would silently be dropped where
// --until means to narrow the listing.
func parseBound(flag, v string) (time.Time, error) {
	t, err := parseTime(flag, v)
	if err == nil && v != "" && t.IsZero() {
		return t, usageOf("admin logs", "%s %s is the zero time, which reads as no bound: give a later time, or leave it out", flag, v)
	}
	return t, err
}

func parseTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, usagef("%s %q is not an RFC 3339 time such as 2026-12-01T00:00:00Z", flag, v)
	}
	return t, nil
}

// printJSON writes v as indented JSON, as --json asks.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printPage writes a page as the admin API answers it: items and next_cursor.
func printPage[T any](w io.Writer, p authd.Page[T], view func(T) any) error {
	items := make([]any, 0, len(p.Items))
	for _, it := range p.Items {
		items = append(items, view(it))
	}
	var next *string
	if p.Next != nil {
		s := p.Next.String()
		next = &s
	}
	return printJSON(w, map[string]any{"items": items, "next_cursor": next})
}

func printNext(w io.Writer, c *authd.Cursor) error {
	if c != nil {
		fmt.Fprintf(w, "\nmore: --cursor %s\n", c)
	}
	return nil
}

func printUsers(w io.Writer, users []*authd.User) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tSTATUS\tVERIFIED\tFAILED\tLOCKED BY\tLOCKED UNTIL\tCREATED")
	for _, u := range users {
		until := "-"
		if !u.AccountLockedUntil.IsZero() {
			until = u.AccountLockedUntil.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%s\t%s\t%s\n", u.ID, u.Email, u.AccountStatus, u.EmailVerified,
			u.FailedLoginAttempts, dash(string(u.LockReason)), until, u.CreatedAt.Format(time.RFC3339))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func purgeCmd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "purge", "authd purge [--dry-run] [--json]\n\nApplies retention now: deletes security logs older than AUTHD_SECURITY_LOG_RETENTION\nand tokens, verification tokens and sessions that ended more than a day ago,\nin batches. serve does this every hour; with many instances only one purges.")
	flags := configFlags(fs, "DATABASE_URL", "AUTHD_DATA_DIR", "AUTHD_SECURITY_LOG_RETENTION")
	dryRun := fs.Bool("dry-run", false, "count what would be deleted; delete nothing")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("purge takes no arguments")
	}
	cfg, db, err := openConfigured(ctx, e, flags, existing)
	if err != nil {
		return err
	}
	defer db.Close()
	// The development mailer's files hold addresses: retention removes
	// them too, whichever mailer sends now (mailArchive).
	svc := authd.NewService(cfg.service(), authd.Deps{Store: db, Archive: cfg.mailArchive()})
	res, err := svc.Purge(ctx, cfg.SecurityLogRetention, *dryRun)
	// A purge that fails past a step (an erasure it cannot finish fails
	// every run, and stops no other step) prints what it did, then fails.
	if *asJSON {
		out := map[string]any{"dry_run": *dryRun, "result": res}
		if err != nil {
			out["error"] = err.Error()
		}
		if jerr := json.NewEncoder(e.stdout).Encode(out); jerr != nil {
			return errors.Join(err, jerr)
		}
		return err
	}
	if res.Skipped {
		fmt.Fprintln(e.stdout, "another instance is purging right now; nothing done")
		return err
	}
	verb := "deleted"
	if *dryRun {
		verb = "would delete"
	}
	fmt.Fprintf(e.stdout, "%s %d security logs (older than %s), %d tokens, %d verification tokens, %d MFA challenges, "+
		"%d passkey ceremonies, %d OpenID authorization requests, %d authorization codes and %d sessions (ended over a day ago), "+
		"%d revocation events (their tokens expired), %d undeliverable mails (dead longer than %s), "+
		"%d erased accounts' rows (nothing left about them)\n",
		verb, res.SecurityLogs, cfg.SecurityLogRetention, res.Tokens, res.VerificationTokens, res.MFAChallenges,
		res.WebAuthnChallenges, res.AuthRequests, res.AuthCodes, res.Sessions, res.RevocationEvents, res.DeadMails,
		cfg.SecurityLogRetention, res.ErasedAccounts)
	if len(res.Deferred) > 0 {
		fmt.Fprintf(e.stdout, "left for the next run (rows in use by requests): %s\n", strings.Join(res.Deferred, ", "))
	}
	if err != nil {
		// A failing step stops the steps after it (an erasure's failure
		// and the mailer's copies stop none): a 0 may not be "nothing due".
		fmt.Fprintln(e.stdout, "the purge failed (below): the counts are what it did; a failed step, and any after it, may have more due")
	}
	return err
}

// adminMail runs admin mail retry of the mail *retry names, or admin mail
// list when retry is nil.
func adminMail(ctx context.Context, e *env, svc *authd.Service, c authd.Client, retry *uuid.UUID, dead bool,
	after *authd.Cursor, limit int, asJSON bool) error {
	if retry != nil {
		return done(e, svc.RetryMail(ctx, c, *retry), "mail %s is pending again; a running authd sends it shortly", *retry)
	}
	p, err := svc.Mails(ctx, c, authd.MailFilter{Dead: dead, After: after, Limit: limit})
	if err != nil {
		return err
	}
	if asJSON {
		return printPage(e.stdout, p, httpapi.MailView)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tRECIPIENT\tCREATED\tATTEMPTS\tLAST ERROR")
	for _, m := range p.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.Kind, m.To, m.CreatedAt.Format(time.RFC3339), m.Attempts, dash(m.LastError))
	}
	tw.Flush()
	return printNext(e.stdout, p.Next)
}
