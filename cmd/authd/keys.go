package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/token"
)

const keysSynopsis = `authd keys [flags] ACTION

Actions:
  generate    add a key of AUTHD_SIGNING_ALG (as rotate, without deleting)
  list        every key in AUTHD_KEYS_DIR with its state and when it changes
  secrets     make refresh-token.key and mfa.key where missing, on purpose:
              serve refuses to while rows need the lost ones (confidential
              clients then need new secrets, users their second factors reset)
  rotate      add a new key (and a new RS256 key for OpenID Connect ID
              tokens, unless AUTHD_SIGNING_ALG is RS256 already, when one
              key serves both), and delete the keys retired for every lifetime
              AUTHD_ACCESS_TOKEN_TTL may have (up to 24h): every token they
              signed has expired, whatever the servers' setting

A new key is published in JWKS at once and signs new tokens 6 minutes later:
JWKS is cached for 5 minutes, so resource servers know the key before they
meet a token it signed. The first key of an empty directory signs at once.
Key states: published (in JWKS, not signing yet), signing, retiring (signs
no more, in JWKS until AUTHD_ACCESS_TOKEN_TTL after it stopped signing),
retired (out of JWKS; rotate deletes it once 24h + 30s have passed since
it stopped signing, as this command cannot know the servers' token lifetime).

Keys are PKCS#8 PEM files named KID.pem; the kid begins with the key's
creation time, which orders the keys. A key added by hand under another name
has no creation time: it signs only while no kid-named key exists (of several,
the one whose name sorts last). Running instances reread the directory every
30 seconds.`

func keysCmd(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "keys", keysSynopsis)
	flags := configFlags(fs, "AUTHD_DATA_DIR", "AUTHD_KEYS_DIR", "AUTHD_SIGNING_ALG", "AUTHD_ACCESS_TOKEN_TTL")
	words, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return usagef("missing ACTION (generate, list, rotate or secrets)")
	}
	action := words[0]
	if len(words) > 1 {
		return usagef("%s takes no arguments", action)
	}
	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	fail := func(err error) error {
		return &cliError{msg: "signing keys: " + err.Error(), hint: "AUTHD_KEYS_DIR must be a writable directory of PKCS#8 PEM private keys"}
	}
	// added says when a key just made starts signing.
	added := func(k *token.Key) error {
		keys, err := token.LoadAlg(cfg.KeysDir, k.Alg)
		if err != nil {
			return fail(err)
		}
		for _, s := range token.States(keys, now, cfg.AccessTokenTTL) {
			switch {
			case s.Key.ID != k.ID:
			case s.State == token.Signing:
				fmt.Fprintf(e.stdout, "generated %s key %s in %s; it signs new tokens from now on\n", k.Alg, k.ID, cfg.KeysDir)
			default:
				fmt.Fprintf(e.stdout, "generated %s key %s in %s; published in JWKS now, it signs new tokens from %s (in %s)\n",
					k.Alg, k.ID, cfg.KeysDir, s.Until.Format(time.RFC3339), s.Until.Sub(now).Round(time.Second))
			}
		}
		return nil
	}
	switch action {
	case "generate":
		k, err := token.Generate(cfg.KeysDir, cfg.SigningAlg, now)
		if err != nil {
			return fail(err)
		}
		return added(k)
	case "rotate":
		algs := []string{cfg.SigningAlg}
		if cfg.SigningAlg != token.IDTokenAlg {
			algs = append(algs, token.IDTokenAlg) // the OpenID Connect ID-token keys rotate with them
		}
		for _, alg := range algs {
			k, deleted, err := token.Rotate(cfg.KeysDir, alg, now)
			if err != nil {
				return fail(err)
			}
			if err := added(k); err != nil {
				return err
			}
			for _, id := range deleted {
				fmt.Fprintf(e.stdout, "deleted retired key %s\n", id)
			}
		}
	case "secrets":
		for _, sec := range []token.Secret{token.RefreshSecret, token.MFASecret} {
			path := filepath.Join(cfg.KeysDir, sec.File)
			if !keyMissing(cfg.KeysDir, sec.File) {
				fmt.Fprintf(e.stdout, "%s is there; left as it is\n", path)
				continue
			}
			if _, err := sec.Load(cfg.KeysDir); err != nil {
				return &cliError{msg: sec.Use + " key: " + err.Error(), hint: "AUTHD_KEYS_DIR must be a writable directory"}
			}
			fmt.Fprintf(e.stdout, "made %s\n", path)
		}
	case "list":
		keys, err := token.Load(cfg.KeysDir)
		if err != nil {
			return fail(err)
		}
		if len(keys) == 0 {
			fmt.Fprintf(e.stdout, "no keys in %s; `authd serve` or `authd keys generate` creates one\n", cfg.KeysDir)
			return nil
		}
		states := map[*token.Key]token.Status{}
		// When rotate deletes a key depends on the longest lifetime allowed,
		// not on the one configured here.
		deletable := map[*token.Key]time.Time{}
		// The access-token keys, and the ID-token keys of OpenID Connect.
		for _, alg := range []string{cfg.SigningAlg, token.IDTokenAlg} {
			for _, s := range token.States(filterAlg(keys, alg), now, cfg.AccessTokenTTL) {
				states[s.Key] = s
			}
			for _, s := range token.States(filterAlg(keys, alg), now, token.MaxAccessTokenTTL) {
				if s.State == token.Retiring {
					deletable[s.Key] = s.Until
				}
			}
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tALG\tCREATED\tSTATE\tNEXT")
		for _, k := range keys {
			created := "unknown (added by hand)"
			if !k.Created.IsZero() {
				created = k.Created.Format(time.RFC3339)
			}
			s, ok := states[k]
			if !ok {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Alg, created, "other algorithm", "not used")
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Alg, created, s.State, next(s, deletable[k]))
		}
		return tw.Flush()
	default:
		return usagef("unknown action %q", action)
	}
	return nil
}

