package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHelpAtEveryLevel: the top level, every group and every command answer
// --help (and its spellings) on stdout with exit 0 and name what they cover.
func TestHelpAtEveryLevel(t *testing.T) {
	type want struct {
		args   []string
		stdout []string
	}
	tests := []want{
		{[]string{"--help"}, []string{"Usage: tollgate <command>", "products apply", "mock-llm"}},
		{[]string{"-h"}, []string{"Usage: tollgate <command>"}},
		{[]string{"help"}, []string{"Usage: tollgate <command>"}},
		{[]string{"products", "--help"}, []string{"Usage: tollgate products <command>", "products apply", "products list"}},
		{[]string{"keys", "-h"}, []string{"keys create", "keys revoke"}},
		{[]string{"help", "products"}, []string{"products delete"}},
		{[]string{"help", "keys", "create"}, []string{"Usage: tollgate keys create [flags]", "-expires"}},
		{[]string{"products", "apply", "--help"}, []string{"Usage: tollgate products apply [flags]", "-dry-run", "-admin-url"}},
		{[]string{"serve", "--help"}, []string{"Usage: tollgate serve [flags]", "-listen"}},
	}
	// Every command and group in the table answers too.
	groups := map[string]bool{}
	for name, c := range commands() {
		if c.run == nil {
			continue
		}
		args := strings.Fields(name)
		tests = append(tests, want{append(args, "--help"), []string{"Usage: tollgate " + name + " [flags]"}})
		if len(args) == 2 && !groups[args[0]] {
			groups[args[0]] = true
			tests = append(tests, want{[]string{args[0], "--help"}, []string{"Usage: tollgate " + args[0] + " <command>", name}})
		}
	}
	sort.Slice(tests, func(i, j int) bool { return strings.Join(tests[i].args, " ") < strings.Join(tests[j].args, " ") })
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cli(t, nil, "", tc.args...)
			require.Equal(t, exitOK, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			for _, s := range tc.stdout {
				assert.Contains(t, r.stdout, s)
			}
			assert.Empty(t, r.stderr, "asked-for help goes to stdout")
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args   []string
		stderr string
	}{
		{nil, "Usage: tollgate <command>"},
		{[]string{"products"}, "tollgate products: missing command"},
		{[]string{"products", "frob"}, `unknown command "products frob"`},
		{[]string{"help", "nonsense"}, `unknown command "nonsense"`},
		{[]string{"--colour"}, `unknown command "--colour"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cli(t, nil, "", tc.args...)
			assert.Equal(t, exitUsage, r.code)
			assert.Contains(t, r.stderr, tc.stderr)
			assert.Empty(t, r.stdout)
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		r := cli(t, nil, "", args...)
		require.Equal(t, exitOK, r.code)
		assert.Regexp(t, regexp.MustCompile(`^tollgate \S+ \(`+regexp.QuoteMeta(runtime.Version())+`[^)]*\)\n$`), r.stdout)
		assert.Empty(t, r.stderr)
	}
}

// TestEmptyApply: a manifest without documents is reported and fails before
// any keystore is contacted (none runs here), with or without --dry-run.
func TestEmptyApply(t *testing.T) {
	comments := filepath.Join(t.TempDir(), "comments.yaml")
	require.NoError(t, os.WriteFile(comments, []byte("# nothing here yet\n---\n"), 0o644))
	down := map[string]string{envAdminURL: "http://127.0.0.1:1", envDataDir: t.TempDir()}
	for _, args := range [][]string{
		{"products", "apply", "-f", os.DevNull},
		{"products", "apply", "-f", comments},
		{"products", "apply", "-f", os.DevNull, "--dry-run"},
		{"products", "apply", "-f", "-"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := cli(t, down, "", args...)
			assert.Equal(t, exitError, r.code)
			assert.Contains(t, r.stderr, "nothing to apply")
			assert.NotContains(t, r.stderr, "connection refused", "decided before contacting the keystore")
			assert.Empty(t, r.stdout)
		})
	}
}
