package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/token"
)

const clientsSynopsis = `authd clients [flags] ACTION

The OpenID Connect relying parties authd signs users in to (issue 10),
straight on the database (DATABASE_URL):

  authd clients create --name NAME --type public|confidential --redirect-uri URI [--redirect-uri URI …]
                       [--post-logout-uri URI …] [--first-party] [--require-pkce] [--id CLIENT_ID]
  authd clients list
  authd clients show CLIENT_ID
  authd clients update CLIENT_ID [--name NAME] [--redirect-uri URI …] [--post-logout-uri URI …]
                       [--first-party=true|false] [--require-pkce=true|false]
  authd clients rotate-secret CLIENT_ID
  authd clients delete CLIENT_ID --yes

A confidential client's secret is printed once, by create and rotate-secret;
only its keyed digest is stored (under refresh-token.key in AUTHD_KEYS_DIR,
so run those two with the keys directory the servers use). Redirect URIs match
exactly: https, http to a loopback address, or a private-use scheme such as
com.example.app:/callback. A first-party client's users are never asked to
consent. A public client always uses PKCE; --require-pkce asks it of a
confidential one too (RFC 9700), once its relying party sends a
code_challenge (oauth2-proxy: --code-challenge-method=S256). update changes
only what it is given, and keeps the client's sessions and consents (delete
ends them); --redirect-uri and --post-logout-uri replace the whole list
(--post-logout-uri "" empties it), and a sign-in under way to a URI removed
gets no code. --id may not be AUTHD_AUDIENCE (the access tokens' aud): that
client's ID tokens would pass for access tokens. Every change is logged as
admin_action.`

// stringList is a flag that may be given many times.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
func (l *stringList) repeatable()        {}

// clientFlag is a flag that sets one of a client's fields: its name in
// the API (which the service's errors name) and how the flag's value goes
// into a new client's spec (create) and into a change (update). One table,
// so that a field added is added to create, update, their refusals and
// their errors alike.
type clientFlag struct {
	flag, field string
	set         func(sp *authd.ClientSpec, ch *authd.ClientChange)
}

// clientActionFlags are the flags each clients command uses, beside the
// configuration's: any other is refused, not ignored (an operator who adds
// --redirect-uri to update, or --json to delete, believes it did
// something). --json goes with the commands that print a client.
func clientActionFlags(fields []clientFlag) map[string][]string {
	update := make([]string, 0, len(fields)+1)
	for _, f := range fields {
		update = append(update, f.flag)
	}
	return map[string][]string{"create": append([]string{"type", "id", "json"}, update...), "update": append(update, "json"),
		"delete": {"yes"}, "list": {"json"}, "show": {"json"}, "rotate-secret": {"json"}}
}

// clientFieldFlags names the flag that sets each field of a client.
func clientFieldFlags(fields []clientFlag) map[string]string {
	m := map[string]string{"client_id": "--id", "type": "--type"}
	for _, f := range fields {
		m[f.field] = "--" + f.flag
	}
	return m
}

