package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is `presenced version`: the module version, the commit and the
// Go that built the binary, from its build info.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	return versionString(bi, ok)
}

// versionString formats bi: "presenced v1.2.0 (commit 0123abcd…, modified)
// go1.26.0 linux/amd64". A binary built from a checkout (go build, go
// run) has the version "(devel)" or a pseudo-version and the VCS settings;
// one from go install module@version has the version and no commit.
func versionString(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return fmt.Sprintf("presenced (unknown: no build info) %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	commit := ""
	switch {
	case rev != "" && modified == "true":
		commit = " (commit " + rev + ", modified)"
	case rev != "":
		commit = " (commit " + rev + ")"
	}
	goVersion := bi.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	return fmt.Sprintf("presenced %s%s %s %s/%s", v, commit, goVersion, runtime.GOOS, runtime.GOARCH)
}
