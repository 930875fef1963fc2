// Package docs_test keeps the documentation honest: every configuration
// example parses with the parser the filter itself uses, every chain drawn
// follows the order examples/envoy/gateway.yaml runs, and every package path
// named exists.
//
// How examples are found:
//   - A ```yaml block is parsed as YAML. A Wasm filter's plugin
//     configuration in it (config.root_id + configuration.value) is parsed
//     by that filter's parser; a tollgate.dev/v1 manifest by keystore/manifest.
//   - A ```json block is parsed as JSON (one or more values). When the line
//     just before its fence is a marker, <!-- config: NAME -->, the block is
//     parsed by that parser (see parsers) instead.
package docs_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/examples/filter/hello/greet"
	apikey "github.com/tollgate/tollgate/filters/apikey/policy"
	guard "github.com/tollgate/tollgate/filters/guard/policy"
	"github.com/tollgate/tollgate/filters/modelroute/route"
	"github.com/tollgate/tollgate/filters/picker/pick"
	quota "github.com/tollgate/tollgate/filters/quota/policy"
	"github.com/tollgate/tollgate/filters/tokencount/meter"
	"github.com/tollgate/tollgate/keystore/manifest"
)

// parsers are the filters' own configuration parsers, by root_id (and
// marker name). A new filter adds itself here; a root_id without a parser
// fails the test, so no example goes unchecked.
var parsers = map[string]func([]byte) error{
	"apikey":     func(b []byte) error { _, err := apikey.ParseConfig(b); return err },
	"quota":      func(b []byte) error { _, err := quota.ParseConfig(b); return err },
	"modelroute": func(b []byte) error { _, err := route.Parse(b); return err },
	"tokencount": func(b []byte) error { _, err := meter.Parse(b); return err },
	"guard":      func(b []byte) error { _, err := guard.Parse(b); return err },
	"picker":     func(b []byte) error { _, err := pick.Parse(b); return err },
	"hello":      func(b []byte) error { _, err := greet.Parse(b); return err },
	// quota-rule is one entry of a quota configuration's "rules".
	"quota-rule": func(b []byte) error {
		cfg := append(append([]byte(`{"key_sources": [{"client_ip": true}], "rules": [`), b...), ']', '}')
		_, err := quota.ParseConfig(cfg)
		return err
	},
}

// fusedOrder is the order of the fused filter's sections (suite/main.go's
// FusedLinks): the suite module's root_id "tollgate" runs the filters in it.
var fusedOrder = []string{"apikey", "quota", "modelroute", "guard", "tokencount", "picker"}

// fusedSections splits a fused filter's configuration into its sections,
// in the order the filter runs them.
func fusedSections(b []byte) ([]string, map[string]json.RawMessage, error) {
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(b, &sections); err != nil {
		return nil, nil, err
	}
	var order []string
	for _, n := range fusedOrder {
		if _, ok := sections[n]; ok {
			order = append(order, n)
		}
	}
	if len(order) != len(sections) {
		return nil, nil, fmt.Errorf("unknown sections among %d (known: %v)", len(sections), fusedOrder)
	}
	return order, sections, nil
}

func init() {
	// The fused filter's configuration: each section by its filter's parser.
	parsers["tollgate"] = func(b []byte) error {
		order, sections, err := fusedSections(b)
		if err != nil {
			return err
		}
		for _, n := range order {
			if err := parsers[n](sections[n]); err != nil {
				return fmt.Errorf("section %s: %w", n, err)
			}
		}
		return nil
	}
}

