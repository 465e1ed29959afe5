package main

import (
	"context"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	var out, errb strings.Builder
	if err := run(context.Background(), []string{"-help"}, &out, &errb); err == nil {
		t.Fatal("-help: no error")
	}
	for _, s := range []string{"-mode idle|fanout|joins|room", "room    -clients N", "-presence-mode"} {
		if !strings.Contains(errb.String(), s) {
			t.Errorf("usage lacks %q", s)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"-mode room -presence-mode both": "presence mode",
		"-mode rooms":                    "unknown mode",
		"-mode room -clients 0":          "clients",
	} {
		var out, errb strings.Builder
		err := run(context.Background(), strings.Fields(args), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", args, err, want)
		}
	}
}
