// Package mail renders authd's mails from templates and delivers them: over
// SMTP in production, or as .eml files (with the link in the log) in
// development.
package mail

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/templates"
	"github.com/google/uuid"
	gomail "github.com/wneessen/go-mail"
	mailsmtp "github.com/wneessen/go-mail/smtp"
	"golang.org/x/net/idna"
)

//go:embed templates/*
var templateFiles embed.FS

// Renderer turns an authd.Mail into a subject and text and HTML bodies.
type Renderer struct {
	product   string
	publicURL string
	text      map[authd.MailKind]*texttemplate.Template
	html      map[authd.MailKind]*htmltemplate.Template
}

// NewRenderer parses the embedded templates and, when dir is not empty,
// the files there that override them: for each kind NAME, NAME.txt (the
// "subject" and "text" templates) and NAME.html (the "body" template), and
// layout.html (the "layout" template around every HTML body). A template
// that does not parse, or lacks a required template, is an error at start.
func NewRenderer(publicURL, dir string) (*Renderer, error) {
	r := &Renderer{product: "authd", publicURL: publicURL,
		text: map[authd.MailKind]*texttemplate.Template{}, html: map[authd.MailKind]*htmltemplate.Template{}}
	embedded, err := fs.Sub(templateFiles, "templates")
	if err != nil {
		return nil, err
	}
	read := func(name string) (string, error) { return templates.Read(embedded, dir, name) }
	layout, err := read("layout.html")
	if err != nil {
		return nil, err
	}
	for _, k := range authd.MailKinds() {
		txt, err := read(string(k) + ".txt")
		if err != nil {
			return nil, fmt.Errorf("mail template %s.txt: %w", k, err)
		}
		html, err := read(string(k) + ".html")
		if err != nil {
			return nil, fmt.Errorf("mail template %s.html: %w", k, err)
		}
		t, err := texttemplate.New(string(k)).Option("missingkey=error").Parse(txt)
		if err != nil {
			return nil, fmt.Errorf("mail template %s.txt: %w", k, err)
		}
		h, err := htmltemplate.New(string(k)).Option("missingkey=error").Parse(layout)
		if err == nil {
			_, err = h.Parse(txt)
		}
		if err == nil {
			_, err = h.Parse(html)
		}
		if err != nil {
			return nil, fmt.Errorf("mail template %s.html: %w", k, err)
		}
		for _, name := range []string{"subject", "text"} {
			if t.Lookup(name) == nil {
				return nil, fmt.Errorf("mail template %s.txt: no {{define %q}}", k, name)
			}
		}
		if h.Lookup("body") == nil || h.Lookup("layout") == nil {
			return nil, fmt.Errorf("mail template %s.html: no {{define \"body\"}} (or layout.html no \"layout\")", k)
		}
		r.text[k], r.html[k] = t, h
	}
	return r, nil
}

// Rendered is a mail ready to send.
type Rendered struct {
	Subject, Text, HTML string
}

// Render fills the templates of m's kind.
func (r *Renderer) Render(m authd.Mail) (*Rendered, error) {
	t, ok := r.text[m.Kind]
	if !ok {
		return nil, fmt.Errorf("no template for mail kind %q", m.Kind)
	}
	change, ok := changeText[m.Change]
	if !ok {
		// A change this release does not know (a newer instance queued
		// it): the notice goes out all the same, in general words.
		change = "your sign-in methods were changed"
	}
	data := map[string]any{"Product": r.product, "PublicURL": r.publicURL, "Link": m.Link, "To": m.To, "Until": "",
		"At": "", "Removed": removedText(m.Removed), "Change": change, "AfterCodes": m.AfterCodes,
		"NewEmail": m.NewEmail, "Done": m.Done, "Voided": m.Voided, "ByAdministrator": m.ByAdministrator}
	if !m.Until.IsZero() {
		data["Until"] = m.Until.UTC().Format(timeLayout)
	}
	if !m.At.IsZero() {
		data["At"] = m.At.UTC().Format(timeLayout)
	}
	var subject, text, html bytes.Buffer
	if err := t.ExecuteTemplate(&subject, "subject", data); err != nil {
		return nil, err
	}
	if err := t.ExecuteTemplate(&text, "text", data); err != nil {
		return nil, err
	}
	if err := r.html[m.Kind].ExecuteTemplate(&html, "layout", data); err != nil {
		return nil, err
	}
	return &Rendered{Subject: strings.TrimSpace(subject.String()), Text: text.String(), HTML: html.String()}, nil
}

