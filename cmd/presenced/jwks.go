package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// jwksHTTPTimeout bounds one fetch of the JWKS.
const jwksHTTPTimeout = 10 * time.Second

// jwks returns the Keyfunc of the JWKS at url: fetched now (a failure
// refuses to start, so that a wrong URL shows at once rather than as
// every token refused), refreshed hourly and, at most every 5 minutes,
// when a token names a kid it does not hold (a rotated key), until ctx
// ends. Failed refreshes are logged; the keys held stay in use.
func jwks(ctx context.Context, url string, log *slog.Logger) (jwt.Keyfunc, error) {
	returnFirstErr := false
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &returnFirstErr,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("JWKS refresh failed; the keys held stay in use", "url", redactURLs(u), "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("--jwt-jwks-url %s: %v", redactURLs(url), err)
	}
	return k.Keyfunc, nil
}
