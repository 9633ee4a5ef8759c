package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/token"
)

const keysSynopsis = `authd keys [flags] ACTION

Actions:
  generate    add a key of AUTHD_SIGNING_ALG (as rotate, without deleting)
  list        every key in AUTHD_KEYS_DIR with its state and when it changes
  secrets     make refresh-token.key and mfa.key where missing, and record
              their checks as the database's (DATABASE_URL; without a
              database yet, the first serve records them). serve refuses
              to make a key the database recorded, or its rows need, and
              to start with one whose check differs: every instance must
              hold the same two files. Every instance stopped:
              --replace-lost makes a key lost for good anew in place of the
              recorded one, voiding what was made under it (confidential
              clients need new secrets, users their second factors reset);
              --adopt records the key there in place of the recorded one,
              when the check was recorded from a wrong directory
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

func keysCmd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "keys", keysSynopsis)
	flags := configFlags(fs, "AUTHD_DATA_DIR", "AUTHD_KEYS_DIR", "AUTHD_SIGNING_ALG", "AUTHD_ACCESS_TOKEN_TTL", "DATABASE_URL")
	replaceLost := fs.Bool("replace-lost", false, "secrets: make a key the database recorded, or its rows need, in place of a lost one")
	adopt := fs.Bool("adopt", false, "secrets: record the check of a key there in place of the one the database recorded")
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
	if (*replaceLost || *adopt) && action != "secrets" {
		return usagef("--replace-lost and --adopt are for secrets alone")
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
		// Into a mistyped directory, rotate would make a first key there
		// and say so, while the servers go on signing with the key it was
		// meant to retire (after a compromise, say).
		if keys, err := token.LoadAlg(cfg.KeysDir, cfg.SigningAlg); err != nil {
			return fail(err)
		} else if len(keys) == 0 {
			return &cliError{msg: fmt.Sprintf("signing keys: no %s key in %s to rotate", cfg.SigningAlg, cfg.KeysDir),
				hint: "is AUTHD_KEYS_DIR (or --keys-dir) the servers' directory? `authd keys generate` makes a first key"}
		}
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
		return makeSecrets(ctx, e, cfg, now, *replaceLost, *adopt)
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

// makeSecrets is `authd keys secrets`: it makes refresh-token.key and
// mfa.key where missing and records their checks as the database's. A
// missing key that the database recorded, or that its rows need, is made
// only with replaceLost, in place of the lost one; a key there whose check
// differs from the one recorded is refused, or with adopt recorded in its
// place. Each replacement is a compare-and-swap against the check read at
// the start. Without a database yet (the default one not created), it
// makes the files and leaves the record to the first start.
func makeSecrets(ctx context.Context, e *env, cfg *Config, now time.Time, replaceLost, adopt bool) error {
	secs := []token.Secret{token.RefreshSecret, token.MFASecret}
	const where = "set AUTHD_KEYS_DIR (or AUTHD_DATA_DIR) to the directory the servers use"
	if path, ok := strings.CutPrefix(cfg.DatabaseURL, "sqlite://"); ok && cfg.DefaultDatabase {
		if err := checkLeftBehind(path); err != nil {
			return err
		}
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			for _, sec := range secs {
				missing := keyMissing(cfg.KeysDir, sec.File)
				_, made, err := sec.Open(cfg.KeysDir)
				if err != nil {
					return keyError(sec, err, missing, where)
				}
				if made {
					fmt.Fprintf(e.stdout, "made %s (no database at %s yet: the first `authd serve` records it)\n", filepath.Join(cfg.KeysDir, sec.File), path)
				} else {
					fmt.Fprintf(e.stdout, "%s is there; left as it is\n", filepath.Join(cfg.KeysDir, sec.File))
				}
			}
			return nil
		}
	}
	db, err := openDatabase(ctx, cfg, existing, e.stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.KeyedRows(ctx)
	if err != nil {
		return err
	}
	lost := make([]string, len(secs))
	for i, sec := range secs {
		if keyMissing(cfg.KeysDir, sec.File) {
			if lost[i] = lostKey(cfg.KeysDir, sec, rows); lost[i] != "" && !replaceLost {
				return &cliError{msg: lost[i], hint: where + ", or restore the file from a backup; if it is lost for good, " +
					"stop every instance and run `authd keys secrets --replace-lost` (what was made under it is then void)"}
			}
			continue
		}
		key, err := sec.Load(cfg.KeysDir)
		if err != nil {
			return keyError(sec, err, false, where)
		}
		if recorded, ok := rows.Checks[sec.File]; ok && recorded.Value != sec.Check(key) && !adopt {
			return foreignKey(cfg.KeysDir, recorded, where)
		}
	}
	for i, sec := range secs {
		path := filepath.Join(cfg.KeysDir, sec.File)
		missing := keyMissing(cfg.KeysDir, sec.File)
		key, made, err := sec.Open(cfg.KeysDir)
		if err != nil {
			return keyError(sec, err, missing, where)
		}
		check := authd.KeyCheck{Name: sec.File, Value: sec.Check(key), RecordedAt: now}
		old, checked := rows.Checks[sec.File]
		var recorded authd.KeyCheck
		if checked && old.Value != check.Value {
			recorded, err = db.ReplaceKeyCheck(ctx, check, old.Value) // a lost one replaced, or this one adopted
		} else {
			var all map[string]authd.KeyCheck
			if all, err = db.RecordKeyChecks(ctx, []authd.KeyCheck{check}); err == nil {
				recorded = all[sec.File]
			}
		}
		if err == nil && recorded.Value != check.Value {
			err = &cliError{msg: fmt.Sprintf("the database's check of %s changed while this command ran", sec.File),
				hint: "an instance or another command is running: stop every instance and run it again"}
		}
		if err != nil {
			if made {
				os.Remove(path) // this command's, unrecorded: a run once the database answers makes another
			}
			return err
		}
		switch {
		case made && lost[i] != "":
			fmt.Fprintf(e.stdout, "made %s in place of the lost key; %s\n", path, lostWith(sec, rows))
		case made:
			fmt.Fprintf(e.stdout, "made %s and recorded its check\n", path)
		case checked && old.Value != check.Value:
			fmt.Fprintf(e.stdout, "%s is there; recorded its check in place of the one recorded %s\n", path, old.RecordedAt.UTC().Format(time.RFC3339))
		case checked:
			fmt.Fprintf(e.stdout, "%s is there and matches the check the database recorded %s; left as it is\n",
				path, old.RecordedAt.UTC().Format(time.RFC3339))
		default:
			fmt.Fprintf(e.stdout, "%s is there; recorded its check (the database had none to compare it with)\n", path)
		}
	}
	return nil
}

// lostWith says what stopped working with the secret sec that was lost.
func lostWith(sec token.Secret, rows authd.KeyedRows) string {
	if sec.File == token.MFAKeyFile {
		if !rows.MFA {
			return "no second factor was made under it"
		}
		return "every TOTP factor and recovery code made under it is dead: `authd admin users reset-mfa` their users"
	}
	if rows.ConfidentialClients == 0 {
		return "no confidential client's secret was digested under it"
	}
	return fmt.Sprintf("the %d confidential clients' secrets were digested under it: give each a new one (`authd clients rotate-secret`)",
		rows.ConfidentialClients)
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

// sharedSecrets loads the secrets secs of the keys directory dir, as
// token.Secret.Load does (a missing one made, as a first start needs), and
// holds each to what db's rows were made under: its check value
// (authd.KeyCheck) is recorded by the first command to hold the secret and
// compared by every later one. A directory mistyped, not mounted, another
// installation's or one made apart from the others' would otherwise have
// this process make or read another key and go on without a word:
// confidential clients and second factors locked out, CSRF forms, refresh
// retries and rate limits split across instances. So a missing secret is
// not made while the database recorded one or holds rows made under one
// (lostKey), and one whose check differs is refused; every refusal comes
// before anything is made. The checks are recorded in one statement: of
// two first starts with different directories, one records all of its
// keys, and the other is refused and removes the keys it made (only those:
// one it read was made by a start that shares its directory). A failure
// to record removes nothing: a key left unrecorded is recorded by the next
// start. where is the hint that says which directory to use.
func sharedSecrets(ctx context.Context, db authd.Store, dir string, now time.Time, where string, secs ...token.Secret) ([][]byte, error) {
	rows, err := db.KeyedRows(ctx)
	if err != nil {
		return nil, err
	}
	missing := make([]bool, len(secs))
	for i, sec := range secs {
		if missing[i] = keyMissing(dir, sec.File); missing[i] {
			if msg := lostKey(dir, sec, rows); msg != "" {
				return nil, &cliError{msg: msg, hint: where + ", or restore its files from a backup; a new key would open none " +
					"of the rows made under the old one (lost for good: stop every instance, then `authd keys secrets --replace-lost`)"}
			}
		}
	}
	keys := make([][]byte, len(secs))
	made := make([]bool, len(secs))
	open := func(i int) (err error) {
		if keys[i], made[i], err = secs[i].Open(dir); err != nil {
			return keyError(secs[i], err, missing[i], where)
		}
		return nil
	}
	// The keys there first: a foreign one is refused before one is made.
	for i, sec := range secs {
		if missing[i] {
			continue
		}
		if err := open(i); err != nil {
			return nil, err
		}
		if recorded, ok := rows.Checks[sec.File]; ok && recorded.Value != sec.Check(keys[i]) {
			return nil, foreignKey(dir, recorded, where)
		}
	}
	checks := make([]authd.KeyCheck, len(secs))
	for i, sec := range secs {
		if missing[i] {
			if err := open(i); err != nil {
				return nil, err
			}
		}
		checks[i] = authd.KeyCheck{Name: sec.File, Value: sec.Check(keys[i]), RecordedAt: now}
	}
	recorded, err := db.RecordKeyChecks(ctx, checks)
	if err != nil {
		return nil, err
	}
	for i, c := range checks {
		if r := recorded[c.Name]; r.Value != c.Value { // another start, with another directory, recorded first
			for j := range secs {
				if made[j] {
					os.Remove(filepath.Join(dir, secs[j].File))
				}
			}
			return nil, foreignKey(dir, recorded[checks[i].Name], where)
		}
	}
	return keys, nil
}

// lostKey says why the secret sec, missing from dir, must not be made
// anew: the database recorded one, or holds rows made under one before it
// recorded checks; "" when nothing depends on it.
func lostKey(dir string, sec token.Secret, rows authd.KeyedRows) string {
	recorded, checked := rows.Checks[sec.File]
	switch {
	case checked:
		return fmt.Sprintf("%s holds no %s, yet the database recorded the check of one %s",
			absolute(dir), sec.File, recorded.RecordedAt.UTC().Format(time.RFC3339))
	case sec.File == token.RefreshKeyFile && rows.ConfidentialClients > 0:
		return fmt.Sprintf("%s holds no %s, yet the database has %d clients whose secrets were digested under one",
			absolute(dir), sec.File, rows.ConfidentialClients)
	case sec.File == token.MFAKeyFile && rows.MFA:
		return fmt.Sprintf("%s holds no %s, yet the database has second factors (TOTP, recovery codes) made under one",
			absolute(dir), sec.File)
	}
	return ""
}

// keyError is the error for a secret that cannot be read, or, missing,
// made (a read-only directory: a mounted secret without the file).
func keyError(sec token.Secret, err error, missing bool, where string) error {
	hint := where + ", and restore " + sec.File + " from another instance or a backup if it is damaged"
	if missing {
		hint = "AUTHD_KEYS_DIR must be writable for a missing key to be made, or hold " + token.RefreshKeyFile + " and " +
			token.MFAKeyFile + " (`authd keys secrets` makes them, for a mounted secret)"
	}
	return &cliError{msg: sec.Use + " key: " + err.Error(), hint: hint}
}

// foreignKey is the error for a secret in dir whose check differs from the
// one the database recorded.
func foreignKey(dir string, recorded authd.KeyCheck, where string) error {
	return &cliError{msg: fmt.Sprintf("%s is not the key whose check value the database recorded %s: another installation's keys directory, "+
		"or one made apart from the other instances'", filepath.Join(absolute(dir), recorded.Name), recorded.RecordedAt.UTC().Format(time.RFC3339)),
		hint: where + "; compare it with the directory the running instances use before changing anything (every instance stopped: " +
			"`authd keys secrets --adopt` records this file's key instead, if it is the one the rows were made under; if the recorded " +
			"key is lost for good, move this file away and run `authd keys secrets --replace-lost`)"}
}

// absolute is dir made absolute for a message: a relative keys directory
// is relative to a working directory that may differ between serve and
// the command run to mend it.
func absolute(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
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
