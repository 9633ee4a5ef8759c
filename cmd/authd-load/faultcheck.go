package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// faultReport is the outcome of a fault run (printed, or -json).
type faultReport struct {
	OK       bool          `json:"ok"`
	Duration string        `json:"duration"`
	Clients  int           `json:"clients"`
	DrainS   float64       `json:"drain_s"` // waiting for the outbox after the load
	Ops      []opStats     `json:"operations"`
	Faults   []faultStats  `json:"faults"`
	Mail     mailStats     `json:"mail"`
	Checks   []checkResult `json:"checks"`
}

// opStats counts the attempts of one operation by outcome.
type opStats struct {
	Op       string         `json:"op"`
	Attempts int            `json:"attempts"`
	OK       int            `json:"ok"`        // 2xx
	Refused  int            `json:"no_answer"` // connection refused/reset, timeout
	Status   map[string]int `json:"status"`    // every other status, "503" etc.
}

// faultStats is one fault: when, how long, and how long each instance
// took to answer successfully again after it ended.
type faultStats struct {
	Kind     string    `json:"kind"`
	AtSec    float64   `json:"at_s"`
	LengthS  float64   `json:"length_s"`
	Recovery []float64 `json:"recovery_s"` // per instance; -1: no success after it
	// For the Redis stop: seconds from its end until each instance's
	// authd_rate_limit_fallback went back to 0 (-1: not seen).
	BackOnRedis []float64 `json:"back_on_redis_s,omitempty"`
	Answers503  int       `json:"answers_503"`
	NoAnswer    int       `json:"no_answer"`
	// For the graceful stop: the process's exit status (-1: killed).
	Exit *int `json:"exit_status,omitempty"`
}

// mailStats counts the verification mail against the registrations.
type mailStats struct {
	Registrations int `json:"registrations_202"`
	ExactlyOne    int `json:"exactly_one_mail"`
	Lost          int `json:"lost"`
	Duplicates    int `json:"duplicates"` // extra copies (at-least-once delivery after a kill)
	// Rows still in the outbox when the load ended although their mail had
	// arrived: the sender was killed before deleting them.
	SentButKept     int `json:"sent_but_kept"`
	Unanswered      int `json:"unanswered_registrations"`
	UnansweredKept  int `json:"unanswered_with_account"`
	UnansweredMails int `json:"unanswered_with_mail"`
	OtherMail       int `json:"other_mail"`
	Unparsable      int `json:"unparsable"`
	Total           int `json:"total_received"`
}

type checkResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (r *faultReport) add(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, checkResult{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// check waits for the outbox to drain and checks the ledger against the
// database, the mail received and both instances.
func (l *ledger) check(ctx context.Context, o faultOptions, faults []fault, sampler *fallbackSampler) (*faultReport, error) {
	db, err := pgx.Connect(ctx, o.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to -database-url for the checks: %w", err)
	}
	defer db.Close(ctx)
	l.mu.Lock()
	defer l.mu.Unlock() // the load has ended
	rep := &faultReport{Clients: o.clients}
	like := l.prefix() + "%"

	// Drain: until every 202 has its verification mail and no mail of
	// this run waits in the outbox, or -drain passes.
	drainStart := time.Now()
	deadline := drainStart.Add(o.drain)
	var waiting int
	first := true
	for {
		waiting = 0
		if err := db.QueryRow(ctx, `SELECT count(*) FROM mail_outbox WHERE recipient LIKE $1 AND dead_at IS NULL`, like).Scan(&waiting); err != nil {
			return nil, err
		}
		missing := 0
		for _, e := range l.registered {
			if countVerify(l.sink.mails(e)) == 0 {
				missing++
			}
		}
		if first {
			// Rows whose mail already arrived: sent by an instance killed
			// before it deleted the row. They wait out their lease, then
			// another instance claims them again (and drops them, the
			// address being verified, or sends a second copy).
			first = false
			if err := l.sentButKept(ctx, db, like, &rep.Mail); err != nil {
				return nil, err
			}
		}
		if (waiting == 0 && missing == 0) || time.Now().After(deadline) {
			rep.DrainS = time.Since(drainStart).Seconds()
			break
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return nil, ctx.Err()
		}
	}

	// Accounts in the database.
	accounts := map[string]struct {
		verified bool
		status   string
	}{}
	rows, err := db.Query(ctx, `SELECT email, email_verified, account_status::text FROM users WHERE email LIKE $1`, like)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var e, st string
		var v bool
		if err := rows.Scan(&e, &v, &st); err != nil {
			return nil, err
		}
		accounts[e] = struct {
			verified bool
			status   string
		}{v, st}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var noAccount []string
	for _, e := range l.registered {
		if _, ok := accounts[e]; !ok {
			noAccount = append(noAccount, e)
		}
	}
	rep.add("every 202 registration has its account", len(noAccount) == 0,
		"%d of %d acknowledged registrations in users%s", len(l.registered)-len(noAccount), len(l.registered), sample(noAccount))

	// Verification mail: exactly one per 202.
	m := &rep.Mail
	m.Registrations, m.Unanswered = len(l.registered), len(l.unanswered)
	var lost, dup []string
	for _, e := range l.registered {
		switch n := countVerify(l.sink.mails(e)); {
		case n == 0:
			lost = append(lost, e)
		case n == 1:
			m.ExactlyOne++
		default:
			m.Duplicates += n - 1
			if !l.resentAfterKill(l.sink.mails(e), faults) {
				dup = append(dup, fmt.Sprintf("%s ×%d", e, n))
			}
		}
	}
	m.Lost = len(lost)
	for _, e := range l.unanswered {
		if _, ok := accounts[e]; ok {
			m.UnansweredKept++
		}
		if countVerify(l.sink.mails(e)) > 0 {
			m.UnansweredMails++
		}
	}
	l.sink.mu.Lock()
	m.Total, m.Unparsable = l.sink.total, len(l.sink.bad)
	for to, ms := range l.sink.byTo {
		if !strings.HasPrefix(to, l.prefix()) {
			m.OtherMail += len(ms)
			continue
		}
		m.OtherMail += len(ms) - countVerify(ms)
	}
	l.sink.mu.Unlock()
	rep.add("every 202 registration got exactly one verification mail", len(lost) == 0 && len(dup) == 0,
		"%d exactly one, %d lost%s; %d duplicates re-sent after a SIGKILL between the SMTP server's acceptance and the row's delete "+
			"(at-least-once delivery: the copy has its own Message-ID and a new link that voids the first), %d others%s",
		m.ExactlyOne, len(lost), sample(lost), m.Duplicates, len(dup), sample(dup))
	rep.add("every mail received parses, none unexpected", m.Unparsable == 0 && m.OtherMail == 0,
		"%d received, %d unparsable, %d not a verification mail of this run", m.Total, m.Unparsable, m.OtherMail)
	var stuck []string
	rows, err = db.Query(ctx, `SELECT recipient, kind, attempts, dead_at IS NOT NULL, coalesce(last_error, '')
		FROM mail_outbox WHERE recipient LIKE $1`, like)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var to, kind, lastErr string
		var attempts int
		var dead bool
		if err := rows.Scan(&to, &kind, &attempts, &dead, &lastErr); err != nil {
			return nil, err
		}
		stuck = append(stuck, fmt.Sprintf("%s %s attempts=%d dead=%v %s", to, kind, attempts, dead, lastErr))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rep.add("the outbox holds nothing of this run after the drain", len(stuck) == 0, "%d rows left%s", len(stuck), sample(stuck))

	// Verified accounts.
	var notVerified []string
	for _, e := range append(slices.Clone(l.verified), l.verifyInDoubt...) {
		if a := accounts[e]; !a.verified || a.status != "active" {
			notVerified = append(notVerified, fmt.Sprintf("%s (%s, verified=%v)", e, a.status, a.verified))
		}
	}
	rep.add("every 200 verify-email left an active, verified account", len(notVerified) == 0,
		"%d verified (+%d whose 200 was lost), %d not%s", len(l.verified), len(l.verifyInDoubt), len(notVerified), sample(notVerified))

	// The audit: each acknowledged effect has its security-log row.
	if err := l.checkAudit(ctx, db, rep); err != nil {
		return nil, err
	}

	// Logouts: refused on both instances, and the session revoked in the table.
	var notHonoured []string
	for _, lo := range l.logouts {
		for _, in := range l.insts {
			if code := l.refused(ctx, in, lo.access); code != http.StatusUnauthorized {
				notHonoured = append(notHonoured, fmt.Sprintf("%s on %s: %d", lo.email, in.name, code))
			}
		}
		var revoked bool
		if err := db.QueryRow(ctx, `SELECT revoked_at IS NOT NULL FROM sessions WHERE id = $1`, lo.sessionID).Scan(&revoked); err != nil || !revoked {
			notHonoured = append(notHonoured, fmt.Sprintf("%s: session %s not revoked in the table (%v)", lo.email, lo.sessionID, err))
		}
	}
	inDoubt := 0
	for _, lo := range l.logouts {
		if lo.inDoubt {
			inDoubt++
		}
	}
	rep.add("every 204 logout is honoured on both instances", len(notHonoured) == 0,
		"%d logouts (%d whose 204 was lost, retried: 401), access token refused by /v1/users/me on %d instances; %d failures%s",
		len(l.logouts), inDoubt, len(l.insts), len(notHonoured), sample(notHonoured))

	// Live sessions: the latest access token works on both instances and
	// the latest refresh token rotates.
	var broken []string
	refreshes := 0
	for i, s := range l.live {
		for _, in := range l.insts {
			if code := l.probe(ctx, in, "GET", "/v1/users/me", "", s.access); code != http.StatusOK {
				broken = append(broken, fmt.Sprintf("%s access on %s: %d", s.email, in.name, code))
			}
		}
		refreshes += s.refreshes
		in := l.insts[i%len(l.insts)]
		if code := l.probe(ctx, in, "POST", "/v1/auth/refresh", `{"refresh_token":"`+s.refresh+`"}`, ""); code != http.StatusOK {
			broken = append(broken, fmt.Sprintf("%s refresh on %s: %d", s.email, in.name, code))
		}
	}
	rep.add("every 200 refresh's token works unless its session was revoked", len(broken) == 0,
		"%d live sessions (%d rotations before): latest access token accepted on both instances, latest refresh token rotates; "+
			"%d sessions revoked as reuse after a lost answer (legitimate, SPEC 6.4); %d failures%s",
		len(l.live), refreshes, l.reuseAfterLoss, len(broken), sample(broken))

	rep.add("no answer contradicts the ledger", len(l.unexpected) == 0, "%d unexpected answers%s", len(l.unexpected), sample(l.unexpected))

	l.checkAttempts(rep, faults, sampler)
	rep.OK = true
	for _, c := range rep.Checks {
		rep.OK = rep.OK && c.OK
	}
	return rep, nil
}

// sentButKept counts the outbox rows, at the end of the load, whose mail
// had already arrived.
func (l *ledger) sentButKept(ctx context.Context, db *pgx.Conn, like string, m *mailStats) error {
	rows, err := db.Query(ctx, `SELECT recipient FROM mail_outbox WHERE recipient LIKE $1 AND kind = 'verify_email'`, like)
	if err != nil {
		return err
	}
	recipients, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, r := range recipients {
		if countVerify(l.sink.mails(r)) > 0 {
			m.SentButKept++
		}
	}
	return nil
}

// resentAfterKill reports whether the copies of a mail are explained by a
// SIGKILL: the first arrived before an instance was killed and the others
// after it.
func (l *ledger) resentAfterKill(ms []sinkMail, faults []fault) bool {
	var verify []sinkMail
	for _, m := range ms {
		if m.Token != "" {
			verify = append(verify, m)
		}
	}
	for _, f := range faults {
		if !strings.HasPrefix(f.Kind, "SIGKILL") || verify[0].At.After(f.Start) {
			continue
		}
		explained := true
		for _, m := range verify[1:] {
			explained = explained && m.At.After(f.Start)
		}
		if explained {
			return true
		}
	}
	return false
}

func countVerify(ms []sinkMail) int {
	n := 0
	for _, m := range ms {
		if m.Token != "" {
			n++
		}
	}
	return n
}

// sample lists the first few items of a failure, for the report.
func sample(items []string) string {
	if len(items) == 0 {
		return ""
	}
	if len(items) > 5 {
		return ": " + strings.Join(items[:5], "; ") + fmt.Sprintf("; … (%d more)", len(items)-5)
	}
	return ": " + strings.Join(items, "; ")
}

// probe is one request of the checks, outside the ledger.
func (l *ledger) probe(ctx context.Context, in *instance, method, path, body, bearer string) int {
	u := &user{l: &ledger{insts: []*instance{in}, client: l.client}, ip: "10.255.255.254"}
	a, _ := u.send(ctx, "check", 0, method, path, body, bearer)
	return a.Status
}

// refused asks in whether it refuses an access token, until it does or
// for at most ten seconds: a revocation reaches the other instances through
// LISTEN/NOTIFY, and a logout of the load's last moment may still be on its
// way. This checks that it arrives, not how fast.
func (l *ledger) refused(ctx context.Context, in *instance, access string) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		code := l.probe(ctx, in, "GET", "/v1/users/me", "", access)
		if code == http.StatusUnauthorized || time.Now().After(deadline) {
			return code
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return code
		}
	}
}