// timeLayout is how a mail shows a time.
const timeLayout = "2006-01-02 15:04 UTC"

// changeText tells a FactorChange in a sentence's words: "… was …".
var changeText = map[authd.FactorChange]string{
	authd.ChangeTOTPEnabled:    "two-step sign-in with an authenticator app was turned on",
	authd.ChangeTOTPDisabled:   "two-step sign-in with an authenticator app was turned off",
	authd.ChangePasskeyAdded:   "a passkey was added",
	authd.ChangePasskeyRemoved: "a passkey was removed",
	authd.ChangeCodesReplaced:  "a new set of recovery codes was made (the old ones no longer work)",
}

// removedText names what an MFA reset removed, one line each.
func removedText(r authd.MFARemoval) []string {
	out := []string{}
	if r.TOTP {
		out = append(out, "your authenticator app (its six-digit codes no longer work)")
	}
	if r.Passkeys > 0 {
		out = append(out, plural(r.Passkeys, "passkey", "passkeys"))
	}
	if r.RecoveryCodes > 0 {
		out = append(out, plural(r.RecoveryCodes, "unused recovery code", "unused recovery codes"))
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// message builds the MIME message: multipart text and HTML, with Date and
// Message-ID.
func message(from, to string, r *Rendered) (*gomail.Msg, error) {
	msg := gomail.NewMsg()
	if err := msg.From(from); err != nil {
		return nil, fmt.Errorf("from address: %w", err)
	}
	if err := msg.To(to); err != nil {
		// Not %w: go-mail's error quotes the address.
		return nil, errors.New("the recipient address does not parse")
	}
	msg.Subject(r.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, r.Text)
	msg.AddAlternativeString(gomail.TypeTextHTML, r.HTML)
	return msg, nil
}

// Dev is the development mailer: each mail becomes an .eml file in Dir and
// its link is logged, so that a newcomer can follow it without a mail
// server. It is the one place where a link is logged (SPEC §6.10). Erasure
// and retention reach its files through Forget and Prune.
type Dev struct {
	Dir      string
	From     string
	Renderer *Renderer
	Logger   *slog.Logger
}

var (
	_ authd.Mailer      = (*Dev)(nil)
	_ authd.MailArchive = (*Dev)(nil)
)

// Send implements authd.Mailer.
func (d *Dev) Send(_ context.Context, m authd.Mail) error {
	r, err := d.Renderer.Render(m)
	if err != nil {
		return err
	}
	if m.Kind == authd.MailAccountDeleted {
		// The notice goes to an address that was just erased: keeping it
		// on disk, or in the log, would undo the erasure.
		d.Logger.Info("mail not kept (development mailer): its address was erased", "kind", m.Kind, "subject", r.Subject)
		return nil
	}
	msg, err := message(d.From, m.To, r)
	if err != nil {
		return err
	}
	if m.UserID != uuid.Nil {
		// Erasure finds the account's mails to its earlier and pending
		// addresses by it.
		msg.SetGenHeader(accountHeader, m.UserID.String())
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	path := filepath.Join(d.Dir, fmt.Sprintf("%s-%s-%s.eml",
		time.Now().UTC().Format("20060102T150405.000000Z"), m.Kind, hex.EncodeToString(suffix)))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = msg.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Half written (a full disk): no file stays for erasure to trip
		// over; the outbox tries the mail again.
		os.Remove(path)
		return err
	}
	// The link is logged on purpose (SPEC 6.10), the address not: the log
	// outlives an erasure, and the file names it.
	attrs := []any{"kind", m.Kind, "subject", r.Subject, "file", path}
	if m.Link != "" {
		attrs = append(attrs, "link", m.Link)
	}
	d.Logger.Info("mail written (development mailer: set AUTHD_SMTP_URL to send)", attrs...)
	return nil
}

// accountHeader names, in a development mailer's file, the account the
// mail is about.
const accountHeader gomail.Header = "X-Authd-Account"

// Forget implements authd.MailArchive: it removes every .eml file
// addressed to address (compared case-insensitively) or about the account
// user.
func (d *Dev) Forget(_ context.Context, user uuid.UUID, address string) error {
	return d.remove(func(path string, _ fs.FileInfo) (bool, error) {
		f, err := os.Open(path)
		if err != nil {
			return false, err
		}
		defer f.Close()
		msg, err := netmail.ReadMessage(f)
		if err != nil {
			return false, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
		if user != uuid.Nil && msg.Header.Get(string(accountHeader)) == user.String() {
			return true, nil
		}
		to, err := msg.Header.AddressList("To")
		if err != nil {
			return false, fmt.Errorf("%s: To: %w", filepath.Base(path), err)
		}
		return slices.ContainsFunc(to, func(a *netmail.Address) bool { return strings.EqualFold(a.Address, address) }), nil
	})
}

// Prune implements authd.MailArchive: it removes the .eml files written
// before before.
func (d *Dev) Prune(_ context.Context, before time.Time) error {
	return d.remove(func(_ string, info fs.FileInfo) (bool, error) { return info.ModTime().Before(before), nil })
}

// remove deletes the .eml files in Dir that match, going on past a file it
// cannot read so that one bad file does not shield the others.
func (d *Dev) remove(match func(path string, info fs.FileInfo) (bool, error)) error {
	entries, err := os.ReadDir(d.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".eml" {
			continue
		}
		path := filepath.Join(d.Dir, e.Name())
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		ok := false
		if err == nil {
			ok, err = match(path, info)
		}
		if err == nil && ok {
			err = os.Remove(path)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SMTP delivers mail through an SMTP server: smtps:// over implicit TLS;
// smtp:// with STARTTLS, which it requires unless the relay is on a
// loopback host or the URL says ?starttls=opportunistic, because anyone on
// the path could strip the STARTTLS offer and read the reset links. A user
// and password in the URL authenticate (never over an unencrypted
// connection).
type SMTP struct {
	relay     *SMTPRelay
	opts      []gomail.Option
	from      string
	renderer  *Renderer
	logger    *slog.Logger
	tlsConfig *tls.Config
	// openTimeout bounds the conversation's opening: the dial, TLS, the
	// greeting, EHLO, STARTTLS and AUTH (relayOpenTimeout; shorter in tests).
	openTimeout time.Duration
	// dial replaces the network dialer in tests, so that a relay named like
	// a remote host can be an in-process server. nil: the system's.
	dial gomail.DialContextFunc
}

var _ authd.Mailer = (*SMTP)(nil)

// SMTPRelay is what an AUTHD_SMTP_URL says.
type SMTPRelay struct {
	Host        string
	Port        int
	ImplicitTLS bool // smtps://
	// RequireTLS is false only for a loopback host or with
	// ?starttls=opportunistic: then STARTTLS is used when offered.
	RequireTLS bool
	User       string
	Password   string
}

// ParseSMTPURL reads smtp://[user:pass@]host[:port][?starttls=opportunistic]
// or smtps://[user:pass@]host[:port]. Its errors quote no part of the URL:
// an unescaped / ? or # in the password makes the rest of the password the
// path, query or fragment, which an error would then show.
func ParseSMTPURL(rawURL string) (*SMTPRelay, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// Not %w: url's error quotes the URL, password included.
		return nil, errors.New("is not a valid URL" + percentEncodeHint)
	}
	switch {
	case u.Opaque != "":
		return nil, errors.New("must start with smtp:// or smtps://" + percentEncodeHint)
	case u.Path != "" && u.Path != "/":
		return nil, errors.New("has a path" + percentEncodeHint)
	case strings.Contains(rawURL, "#"):
		return nil, errors.New("has a fragment" + percentEncodeHint)
	}
	host, portText := u.Hostname(), u.Port()
	r := &SMTPRelay{Host: host, RequireTLS: !Loopback(host)}
	switch u.Scheme {
	case "smtp":
		portText = cmp.Or(portText, "587")
	case "smtps":
		r.ImplicitTLS, r.RequireTLS = true, true
		portText = cmp.Or(portText, "465")
	default:
		return nil, errors.New("must be smtp://[USER:PASS@]HOST[:PORT] or smtps://…")
	}
	if host == "" {
		return nil, errors.New("has no host" + percentEncodeHint)
	}
	if r.Port, err = strconv.Atoi(portText); err != nil || r.Port < 1 || r.Port > 65535 {
		return nil, errors.New("has a port that is not a number from 1 to 65535" + percentEncodeHint)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, errors.New("has a query that does not parse" + percentEncodeHint)
	}
	for name, values := range query {
		switch {
		case name != "starttls":
			return nil, errors.New("has an unknown query parameter (only ?starttls=opportunistic is known)" + percentEncodeHint)
		case r.ImplicitTLS:
			return nil, errors.New("starttls applies to smtp:// only (smtps:// is always TLS)")
		case len(values) != 1 || values[0] != "opportunistic":
			return nil, errors.New("starttls must be opportunistic (STARTTLS when offered, plain text otherwise)")
		}
		r.RequireTLS = false
	}
	r.User = u.User.Username()
	r.Password, _ = u.User.Password()
	if r.User == "" && r.Password != "" {
		// Sent without authenticating, the password silently unused.
		return nil, errors.New("has a password but no user" + percentEncodeHint)
	}
	return r, nil
}

// percentEncodeHint ends the errors that a password with a reserved
// character causes.
const percentEncodeHint = "; if the user or password holds / ? # or :, percent-encode it (%2F %3F %23 %3A)"

// Loopback reports whether host names this machine (localhost, 127.0.0.0/8
// or ::1): no one can be on the path to it, and no one elsewhere can follow
// a link to it. For localhost that rests on the resolver: the SMTP mailer
// checks where the connection actually went.
func Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// NewSMTP returns a mailer for rawURL (see ParseSMTPURL).
func NewSMTP(rawURL, from string, r *Renderer) (*SMTP, error) {
	relay, err := ParseSMTPURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("AUTHD_SMTP_URL %w", err)
	}
	// WithTLSPolicy, not WithTLSPortPolicy: the latter also falls back to
	// plain text on port 25 when the first port fails.
	// go-mail's timeout is the message's (set before MAIL FROM, it runs to
	// the reply after the final dot), kept within the Send's context.
	opts := []gomail.Option{gomail.WithTimeout(relayMessageTimeout), gomail.WithPort(relay.Port), gomail.WithoutNoop()}
	switch {
	case relay.ImplicitTLS:
		opts = append(opts, gomail.WithSSL())
	case relay.RequireTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	tlsConfig := &tls.Config{ServerName: relay.Host, MinVersion: tls.VersionTLS12}
	if Loopback(relay.Host) && relay.User == "" {
		// A relay on this machine, which may talk plain text anyway, and
		// no password to keep: its certificate is taken unchecked (a
		// local Postfix's is Debian's self-signed snakeoil). One that
		// takes a password is checked (SetTLSConfig for a private CA).
		tlsConfig.InsecureSkipVerify = true
	}
	return &SMTP{relay: relay, opts: opts, from: from, renderer: r, logger: slog.Default(), tlsConfig: tlsConfig,
		openTimeout: relayOpenTimeout}, nil
}

// How long the mailer waits for the relay. Opening the conversation is
// quick for any working relay. The message is not: a relay may scan it
// before it answers the final dot, and RFC 5321 (4.5.3.2.6) has the client
// wait 10 minutes for that answer, since a client that gives up has no way
// to know whether the mail was delivered; sent again, a verification or
// reset mail voids the link of the first. A Send's context shortens the
// wait (the outbox gives it 90 seconds).
const (
	relayOpenTimeout    = 15 * time.Second
	relayMessageTimeout = 10 * time.Minute
)

// SetLogger sets where a mail the relay accepted despite a later failure
// is reported (by default slog.Default()).
func (s *SMTP) SetLogger(l *slog.Logger) { s.logger = l }

// SetTLSConfig sets the TLS configuration, for a private CA.
func (s *SMTP) SetTLSConfig(c *tls.Config) {
	if c.ServerName == "" {
		c = c.Clone()
		c.ServerName = s.relay.Host
	}
	s.tlsConfig = c
}

// Send implements authd.Mailer.
func (s *SMTP) Send(ctx context.Context, m authd.Mail) error {
	r, err := s.renderer.Render(m)
	if err != nil {
		return err
	}
	to, unicodeLocal, err := wireAddress(m.To)
	if err != nil {
		return err
	}
	msg, err := message(s.from, to, r)
	if err != nil {
		return err
	}
	conv := newConversation(s, ctx)
	conv.needsUTF8 = unicodeLocal
	defer conv.end()
	opts := append(slices.Clip(s.opts), gomail.WithTLSConfig(s.tlsConfig), gomail.WithDialContextFunc(conv.dial))
	if s.relay.User != "" {
		opts = append(opts, gomail.WithSMTPAuthCustom(&relayAuth{host: s.relay.Host, user: s.relay.User,
			password: s.relay.Password}))
	}
	client, err := gomail.NewClient(s.relay.Host, opts...)
	if err != nil {
		return err
	}
	err = conv.send(client, msg)
	if err == nil {
		return nil
	}
	unanswered, undeliverable := endUnanswered(err), recipientRefused(err)
	err = withoutAddresses(err)
	if undeliverable {
		err = fmt.Errorf("%w: %w", err, authd.ErrUndeliverable)
	}
	if cause := conv.cutShort(); cause != nil {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	if unanswered && !msg.IsDelivered() {
		err = fmt.Errorf("%w; the relay may have had the whole message, and delivered it", err)
	}
	if msg.IsDelivered() {
		// The relay answered 250 to the message; what failed came after
		// (RSET, QUIT). Reporting it would queue the mail again, and the
		// new link would void the one just delivered.
		s.logger.Warn("mail accepted by the SMTP relay, which then failed", "kind", m.Kind, "err", err)
		return nil
	}
	return err
}

// errNoSMTPUTF8 is the failure of a mail to an address whose local part is
// not ASCII through a relay that cannot carry it.
var errNoSMTPUTF8 = fmt.Errorf("the recipient's address has a local part that is not ASCII, and the relay "+
	"does not offer SMTPUTF8 (RFC 6531) to carry it: %w", authd.ErrUndeliverable)

// wireAddress gives address as it goes to the relay: an internationalised
// domain in its DNS form (bücher.example is xn--bcher-kva.example), which
// every relay takes, and whether its local part needs SMTPUTF8, which not
// every relay offers.
func wireAddress(address string) (string, bool, error) {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return "", false, errors.New("the recipient address does not parse")
	}
	local, domain := address[:at], address[at+1:]
	if !isASCII(domain) {
		wire, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			// Not %w: idna's error quotes the domain.
			return "", false, fmt.Errorf("the recipient's domain has no DNS form (IDNA): %w", authd.ErrUndeliverable)
		}
		domain = wire
	}
	return local + "@" + domain, !isASCII(local), nil
}

func isASCII(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 })
}

// endUnanswered reports whether err is the relay's silence after the
// message's final dot (no reply, so no code): the one failure after which
// the mail may have been delivered all the same. (go-mail drops the error
// of writing the dot itself, so the relay may not have had it.)
func endUnanswered(err error) bool {
	var se *gomail.SendError
	return errors.As(err, &se) && se.Reason == gomail.ErrSMTPDataClose && se.ErrorCode() == 0
}

// recipientRefused reports whether err is the relay's permanent refusal
// of the recipient for what the address is (RFC 3463: 5.1.1 no such
// mailbox, 5.1.2 no such domain, 5.1.3 bad syntax, 5.1.6 moved, 5.1.10 a
// domain that takes no mail), not for how the relay is used: a 5.7.1
// "relay access denied", or a bare 550 that says nothing more, is how a
// misconfigured relay refuses every mail, and retrying waits for its fix.
func recipientRefused(err error) bool {
	var se *gomail.SendError
	if !errors.As(err, &se) || se.Reason != gomail.ErrSMTPRcptTo || se.ErrorCode()/100 != 5 {
		return false
	}
	switch se.EnhancedStatusCode() {
	case "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10":
		return true
	}
	return false
}

// withoutAddresses gives a failure of go-mail's without the recipients its
// SendError lists and without the relay's reply, which often quotes the
// address: the error goes to log lines and to the outbox's last error,
// which outlive an erasure. The reply's codes stay.
func withoutAddresses(err error) error {
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return err
	}
	text := "smtp: " + se.Reason.String()
	if code := se.ErrorCode(); code != 0 {
		text += fmt.Sprintf(": the relay answered %d", code)
		if esc := se.EnhancedStatusCode(); esc != "" {
			text += " " + esc
		}
	}
	return errors.New(text)
}

// conversation is the connection of one Send. go-mail heeds the context
// only while dialling and sets the connection's deadline itself (its
// timeout from the dial, and again from the message's start), so a relay
// that answers slowly could hold a send past the outbox's timeout, and
// past the lease that keeps other senders off its mail: the connection
// keeps every deadline within until, and closes when the context ends.
// until is the opening's deadline until the message starts, then the
// context's.
type conversation struct {
	smtp      *SMTP
	ctx       context.Context
	until     time.Time // zero: none
	needsUTF8 bool      // the recipient's local part is not ASCII
	conns     []net.Conn
	stops     []func() bool
}

func newConversation(s *SMTP, ctx context.Context) *conversation {
	c := &conversation{smtp: s, ctx: ctx, until: time.Now().Add(s.openTimeout)}
	if deadline, ok := ctx.Deadline(); ok && deadline.Before(c.until) {
		c.until = deadline
	}
	return c
}

// send is go-mail's DialAndSendWithContext with the opening's deadline
// lifted between the dial and the message.
func (c *conversation) send(client *gomail.Client, msg *gomail.Msg) (err error) {
	conn, err := client.DialToSMTPClientWithContext(c.ctx)
	if err != nil {
		return fmt.Errorf("dial failed: %w", err)
	}
	defer func() {
		if closeErr := client.CloseWithSMTPClient(conn); closeErr != nil {
			err = errors.Join(err, fmt.Errorf("failed to close connection: %w", closeErr))
		}
	}()
	if ok, _ := conn.Extension("SMTPUTF8"); c.needsUTF8 && !ok {
		return errNoSMTPUTF8
	}
	c.until, _ = c.ctx.Deadline()
	if err := client.SendWithSMTPClient(conn, msg); err != nil {
		return fmt.Errorf("send failed: %w", err)
	}
	return nil
}

func (c *conversation) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := c.smtp.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	ctx, cancel := context.WithDeadline(ctx, c.until) // for the TLS handshake too
	defer cancel()
	conn, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.conns = append(c.conns, conn)
	c.stops = append(c.stops, context.AfterFunc(c.ctx, func() { conn.Close() }))
	if Loopback(c.smtp.relay.Host) {
		// The name is trusted to mean this machine, so that mail may go in
		// plain text, or over TLS unchecked; a resolver (or /etc/hosts, or
		// a DNS search list) that says otherwise must not send it across a
		// network.
		if peer, ok := conn.RemoteAddr().(*net.TCPAddr); !ok || !peer.IP.IsLoopback() {
			return nil, fmt.Errorf("AUTHD_SMTP_URL names a loopback host, but it was reached at %v, not on this "+
				"machine: mail for a loopback host goes only to a loopback address (use 127.0.0.1 or ::1)", conn.RemoteAddr())
		}
	}
	bounded := &boundedConn{Conn: conn, until: &c.until}
	if !c.smtp.relay.ImplicitTLS {
		return bounded, nil
	}
	// go-mail does not wrap a connection from a dial function in TLS.
	tlsConn := tls.Client(bounded, c.smtp.tlsConfig)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tlsConn, nil
}

