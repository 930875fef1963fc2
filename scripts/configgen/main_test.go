package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// directive finds the go:generate lines that run configgen, and their roots.
var directive = regexp.MustCompile(`(?m)^//go:generate go run github\.com/tollgate/tollgate/scripts/configgen -type (\S+)$`)

// TestGeneratedUpToDate regenerates every package's config_decode.go and
// fails when the committed file differs: a field added without running
// go generate would otherwise be refused as unknown.
func TestGeneratedUpToDate(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dirs := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "build" || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range directive.FindAllSubmatch(src, -1) {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], strings.Split(string(m[1]), ",")...)
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, dirs, "no package runs configgen")
	for dir, roots := range dirs {
		rel, _ := filepath.Rel(root, dir)
		t.Run(rel, func(t *testing.T) {
			want, err := Generate(dir, roots)
			require.NoError(t, err)
			got, err := os.ReadFile(filepath.Join(dir, OutFile))
			require.NoError(t, err, "run go generate ./%s", rel)
			require.Equal(t, string(want), string(got), "%s/%s is stale: run go generate ./%s", rel, OutFile, rel)
		})
	}
}