// next says what becomes of a key, and when; deletable is when rotate may
// delete a retired key (zero: now).
func next(s token.Status, deletable time.Time) string {
	at := s.Until.Format(time.RFC3339)
	switch s.State {
	case token.Published:
		return "signing from " + at
	case token.Signing:
		if s.Key.Created.IsZero() {
			return "until a kid-named key exists"
		}
		if s.Until.IsZero() {
			return "until a newer key signs"
		}
		return "retiring from " + at
	case token.Retiring:
		if s.Until.IsZero() {
			return "retired once a kid-named key exists"
		}
		return "retired (out of JWKS) from " + at
	default:
		if !deletable.IsZero() {
			return "deleted by `authd keys rotate` from " + deletable.Format(time.RFC3339)
		}
		return "deleted by the next `authd keys rotate`"
	}
}

func filterAlg(keys []*token.Key, alg string) []*token.Key {
	var out []*token.Key
	for _, k := range keys {
		if k.Alg == alg {
			out = append(out, k)
		}
	}
	return out
}

// keysOfRows refuses a keys directory that lacks a secret rows of db were
// made under (authd.KeyedRows): refresh-token.key while confidential
// clients exist (their secrets are digested under it), and, with mfa,
// mfa.key while TOTP factors or recovery codes do. token.RefreshKey and
// token.MFAKey make a missing secret on first use, as a first start must;
// made for a mistyped or unmounted AUTHD_KEYS_DIR, one would lock every
// relying party and every second factor out without a word, and other
// instances would go on with the old one. A file that is there but
// unreadable is left to them to report.
func keysOfRows(ctx context.Context, db authd.Store, dir string, mfa bool, hint string) error {
	needRefresh, needMFA := keyMissing(dir, token.RefreshKeyFile), mfa && keyMissing(dir, token.MFAKeyFile)
	if !needRefresh && !needMFA {
		return nil
	}
	rows, err := db.KeyedRows(ctx)
	if err != nil {
		return err
	}
	switch {
	case needRefresh && rows.ConfidentialClients > 0:
		return &cliError{msg: fmt.Sprintf("%s holds no %s, yet the database has %d clients whose secrets were digested under one",
			dir, token.RefreshKeyFile, rows.ConfidentialClients), hint: hint}
	case needMFA && rows.MFA:
		return &cliError{msg: fmt.Sprintf("%s holds no %s, yet the database has second factors (TOTP, recovery codes) made under one",
			dir, token.MFAKeyFile), hint: hint}
	}
	return nil
}

// keyMissing reports whether dir has no file (a dangling link counts as
// none); one there but unreadable is not missing, and its loader says why.
func keyMissing(dir, file string) bool {
	_, err := os.Stat(filepath.Join(dir, file))
	return errors.Is(err, fs.ErrNotExist)
}

// looseKeyFiles lists the key files in dir (signing keys, refresh-token.key,
// mfa.key) that others than their owner may read or write: authd makes
// them 0600, but a copy or a mounted secret may have come with another mode.
func looseKeyFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // the keyring reports an unreadable directory
	}
	var loose []string
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".pem" && filepath.Ext(e.Name()) != ".key" {
			continue
		}
		// Stat follows a link: a mounted secret's files are links
		// (Kubernetes: into ..data), 0644 unless told otherwise.
		if info, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o077 != 0 {
			loose = append(loose, fmt.Sprintf("%s (%04o)", e.Name(), info.Mode().Perm()))
		}
	}
	return loose
}