// block is one fenced code block of a Markdown file.
type block struct {
	file   string
	line   int    // of the opening fence
	lang   string // info string
	marker string // NAME of a <!-- config: NAME --> line just before the fence
	body   []byte
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var markerRe = regexp.MustCompile(`^<!--\s*config:\s*([a-z0-9-]+)\s*-->$`)

// blocks reads the fenced blocks of a Markdown file.
func blocks(t *testing.T, path string) []block {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []block
	lines := strings.Split(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		open := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(open, "```") {
			continue
		}
		b := block{file: path, line: i + 1, lang: strings.TrimSpace(strings.TrimPrefix(open, "```"))}
		if i > 0 {
			if m := markerRe.FindStringSubmatch(strings.TrimSpace(lines[i-1])); m != nil {
				b.marker = m[1]
			}
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		require.Less(t, i, len(lines), "%s: unclosed code block", b)
		b.body = []byte(strings.Join(body, "\n"))
		out = append(out, b)
	}
	return out
}

// markdown lists the documents checked: docs/, the top-level guides and the
// examples' READMEs.
func markdown(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	require.NoError(t, err)
	for _, pattern := range []string{"../*.md", "../examples/*/README.md", "../deploy/README.md"} {
		more, err := filepath.Glob(pattern)
		require.NoError(t, err)
		files = append(files, more...)
	}
	require.NotEmpty(t, files)
	return files
}

// wasmConfigs finds the Wasm plugin configurations in a YAML document: maps
// holding root_id (or name) and configuration.value.
func wasmConfigs(n *yaml.Node, found func(rootID string, value []byte)) {
	if n.Kind == yaml.DocumentNode || n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			wasmConfigs(c, found)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	fields := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		fields[n.Content[i].Value] = n.Content[i+1]
		wasmConfigs(n.Content[i+1], found)
	}
	cfg, ok := fields["configuration"]
	if !ok || cfg.Kind != yaml.MappingNode {
		return
	}
	var value string
	for i := 0; i+1 < len(cfg.Content); i += 2 {
		if cfg.Content[i].Value == "value" {
			value = cfg.Content[i+1].Value
		}
	}
	id := ""
	for _, k := range []string{"root_id", "name"} {
		if f, ok := fields[k]; ok && id == "" {
			id = f.Value
		}
	}
	if value != "" {
		found(id, []byte(value))
	}
}

// checkYAML parses every document of a YAML text and the filter and
// manifest examples in it; it returns how many examples it checked.
func checkYAML(t *testing.T, where string, body []byte) int {
	t.Helper()
	checked := 0
	dec := yaml.NewDecoder(bytes.NewReader(body))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if !assertNoError(t, err, "%s: not YAML", where) {
			return checked
		}
		wasmConfigs(&doc, func(id string, value []byte) {
			checked++
			parse, ok := parsers[id]
			if !ok {
				t.Errorf("%s: Wasm plugin %q has no parser in docs_test.go's parsers table", where, id)
				return
			}
			assertNoError(t, parse(value), "%s: %s configuration rejected by its own parser:\n%s", where, id, value)
		})
	}
	if bytes.Contains(body, []byte("apiVersion: tollgate.dev/")) {
		checked++
		_, err := manifest.Parse(where, body)
		assertNoError(t, err, "%s: manifest rejected", where)
	}
	return checked
}

func assertNoError(t *testing.T, err error, format string, args ...any) bool {
	t.Helper()
	if err != nil {
		t.Errorf(format+": %v", append(args, err)...)
		return false
	}
	return true
}

// TestExamplesParse: every JSON and YAML example in the docs parses, and
// every filter configuration among them is accepted by the filter's parser.
func TestExamplesParse(t *testing.T) {
	// Examples name the keystore token by environment variable; the
	// parsers check it is set, as Envoy's VM would.
	t.Setenv("TOLLGATE_DATA_TOKEN", "docs-test-token-0123456789")
	configs := 0
	for _, f := range markdown(t) {
		for _, b := range blocks(t, f) {
			switch {
			case b.marker != "":
				parse, ok := parsers[b.marker]
				if !ok {
					t.Errorf("%s: unknown marker %q", b, b.marker)
					continue
				}
				configs++
				assertNoError(t, parse(b.body), "%s: %s example rejected by its own parser:\n%s", b, b.marker, b.body)
			case b.lang == "json":
				dec := json.NewDecoder(bytes.NewReader(b.body))
				for {
					var v any
					err := dec.Decode(&v)
					if errors.Is(err, io.EOF) {
						break
					}
					if !assertNoError(t, err, "%s: not JSON", b) {
						break
					}
				}
			case b.lang == "yaml" || b.lang == "yml":
				configs += checkYAML(t, b.String(), b.body)
			}
		}
	}
	// The shipped Envoy configurations are examples too.
	yamls, err := filepath.Glob("../examples/envoy/*.yaml")
	require.NoError(t, err)
	for _, f := range yamls {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		configs += checkYAML(t, f, raw)
	}
	require.Greater(t, configs, 10, "the docs hold filter configurations: the scan found too few")
}

// TestParsersRejectBadExamples: the check can fail — a configuration its
// parser rejects is reported with the place it came from.
func TestParsersRejectBadExamples(t *testing.T) {
	for id, parse := range parsers {
		require.Error(t, parse([]byte(`{"no_such_field": 1}`)), "%s accepts an unknown field", id)
	}
	bad := []byte("- name: apikey\n  typed_config:\n    config:\n      root_id: apikey\n      configuration:\n        value: '{\"nope\": 1}'\n")
	var seen []string
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(bad, &doc))
	wasmConfigs(&doc, func(id string, value []byte) {
		seen = append(seen, id)
		require.Error(t, parsers[id](value))
	})
	require.Equal(t, []string{"apikey"}, seen)
}