// checkAudit compares the acknowledged effects with the security log.
func (l *ledger) checkAudit(ctx context.Context, db *pgx.Conn, rep *faultReport) error {
	rows, err := db.Query(ctx, `SELECT l.event_type::text, count(*) FROM security_logs l JOIN users u ON u.id = l.user_id
		WHERE u.email LIKE $1 AND l.result = 'success' GROUP BY 1`, l.prefix()+"%")
	if err != nil {
		return err
	}
	logged := map[string]int{}
	for rows.Next() {
		var ev string
		var n int
		if err := rows.Scan(&ev, &n); err != nil {
			return err
		}
		logged[ev] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	acked := map[string]int{}
	for _, a := range l.attempts {
		if a.Status < 200 || a.Status > 299 {
			continue
		}
		switch a.Op {
		case "register":
			acked["registration"]++
		case "verify":
			acked["email_verified"]++
		case "login":
			acked["login_success"]++
		case "refresh":
			acked["token_refreshed"]++
		case "logout":
			acked["logout"]++
		}
	}
	var short []string
	var parts []string
	for _, ev := range []string{"registration", "email_verified", "login_success", "token_refreshed", "logout"} {
		parts = append(parts, fmt.Sprintf("%s %d/%d", ev, logged[ev], acked[ev]))
		if logged[ev] < acked[ev] {
			short = append(short, ev)
		}
	}
	rep.add("every acknowledged effect has its security-log row", len(short) == 0,
		"rows/acknowledged: %s%s", strings.Join(parts, ", "), sample(short))
	return nil
}

// checkAttempts tallies the attempts, measures each recovery and checks
// that every 5xx was a 503 with Retry-After during an outage.
func (l *ledger) checkAttempts(rep *faultReport, faults []fault, sampler *fallbackSampler) {
	byOp := map[string]*opStats{}
	for _, a := range l.attempts {
		s := byOp[a.Op]
		if s == nil {
			s = &opStats{Op: a.Op, Status: map[string]int{}}
			byOp[a.Op] = s
		}
		s.Attempts++
		switch {
		case a.Status == 0:
			s.Refused++
		case a.Status >= 200 && a.Status < 300:
			s.OK++
		default:
			s.Status[fmt.Sprint(a.Status)]++
		}
	}
	for _, op := range []string{"register", "verify", "login", "me", "refresh", "logout"} {
		if s := byOp[op]; s != nil {
			rep.Ops = append(rep.Ops, *s)
		}
	}

	recs := newRecoveries(l.attempts)
	var notRecovered []string
	var graceful []faultStats
	for _, f := range faults {
		fs := faultStats{Kind: f.Kind, AtSec: f.Start.Sub(l.start).Seconds(), LengthS: f.End.Sub(f.Start).Seconds()}
		if strings.HasPrefix(f.Kind, "SIGTERM") {
			fs.Exit = &f.Exit
			graceful = append(graceful, fs)
		}
		for i := range l.insts {
			if rec := recs.firstSuccess(i, "", f.End); rec.IsZero() {
				fs.Recovery = append(fs.Recovery, -1)
				notRecovered = append(notRecovered, fmt.Sprintf("%s after %s", l.insts[i].name, f.Kind))
			} else {
				fs.Recovery = append(fs.Recovery, rec.Sub(f.End).Seconds())
			}
			if strings.HasPrefix(f.Kind, "Redis") {
				if t, ok := sampler.backOnRedis(i, f.Start); ok {
					fs.BackOnRedis = append(fs.BackOnRedis, t.Sub(f.End).Seconds())
				} else {
					fs.BackOnRedis = append(fs.BackOnRedis, -1)
				}
			}
		}
		for _, a := range l.attempts {
			end := recs.recovered(a, f)
			if a.End.Before(f.Start) || a.Start.After(end) {
				continue
			}
			switch a.Status {
			case 0:
				fs.NoAnswer++
			case http.StatusServiceUnavailable:
				fs.Answers503++
			}
		}
		rep.Faults = append(rep.Faults, fs)
	}
	rep.add("each instance answered successfully after each fault", len(notRecovered) == 0 && len(faults) == 4,
		"%d faults injected (want 4), %d recoveries missing%s", len(faults), len(notRecovered), sample(notRecovered))
	// Under the load, every request in flight finishes well within the
	// drain: a stop that had to cut one, or was killed, exits other than 0.
	gracefulOK := len(graceful) == 1 && *graceful[0].Exit == 0
	detail := "no graceful stop ran"
	if len(graceful) == 1 {
		detail = fmt.Sprintf("exit %d after %.1fs (killed after %s: -1)", *graceful[0].Exit, graceful[0].LengthS, stopGrace)
	}
	rep.add("a graceful stop under the load exits 0 within its grace", gracefulOK, "%s", detail)

	// A 503 with Retry-After is the answer to an outage of something an
	// instance needs: PostgreSQL for both, itself for the one killed (a
	// start-up). Redis is not one: limits fall back to memory. The outage
	// lasts, for an operation, until the instance first answered that
	// operation 2xx after it, within opRecoveryGrace of the instance's
	// first success (recoveries.recovered): operations recover at their own
	// pace (one needing the revocation set waits for its catch-up, paced
	// apart from the pool's new connections that answer a login at once).
	var bad []string
	n503 := 0
	for _, a := range l.attempts {
		if a.Status < 500 {
			continue
		}
		allowed := false
		if a.Status == http.StatusServiceUnavailable && a.RetryAfter {
			for _, f := range faults {
				if strings.HasPrefix(f.Kind, "Redis") || (f.Target >= 0 && f.Target != a.Instance) {
					continue
				}
				end := recs.recovered(a, f)
				if !a.End.Before(f.Start) && !a.Start.After(end) {
					allowed = true
				}
			}
		}
		if allowed {
			n503++
			continue
		}
		bad = append(bad, fmt.Sprintf("%s on %s at %.1fs: %d %s (Retry-After %v)", a.Op, l.insts[a.Instance].name,
			a.Start.Sub(l.start).Seconds(), a.Status, a.Code, a.RetryAfter))
	}
	rep.add("no 5xx but 503 + Retry-After during an outage", len(bad) == 0,
		"%d 503s during outages; %d other 5xx%s", n503, len(bad), sample(bad))
}

// opRecoveryGrace bounds how long after its instance answered again an
// operation may still be refused for the outage: one needing the
// revocation set waits for its catch-up (every half second, a quarter
// second apart after a failure), not for minutes.
const opRecoveryGrace = 5 * time.Second

// recoveries answers when an instance first answered 2xx after a time,
// remembering its answers: the checks ask it of every attempt.
type recoveries struct {
	attempts []attempt
	first    map[recoveryQuestion]time.Time
}

// recoveryQuestion is a question recoveries answered: from as Unix
// nanoseconds (a time.Time's == also compares its location).
type recoveryQuestion struct {
	instance int
	op       string
	from     int64
}

func newRecoveries(attempts []attempt) *recoveries {
	return &recoveries{attempts: attempts, first: map[recoveryQuestion]time.Time{}}
}

// firstSuccess is when instance first answered op (any, if "") 2xx to a
// request sent at or after from; zero if it never did.
func (r *recoveries) firstSuccess(instance int, op string, from time.Time) time.Time {
	q := recoveryQuestion{instance, op, from.UnixNano()}
	if first, ok := r.first[q]; ok {
		return first
	}
	var first time.Time
	for _, a := range r.attempts {
		if a.Instance == instance && (op == "" || a.Op == op) && !a.Start.Before(from) && a.Status >= 200 && a.Status < 300 &&
			(first.IsZero() || a.End.Before(first)) {
			first = a.End
		}
	}
	r.first[q] = first
	return first
}

// recovered is when attempt a's operation on its instance was over fault
// f: its first success after the fault, at most opRecoveryGrace after the
// instance's (the instance's if the operation had none), or the attempt's
// end if the instance had none (which fails the run on its own).
func (r *recoveries) recovered(a attempt, f fault) time.Time {
	inst := r.firstSuccess(a.Instance, "", f.End)
	if inst.IsZero() {
		return a.End
	}
	op := r.firstSuccess(a.Instance, a.Op, f.End)
	if op.IsZero() || op.After(inst.Add(opRecoveryGrace)) {
		return inst.Add(opRecoveryGrace)
	}
	return op
}

// print writes the report as tables.
func (r *faultReport) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "operation\tattempts\t2xx\tno answer\tother answers\n")
	for _, s := range r.Ops {
		var other []string
		for k, v := range s.Status {
			other = append(other, fmt.Sprintf("%s×%d", k, v))
		}
		slices.Sort(other)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", s.Op, s.Attempts, s.OK, s.Refused, strings.Join(other, " "))
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(tw, "fault\tat\tlength\trecovery authd-1\trecovery authd-2\t503s\tno answer\n")
	for _, f := range r.Faults {
		rec := make([]string, len(f.Recovery))
		for i, s := range f.Recovery {
			rec[i] = secs(s)
			if len(f.BackOnRedis) > i {
				rec[i] += " (on Redis " + secs(f.BackOnRedis[i]) + ")"
			}
		}
		for len(rec) < 2 {
			rec = append(rec, "")
		}
		kind := f.Kind
		if f.Exit != nil {
			kind += fmt.Sprintf(" (exit %d)", *f.Exit)
		}
		fmt.Fprintf(tw, "%s\t%.1fs\t%.1fs\t%s\t%s\t%d\t%d\n", kind, f.AtSec, f.LengthS, rec[0], rec[1], f.Answers503, f.NoAnswer)
	}
	tw.Flush()
	fmt.Fprintln(w)
	m := r.Mail
	fmt.Fprintf(w, "outbox drained %.1fs after the load; %d mails sent by the killed instance but left in the outbox (their lease "+
		"ran out, another instance claimed them again and dropped them or re-sent them)\n", r.DrainS, r.Mail.SentButKept)
	fmt.Fprintf(w, "mail: %d registrations acknowledged, %d with exactly one verification mail, %d lost, %d duplicates; "+
		"%d registrations unanswered (%d of them committed, %d mailed)\n\n",
		m.Registrations, m.ExactlyOne, m.Lost, m.Duplicates, m.Unanswered, m.UnansweredKept, m.UnansweredMails)
	fmt.Fprintf(tw, "check\tresult\tdetail\n")
	for _, c := range r.Checks {
		res := "PASS"
		if !c.OK {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, res, c.Detail)
	}
	tw.Flush()
	verdict := "nothing lost"
	if !r.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "\nfault run: %s\n", verdict)
}

func secs(s float64) string {
	if s < 0 {
		return "never"
	}
	return fmt.Sprintf("%.2fs", s)
}
