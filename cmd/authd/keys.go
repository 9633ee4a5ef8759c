package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/authd/authd/token"
)

const keysSynopsis = `authd keys [flags] ACTION

Actions:
  generate    add a signing key of AUTHD_SIGNING_ALG; the newest key signs
  list        every key in AUTHD_KEYS_DIR with its state
  rotate      add a new signing key and delete the keys retired for longer
              than AUTHD_ACCESS_TOKEN_TTL (all their tokens have expired)

Keys are PKCS#8 PEM files named KID.pem. Running instances reread the
directory every 30 seconds; JWKS keeps publishing a retired key until the
tokens it signed have expired.`

func keysCmd(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "keys", keysSynopsis)
	flags := configFlags(fs, "AUTHD_DATA_DIR", "AUTHD_KEYS_DIR", "AUTHD_SIGNING_ALG", "AUTHD_ACCESS_TOKEN_TTL")
	words, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return usagef("missing ACTION (generate, list or rotate)")
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
	switch action {
	case "generate":
		k, err := token.Generate(cfg.KeysDir, cfg.SigningAlg, now)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(e.stdout, "generated %s key %s in %s; it signs new tokens from now on\n", k.Alg, k.ID, cfg.KeysDir)
	case "rotate":
		k, deleted, err := token.Rotate(cfg.KeysDir, cfg.SigningAlg, now, cfg.AccessTokenTTL)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(e.stdout, "generated %s key %s; it signs new tokens from now on\n", k.Alg, k.ID)
		for _, id := range deleted {
			fmt.Fprintf(e.stdout, "deleted retired key %s\n", id)
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
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tALG\tCREATED\tSTATE")
		var newer *token.Key // the next newer key of the configured algorithm
		for _, k := range keys {
			state := "other algorithm (not used)"
			if k.Alg == cfg.SigningAlg {
				switch {
				case newer == nil:
					state = "signing"
				case now.Before(newer.Created.Add(cfg.AccessTokenTTL)):
					state = "retired, still published"
				default:
					state = "retired, deletable"
				}
				newer = k
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Alg, k.Created.Format(time.RFC3339), state)
		}
		return tw.Flush()
	default:
		return usagef("unknown action %q", action)
	}
	return nil
}