// gatewayChain is the order of the Wasm filters in examples/envoy/gateway.yaml.
func gatewayChain(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../examples/envoy/gateway.yaml")
	require.NoError(t, err)
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	var chain []string
	wasmConfigs(&doc, func(id string, value []byte) {
		if id != "tollgate" {
			chain = append(chain, id)
			return
		}
		order, _, err := fusedSections(value)
		require.NoError(t, err)
		chain = append(chain, order...)
	})
	require.GreaterOrEqual(t, len(chain), 4, "gateway.yaml runs the whole chain")
	return chain
}

// arrows separate the steps of a chain drawn in text.
var arrows = regexp.MustCompile(`\s*(?:─*►|→|->)\s*`)

// circled numbers the steps of the architecture drawing.
var circled = regexp.MustCompile(`[①②③④⑤⑥⑦⑧⑨]\s*([a-z]+)`)

// drawnChains returns the filter sequences a line draws: names joined by
// arrows ("[apikey] ──► [quota]", "apikey → quota"), or numbered with
// circled digits; steps that are not filters ("client", "…") are skipped.
func drawnChains(line string, filters map[string]bool) [][]string {
	var out [][]string
	if parts := arrows.Split(line, -1); len(parts) >= 3 {
		var seq []string
		for _, p := range parts {
			name := strings.Trim(strings.TrimSpace(p), "[]()`*")
			// A sentence may run into the first or last step ("chain apikey").
			if f := strings.Fields(name); len(f) > 0 {
				if filters[f[len(f)-1]] && (p == parts[0]) {
					name = f[len(f)-1]
				} else if filters[f[0]] && p == parts[len(parts)-1] {
					name = f[0]
				}
			}
			if filters[name] {
				seq = append(seq, name)
			}
		}
		if len(seq) >= 2 {
			out = append(out, seq)
		}
	}
	if m := circled.FindAllStringSubmatch(line, -1); len(m) >= 2 {
		var seq []string
		for _, s := range m {
			if filters[s[1]] {
				seq = append(seq, s[1])
			}
		}
		out = append(out, seq)
	}
	return out
}

// isSubsequence reports whether seq appears in chain in the same order.
func isSubsequence(seq, chain []string) bool {
	i := 0
	for _, c := range chain {
		if i < len(seq) && seq[i] == c {
			i++
		}
	}
	return i == len(seq)
}

// TestChainDrawingsFollowGateway: every chain drawn in the docs lists the
// filters in the order gateway.yaml runs them.
func TestChainDrawingsFollowGateway(t *testing.T) {
	chain := gatewayChain(t)
	filters := map[string]bool{}
	for _, f := range chain {
		filters[f] = true
	}
	drawings := 0
	for _, f := range markdown(t) {
		fh, err := os.Open(f)
		require.NoError(t, err)
		sc := bufio.NewScanner(fh)
		for n := 1; sc.Scan(); n++ {
			for _, seq := range drawnChains(sc.Text(), filters) {
				drawings++
				if !isSubsequence(seq, chain) {
					t.Errorf("%s:%d draws the chain as %s; examples/envoy/gateway.yaml runs %s",
						f, n, strings.Join(seq, " → "), strings.Join(chain, " → "))
				}
			}
		}
		require.NoError(t, sc.Err())
		fh.Close()
	}
	require.Greater(t, drawings, 3, "the docs draw the chain in several places: the scan found too few")
}

func TestDrawnChains(t *testing.T) {
	filters := map[string]bool{"apikey": true, "quota": true, "modelroute": true, "tokencount": true}
	tests := []struct {
		line string
		want [][]string
	}{
		{"client ──► Envoy ──► [apikey] ──► [quota] ──► … ──► model server", [][]string{{"apikey", "quota"}}},
		{"the chain apikey → quota → modelroute → tokencount ([gateway.yaml])", [][]string{{"apikey", "quota", "modelroute", "tokencount"}}},
		{"│  ① apikey        ② quota         ③ modelroute       ④ tokencount  │", [][]string{{"apikey", "quota", "modelroute", "tokencount"}}},
		{"keystore unreachable → 503", nil},
		{"a → b", nil},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, drawnChains(tc.line, filters), tc.line)
	}
	require.True(t, isSubsequence([]string{"apikey", "tokencount"}, []string{"apikey", "quota", "tokencount"}))
	require.False(t, isSubsequence([]string{"tokencount", "quota"}, []string{"apikey", "quota", "tokencount"}))
}

// pathRe finds repository paths in backticks: `filters/apikey/gate`,
// `shared/cache`, `counter/bucket`, `e2e/...`, and package members such as
// `keystore/model.Authorize`.
var pathRe = regexp.MustCompile("`((?:filters|shared|counter|keystore|cmd|e2e|examples|internal|window|mockllm|oci|scripts|deploy)(?:/[A-Za-z0-9_.*<>-]+)*)/?`")

