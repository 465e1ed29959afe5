package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
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
		sub, topics, inline, file  string
		issuer, audience, keyClaim string
		ttl                        time.Duration
	)
	fs.StringVar(&sub, "sub", "", "the user key (required)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid (its exp); 0: no exp")
	fs.StringVar(&topics, "topics", "", "comma-separated topics the token may join (room:lobby, room:*); default: any")
	fs.StringVar(&inline, "jwt-secret", "", "the node's secret (default: PRESENCE_JWT_SECRET)")
	fs.StringVar(&file, "jwt-secret-file", "", "read the secret from this file (default: PRESENCE_JWT_SECRET_FILE)")
	fs.StringVar(&issuer, "jwt-issuer", "", "the iss claim, for a node with --jwt-issuer (default: PRESENCE_JWT_ISSUER)")
	fs.StringVar(&audience, "jwt-audience", "", "the aud claim, for a node with --jwt-audience (default: PRESENCE_JWT_AUDIENCE)")
	fs.StringVar(&keyClaim, "jwt-key-claim", "sub", "the claim that holds --sub, for a node with --jwt-key-claim (default: PRESENCE_JWT_KEY_CLAIM, else sub)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: presenced token --sub KEY [--ttl 1h] [--topics room:*]\n\nPrints an HS256 JWT for a node started with the same --jwt-secret (and --jwt-issuer,\n--jwt-audience, --jwt-key-claim: each read from the node's PRESENCE_ variable too).\nTokens of a --jwt-public-key or --jwt-jwks-url come from the identity provider.\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return errHelp
		}
		return fmt.Errorf("token: %v (presenced token --help lists the flags)", err)
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = "--" + f.Name })
	// The node's settings come from the same environment as the node's.
	for name, v := range map[string]*string{"jwt-secret": &inline, "jwt-secret-file": &file,
		"jwt-issuer": &issuer, "jwt-audience": &audience, "jwt-key-claim": &keyClaim} {
		env := "PRESENCE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if _, given := set[name]; !given {
			if x, ok := lookup(env); ok && (x != "" || strings.HasPrefix(name, "jwt-secret")) {
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
	case keyClaim == "" || slices.Contains([]string{"exp", "nbf", "iss", "aud", "topics"}, keyClaim):
		return fmt.Errorf("token: --jwt-key-claim %q: not a claim a node reads the key from", keyClaim)
	}
	claims := map[string]any{keyClaim: sub}
	if issuer != "" {
		claims["iss"] = issuer
	}
	if audience != "" {
		claims["aud"] = audience
	}
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