func clientsCmd(ctx context.Context, e *env, args []string) (err error) {
	fs := newFlagSet(e, "clients", clientsSynopsis)
	flags := configFlags(fs, "DATABASE_URL", "AUTHD_DATA_DIR", "AUTHD_KEYS_DIR")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	name := fs.String("name", "", "create, update: the name users see on the consent screen")
	typ := fs.String("type", "", "create: public (a browser or native app, PKCE) or confidential (a server with a secret)")
	id := fs.String("id", "", "create: the client_id (default: a random one)")
	firstParty := fs.Bool("first-party", false, "create, update: trusted, its users are never asked to consent")
	requirePKCE := fs.Bool("require-pkce", false, "create, update: a confidential client must send a PKCE challenge (a public one always must)")
	yes := fs.Bool("yes", false, "delete: confirm")
	var redirects, logouts stringList
	fs.Var(&redirects, "redirect-uri", "create, update: a redirect URI (repeat for more; update replaces the list)")
	fs.Var(&logouts, "post-logout-uri", "create, update: a post-logout redirect URI (repeat for more; update replaces the list, \"\" empties it)")
	fields := []clientFlag{
		{"name", "name", func(sp *authd.ClientSpec, ch *authd.ClientChange) { sp.Name, ch.Name = *name, name }},
		{"redirect-uri", "redirect_uris", func(sp *authd.ClientSpec, ch *authd.ClientChange) {
			sp.RedirectURIs, ch.RedirectURIs = redirects, redirects
		}},
		{"post-logout-uri", "post_logout_redirect_uris", func(sp *authd.ClientSpec, ch *authd.ClientChange) {
			sp.PostLogoutRedirectURIs, ch.PostLogoutRedirectURIs = logouts, logouts
		}},
		{"first-party", "first_party", func(sp *authd.ClientSpec, ch *authd.ClientChange) {
			sp.FirstParty, ch.FirstParty = *firstParty, firstParty
		}},
		{"require-pkce", "require_pkce", func(sp *authd.ClientSpec, ch *authd.ClientChange) {
			sp.RequirePKCE, ch.RequirePKCE = *requirePKCE, requirePKCE
		}},
	}
	// fromFlags is the spec and the change the flags given make.
	fromFlags := func() (sp authd.ClientSpec, ch authd.ClientChange) {
		for _, f := range fields {
			if flagSet(fs, f.flag) {
				f.set(&sp, &ch)
			}
		}
		return sp, ch
	}
	byAction := clientActionFlags(fields)
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) == 1 && (rest[0] == "create" || rest[0] == "list"):
	case len(rest) == 2 && (rest[0] == "show" || rest[0] == "update" || rest[0] == "rotate-secret" || rest[0] == "delete"):
		if rest[0] == "delete" && !*yes {
			return usagef("clients delete removes the client, its consents and codes; add --yes to confirm")
		}
	case len(rest) == 0:
		return usagef("missing create, list, show, update, rotate-secret or delete")
	case len(rest) == 1 && (rest[0] == "show" || rest[0] == "update" || rest[0] == "rotate-secret" || rest[0] == "delete"):
		return usageOf("clients "+rest[0], "missing CLIENT_ID (from `authd clients list`)")
	default:
		return usagef("unknown clients command %q", strings.Join(rest, " "))
	}
	if err := onlyItsFlags(fs, "clients "+rest[0], byAction, rest[0]); err != nil {
		return err
	}
	// After that: a flag of another action (--type) is told as such, not
	// as nothing to change.
	changes := slices.DeleteFunc(slices.Clone(byAction["update"]), func(f string) bool { return f == "json" })
	if rest[0] == "update" && !slices.ContainsFunc(changes, func(f string) bool { return flagSet(fs, f) }) {
		return usageOf("clients update", "nothing to change: give one of --%s", strings.Join(changes, ", --"))
	}
	if rest[0] == "update" && len(logouts) == 1 && logouts[0] == "" {
		logouts = stringList{} // --post-logout-uri "": none
	}
	if rest[0] == "create" {
		if *name == "" || *typ == "" || len(redirects) == 0 {
			return usagef("clients create needs --name, --type and at least one --redirect-uri")
		}
		// What the service would refuse, refused before a database is opened.
		if _, err := authd.ParseClientType(*typ); err != nil {
			return usageOf("clients create", "--type must be public or confidential")
		}
	}
	for _, list := range []struct {
		flag string
		uris []string
	}{{"--redirect-uri", redirects}, {"--post-logout-uri", logouts}} {
		flag, uris := list.flag, list.uris
		for _, u := range uris {
			if err := authd.ValidRedirectURI(u); err != nil {
				return usageOf("clients "+rest[0], "%s %q: %v", flag, u, err)
			}
		}
	}
	if (rest[0] == "rotate-secret" || rest[0] == "create" && *typ == string(authd.ClientConfidential)) && e.stdoutNull {
		// A secret shown once, to no one: the relying party locked out.
		return &cliError{msg: "stdout is " + os.DevNull + " (or was closed): the new secret, shown once, would be lost",
			hint: "run it with stdout on a terminal, or in a file only you can read (umask 077; … > secret.txt)"}
	}
	// The service's errors, told with the flag that set the field.
	defer func() {
		hint := ""
		if authd.ErrorCode(err) == authd.ENotFound {
			hint = "`authd clients list` shows the clients"
		}
		err = fromService("clients "+rest[0], err, clientFieldFlags(fields), hint)
	}()

	want := existing // a client to act on, or to list
	if rest[0] == "create" {
		want = atHead // the first client may come before the first server
	}
	cfg, db, err := openConfigured(ctx, e, flags, want)
	if err != nil {
		return err
	}
	defer db.Close()
	svcCfg := cfg.service()
	// A new secret is digested under the servers' refresh-token.key: one
	// made here for a typo'd AUTHD_KEYS_DIR would lock the relying party
	// out. The commands that digest none neither read nor make one.
	if rest[0] == "rotate-secret" || rest[0] == "create" && *typ == string(authd.ClientConfidential) {
		secrets, err := sharedSecrets(ctx, db, cfg.KeysDir, time.Now(),
			"run with the AUTHD_KEYS_DIR the servers use (set it, or AUTHD_DATA_DIR, as for authd serve)", token.RefreshSecret)
		if err != nil {
			return err
		}
		svcCfg.RefreshKey = secrets[0]
	}
	svc := authd.NewService(svcCfg, authd.Deps{Store: db, Logger: slog.New(slog.DiscardHandler)})
	c := adminClient(e)

	switch rest[0] {
	case "create":
		spec, _ := fromFlags()
		spec.ID, spec.Type = *id, authd.ClientType(*typ)
		oc, secret, err := svc.CreateClient(ctx, c, spec)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, httpapi.ClientSecretView(oc, secret))
		}
		printClients(e.stdout, []*authd.OAuthClient{oc})
		printSecret(e.stdout, oc.ID, secret)
		return nil
	case "list":
		cs, err := svc.OAuthClients(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			views := make([]any, 0, len(cs))
			for _, oc := range cs {
				views = append(views, httpapi.ClientView(oc))
			}
			return printJSON(e.stdout, views)
		}
		printClients(e.stdout, cs)
		return nil
	case "show":
		oc, err := svc.OAuthClient(ctx, rest[1])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, httpapi.ClientView(oc))
		}
		printClients(e.stdout, []*authd.OAuthClient{oc})
		fmt.Fprintf(e.stdout, "redirect URIs:    %s\npost-logout URIs: %s\n", strings.Join(oc.RedirectURIs, " "),
			dash(strings.Join(oc.PostLogoutRedirectURIs, " ")))
		return nil
	case "update":
		_, ch := fromFlags()
		oc, err := svc.UpdateClient(ctx, c, rest[1], ch)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, httpapi.ClientView(oc))
		}
		printClients(e.stdout, []*authd.OAuthClient{oc})
		return nil
	case "rotate-secret":
		// Written before the rotation commits: a secret that cannot be
		// shown (stdout closed or full) leaves the old one in force.
		shown := false
		err := svc.RotateClientSecret(ctx, c, rest[1], func(secret string) error {
			var out bytes.Buffer
			if *asJSON {
				printJSON(&out, map[string]string{"client_id": rest[1], "client_secret": secret})
			} else {
				printSecret(&out, rest[1], secret)
			}
			if _, err := e.stdout.Write(out.Bytes()); err != nil {
				return &cliError{msg: "clients rotate-secret: the new secret could not be written (" + err.Error() +
					"); the old secret stays in force", hint: "run it with stdout on a terminal, or in a file only you can read"}
			}
			shown = true
			return nil
		})
		if err != nil && shown {
			return &cliError{msg: "clients rotate-secret: the rotation may not have been saved after the secret was shown (" +
				err.Error() + "): the secret shown may be void and the old one still in force",
				hint: "run it again, and use the secret it shows"}
		}
		return err
	default: // delete
		return done(e, svc.DeleteClient(ctx, c, rest[1]), "deleted client %s", rest[1])
	}
}

func printClients(w io.Writer, cs []*authd.OAuthClient) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT_ID\tNAME\tTYPE\tFIRST_PARTY\tPKCE\tREDIRECT_URIS\tCREATED")
	for _, c := range cs {
		pkce := "optional"
		if c.PKCERequired() {
			pkce = "required"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%d\t%s\n", c.ID, c.Name, c.Type, c.FirstParty, pkce, len(c.RedirectURIs),
			c.CreatedAt.Format(time.RFC3339))
	}
	tw.Flush()
}

// printSecret shows a client secret the one time it is known.
func printSecret(w io.Writer, id, secret string) {
	if secret == "" {
		return
	}
	fmt.Fprintf(w, "\nclient_id:     %s\nclient_secret: %s\n\nThe secret is shown only now; store it in the relying party's configuration.\n", id, secret)
}