// cutShort reports whether the context ended the conversation. The
// connection's deadline can pass a moment before the context's timer.
func (c *conversation) cutShort() error {
	if err := context.Cause(c.ctx); err != nil {
		return err
	}
	if deadline, ok := c.ctx.Deadline(); ok && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// end releases what the conversation left open: go-mail does not close
// the connection when the greeting, STARTTLS or AUTH fails.
func (c *conversation) end() {
	for _, stop := range c.stops {
		stop()
	}
	for _, conn := range c.conns {
		conn.Close()
	}
}

// boundedConn keeps the deadlines set on it no later than *until (zero:
// none), which only the goroutine that sets them changes.
type boundedConn struct {
	net.Conn
	until *time.Time
}

func (c *boundedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.bound(t)) }
func (c *boundedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.bound(t)) }
func (c *boundedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.bound(t)) }

func (c *boundedConn) bound(t time.Time) time.Time {
	if c.until.IsZero() || (!t.IsZero() && t.Before(*c.until)) {
		return t
	}
	return *c.until
}

// relayAuth authenticates to the relay with the first mechanism of
// authMechanisms that it offers, and only over TLS. go-mail's own choice
// takes CRAM-MD5 or SCRAM on a plain connection (with
// ?starttls=opportunistic, once someone on the path has stripped the
// STARTTLS offer), and whoever records that exchange can crack the
// password offline.
type relayAuth struct {
	host, user, password string
	mech                 mailsmtp.Auth // chosen by Start
}

