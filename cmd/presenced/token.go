package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/gopresence/presence/phx/presencechannel"
)

// runToken is `presenced token`: it mints a JWT that a node started with
// the same secret accepts, so that token mode can be tried at once (an
// application's own backend mints them in production).
func runToken(args []string, lookup func(string) (string, bool), stdout io.Writer) error {
	fs := flag.NewFlagSet("presenced token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		sub, topics, inline, file string
		ttl                       time.Duration
	)
	fs.StringVar(&sub, "sub", "", "the user key (required)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid (its exp); 0: no exp")
	fs.StringVar(&topics, "topics", "", "comma-separated topics the token may join (room:lobby, room:*); default: any")
	fs.StringVar(&inline, "jwt-secret", "", "the node's secret (default: PRESENCE_JWT_SECRET)")
	fs.StringVar(&file, "jwt-secret-file", "", "read the secret from this file (default: PRESENCE_JWT_SECRET_FILE)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: presenced token --sub KEY [--ttl 1h] [--topics room:*]\n\nPrints an HS256 JWT for a node started with the same --jwt-secret.\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return errHelp
		}
		return fmt.Errorf("token: %v (presenced token --help lists the flags)", err)
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = "--" + f.Name })
	for name, v := range map[string]*string{"jwt-secret": &inline, "jwt-secret-file": &file} {
		env := map[string]string{"jwt-secret": "PRESENCE_JWT_SECRET", "jwt-secret-file": "PRESENCE_JWT_SECRET_FILE"}[name]
		if _, given := set[name]; !given {
			if x, ok := lookup(env); ok {
				*v, set[name] = x, env
			}
		}
	}
	secret, err := secret("jwt-secret", inline, file, set)
	switch {
	case err != nil:
		return fmt.Errorf("token: %v", err)
	case secret == "":
		return errors.New("token: no secret: give --jwt-secret, --jwt-secret-file or PRESENCE_JWT_SECRET (the node's)")
	case len(secret) < presencechannel.MinSecretLen:
		return fmt.Errorf("token: the secret has %d bytes; a node needs at least %d", len(secret), presencechannel.MinSecretLen)
	case sub == "":
		return errors.New("token: --sub (the user key) is required")
	}
	claims := map[string]any{"sub": sub}
	if ttl > 0 {
		claims["exp"] = time.Now().Add(ttl).Unix()
	}
	if topics != "" {
		claims["topics"] = splitList(topics)
	}
	tok, err := presencechannel.SignHS256([]byte(secret), claims)
	if err != nil {
		return fmt.Errorf("token: %v", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
