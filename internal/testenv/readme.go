package testenv

import (
	"os"
	"strings"
	"testing"
)

// READMEBlock returns the first code block in lang (```lang) after the
// line heading of the README at path, for the tests that run the README's
// snippets as written.
func READMEBlock(t testing.TB, path, heading, lang string) string {
	t.Helper()
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), heading+"\n")
	_, rest, ok2 := strings.Cut(rest, "```"+lang+"\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("%s has no %s block under %q", path, lang, heading)
	}
	return block
}

// ExampleBody returns the lines of the Go file between "\t// README begin"
// and "\t// README end", one tab less: what the README shows of a runnable
// example.
func ExampleBody(t testing.TB, file string) string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(src), "\t// README begin\n")
	body, _, ok2 := strings.Cut(body, "\t// README end\n")
	if !ok || !ok2 {
		t.Fatalf("%s has no README begin/end markers", file)
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(body, "\n") {
		out.WriteString(strings.TrimPrefix(line, "\t"))
	}
	return out.String()
}