// authMechanisms are go-mail's preferences, less the ones that need more
// than a user and password.
var authMechanisms = []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"}

// errAuthWithoutTLS is returned before any credential leaves.
var errAuthWithoutTLS = errors.New("refusing to send the AUTHD_SMTP_URL credentials over a connection without TLS " +
	"(the relay offered no STARTTLS, or someone on the path removed the offer)")

func (a *relayAuth) Start(server *mailsmtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errAuthWithoutTLS
	}
	for _, name := range authMechanisms {
		if !slices.Contains(server.Auth, name) {
			continue
		}
		switch name {
		case "SCRAM-SHA-256":
			a.mech = mailsmtp.ScramSHA256Auth(a.user, a.password)
		case "SCRAM-SHA-1":
			a.mech = mailsmtp.ScramSHA1Auth(a.user, a.password)
		case "CRAM-MD5":
			a.mech = mailsmtp.CRAMMD5Auth(a.user, a.password)
		case "PLAIN":
			a.mech = mailsmtp.PlainAuth("", a.user, a.password, a.host, false)
		case "LOGIN":
			a.mech = mailsmtp.LoginAuth(a.user, a.password, a.host, false)
		}
		return a.mech.Start(server)
	}
	return "", nil, fmt.Errorf("the relay offers no authentication mechanism authd knows (%s)",
		strings.Join(authMechanisms, ", "))
}

func (a *relayAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	return a.mech.Next(fromServer, more)
}