// memberRe splits "dir/pkg.Ident" into the directory and the identifier.
var memberRe = regexp.MustCompile(`^(.*/[a-z0-9_]+)\.([A-Z][A-Za-z0-9_]*)$`)

// declared reports whether a Go file of dir declares ident at top level (a
// func, method, type, var or const, also inside a grouped declaration).
func declared(t *testing.T, dir, ident string) bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^(?:func (?:\([^)]*\) )?|type |var |const |\t)` + regexp.QuoteMeta(ident) + `\b`)
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		if decl.Match(raw) {
			return true
		}
	}
	return false
}

// TestNamedPathsExist: every repository path the docs name in backticks
// exists, and a package member named as `dir/pkg.Ident` is declared there
// (placeholders such as filters/<name> and globs are skipped).
func TestNamedPathsExist(t *testing.T) {
	named := 0
	for _, f := range markdown(t) {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for n, line := range strings.Split(string(raw), "\n") {
			for _, m := range pathRe.FindAllStringSubmatch(line, -1) {
				p := strings.TrimSuffix(m[1], "/...")
				if strings.ContainsAny(p, "<>*") || !strings.Contains(p, "/") {
					continue
				}
				named++
				ident := ""
				if mm := memberRe.FindStringSubmatch(p); mm != nil {
					if _, err := os.Stat(filepath.Join("..", p)); err != nil { // not a file such as a/b.Go
						p, ident = mm[1], mm[2]
					}
				}
				if _, err := os.Stat(filepath.Join("..", p)); err != nil {
					t.Errorf("%s:%d names %s, which does not exist", f, n+1, m[1])
					continue
				}
				if ident != "" && !declared(t, filepath.Join("..", p), ident) {
					t.Errorf("%s:%d names %s, but %s declares no %s", f, n+1, m[1], p, ident)
				}
			}
		}
	}
	require.Greater(t, named, 20)
}

// TestProxywasmAPITable: every name the API table of docs/proxywasm.md lists
// is declared in shared/proxywasm, so the table cannot advertise a call that
// was removed or renamed.
func TestProxywasmAPITable(t *testing.T) {
	raw, err := os.ReadFile("proxywasm.md")
	require.NoError(t, err)
	start := strings.Index(string(raw), "| area | API |")
	require.GreaterOrEqual(t, start, 0, "proxywasm.md has no API table")
	table, _, _ := strings.Cut(string(raw[start:]), "\n\n")
	ident := regexp.MustCompile("`([A-Z][A-Za-z0-9]*)")
	names := 0
	for _, m := range ident.FindAllStringSubmatch(table, -1) {
		names++
		if !declared(t, "../shared/proxywasm", m[1]) {
			t.Errorf("docs/proxywasm.md lists %s, which shared/proxywasm does not declare", m[1])
		}
	}
	require.Greater(t, names, 30)
}

// TestReadmeLayout: the Layout block of README.md names only paths that
// exist, and lists every package directory under shared/ (a new shared
// package is announced where newcomers look first).
func TestReadmeLayout(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(raw), "## Layout\n\n```\n")
	require.True(t, ok, "README.md has no Layout block")
	block, _, _ := strings.Cut(after, "```")
	listed := map[string]bool{}
	for _, line := range strings.Split(block, "\n") {
		for _, f := range strings.Fields(line) {
			p := strings.TrimSuffix(strings.TrimSuffix(f, ","), "/")
			if !strings.Contains(f, "/") || strings.ContainsAny(p, "<>()") || strings.HasPrefix(p, "--") {
				continue
			}
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				if strings.Contains(line, "   ") && strings.Index(line, f) > strings.Index(line, "   ") {
					continue // a word of the description, not a path
				}
				t.Errorf("README.md Layout names %s, which does not exist", p)
			}
			listed[p] = true
		}
	}
	dirs, err := filepath.Glob("../shared/*")
	require.NoError(t, err)
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			p := strings.TrimPrefix(d, "../")
			if !listed[p] && !strings.Contains(block, p) {
				t.Errorf("README.md Layout does not list %s", p)
			}
		}
	}
}

// linkRe finds Markdown links; only relative ones are checked.
var linkRe = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestRelativeLinksResolve: every relative link in the docs points at a file
// or directory that exists (anchors are not checked).
func TestRelativeLinksResolve(t *testing.T) {
	links := 0
	for _, f := range markdown(t) {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for n, line := range strings.Split(string(raw), "\n") {
			for _, m := range linkRe.FindAllStringSubmatch(line, -1) {
				target, _, _ := strings.Cut(m[1], "#")
				if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				links++
				if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
					t.Errorf("%s:%d links to %s, which does not exist", f, n+1, m[1])
				}
			}
		}
	}
	require.Greater(t, links, 10)
}
