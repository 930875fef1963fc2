package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/client"
)

// Environment variables the CLI reads.
const (
	envAdminURL = "TOLLGATE_ADMIN_URL"
	envDataDir  = "TOLLGATE_DATA_DIR"
	envRedis    = "TOLLGATE_REDIS_URL"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// defaultDataDir holds the embedded database and the generated admin token.
const defaultDataDir = ".tollgate"

// env is the process environment, injected so tests run commands in-process.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// errUsage marks errors that should print usage and exit 2.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
func (e usageError) Is(t error) bool {
	return t == errUsage
}

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type command struct {
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":                {"run the keystore (data-plane and admin APIs)", runServe},
		"products apply":       {"apply APIProduct / APIOperationSet YAML (-f file, idempotent)", runProductsApply},
		"products list":        {"list API products", runProductsList},
		"products get":         {"show one API product as JSON", runProductsGet},
		"products delete":      {"delete an API product no app uses", runProductsDelete},
		"operationsets list":   {"list operation sets", runOperationSetsList},
		"operationsets delete": {"delete an operation set no product uses", runOperationSetsDelete},
		"pools apply":          {"apply InferencePool YAML with static endpoints (-f file, idempotent; --prune)", runPoolsApply},
		"pools list":           {"list inference pools (what the picker fetches from /v1/pools)", runPoolsList},
		"pools get":            {"show one inference pool as JSON", runPoolsGet},
		"pools delete":         {"delete an inference pool", runPoolsDelete},
		"developers create":    {"register a developer (--email, --name)", runDevelopersCreate},
		"developers list":      {"list developers", runDevelopersList},
		"developers delete":    {"delete a developer without apps", runDevelopersDelete},
		"apps create":          {"create an app (NAME --developer EMAIL --products a,b)", runAppsCreate},
		"apps list":            {"list apps (--developer EMAIL)", runAppsList},
		"apps delete":          {"delete an app and all its keys", runAppsDelete},
		"keys create":          {"issue a key (--app NAME [--expires 720h]); prints it once", runKeysCreate},
		"keys list":            {"list keys, never their secrets (--app NAME)", runKeysList},
		"keys revoke":          {"revoke a key (ID)", runKeysRevoke},
		"keys approve":         {"re-approve a revoked key (ID)", runKeysApprove},
		"keys delete":          {"delete a key record (ID)", runKeysDelete},
		"mock-llm":             {"serve a deterministic OpenAI-compatible demo backend (--listen, --ttft, --itl)", runMockLLM},
		"oci build":            {"package .wasm filters as Wasm OCI image layouts, both variants (--out build/oci)", runOCIBuild},
		"oci push":             {"push a .wasm filter as a Wasm OCI image (--variant compat|oci FILE REF)", runOCIPush},
		"oci pull":             {"pull a Wasm OCI image as Istio / Envoy Gateway do (-o FILE REF)", runOCIPull},
		"help":                 {"show this help, or a command's (help products, help keys create)", nil},
		"version":              {"print the version (also --version)", nil},
	}
}

// version is the release this binary was built from, stamped by `make cli`
// with -ldflags "-X main.version=…" (git describe); it is written only by
// the linker. A plain `go build` leaves it empty and versionString falls
// back to the module version and VCS revision Go recorded.
var version string

// versionString is what `tollgate --version` prints: the version, then the
// Go toolchain and the VCS revision when the build recorded one.
func versionString() string {
	v := version
	var rev, modified string
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, kv := range info.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					modified = "-dirty"
				}
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	out := "tollgate " + v + " (" + runtime.Version()
	if rev != "" {
		out += ", " + rev[:min(12, len(rev))] + modified
	}
	return out + ")"
}

// isHelp reports whether arg asks for help, as the flag package spells it.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "--h", "help":
		return true
	}
	return false
}

// wantsHelp reports whether a command's arguments ask for help before "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a != "help" && isHelp(a) {
			return true
		}
	}
	return false
}

// groupUsage lists the subcommands of a command group ("products", "keys").
// It returns false when group is not one.
func groupUsage(w io.Writer, group string) bool {
	cmds := commands()
	var names []string
	for n := range cmds {
		if g, _, ok := strings.Cut(n, " "); ok && g == group {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return false
	}
	sort.Strings(names)
	fmt.Fprintf(w, "Usage: tollgate %s <command> [flags]\n\nCommands:\n", group)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'tollgate %s <command> --help' for a command's flags.\n", group)
	return true
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: tollgate <command> [flags]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nAdmin commands take --admin-url (env "+envAdminURL+", default http://"+keystore.DefaultAdminListen+")")
	fmt.Fprintln(w, "and --admin-token (env "+keystore.AdminTokenEnv+", else the token file in --data-dir).")
	fmt.Fprintln(w, "Run 'tollgate <command> --help' for a command's flags, 'tollgate <group> --help' for a group's commands.")
}

// run executes one CLI invocation and returns the exit code.
func run(ctx context.Context, args []string, e env) int {
	switch {
	case len(args) == 0:
		usage(e.stderr)
		return exitUsage
	case args[0] == "--version" || args[0] == "-version" || args[0] == "version":
		fmt.Fprintln(e.stdout, versionString())
		return exitOK
	case isHelp(args[0]) && len(args) == 1:
		usage(e.stdout)
		return exitOK
	case isHelp(args[0]):
		// "tollgate help products apply" is "tollgate products apply --help".
		return run(ctx, append(append([]string{}, args[1:]...), "--help"), e)
	}
	cmds := commands()
	name := args[0]
	rest := args[1:]
	if _, ok := cmds[name]; !ok && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		name, rest = args[0]+" "+args[1], args[2:]
	}
	cmd, ok := cmds[name]
	if !ok || cmd.run == nil {
		var group bytes.Buffer
		if groupUsage(&group, args[0]) {
			if len(args) == 1 || (len(args) == 2 && wantsHelp(args[1:])) {
				if len(args) == 2 {
					fmt.Fprint(e.stdout, group.String())
					return exitOK
				}
				fmt.Fprintf(e.stderr, "tollgate %s: missing command\n\n%s", args[0], group.String())
				return exitUsage
			}
			fmt.Fprintf(e.stderr, "tollgate: unknown command %q\n\n%s", strings.Join(args[:2], " "), group.String())
			return exitUsage
		}
		fmt.Fprintf(e.stderr, "tollgate: unknown command %q\n\n", name)
		usage(e.stderr)
		return exitUsage
	}
	if wantsHelp(rest) {
		e.stderr = e.stdout // asked-for help is output, not a diagnostic
	}
	err := cmd.run(ctx, e, rest)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "tollgate %s: %v\n", name, err)
		return exitUsage
	default:
		fmt.Fprintf(e.stderr, "tollgate %s: %v\n", name, err)
		return exitError
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(e env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("tollgate "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: tollgate %s [flags]\n", name)
		if c, ok := commands()[name]; ok {
			fmt.Fprintf(w, "\n%s\n", c.summary)
		}
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before or after positional arguments
// ("apps create demo --developer x" and "apps create --developer x demo").
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// adminFlags are the connection flags every admin command takes.
type adminFlags struct {
	url, token, dataDir string
}

func addAdminFlags(fs *flag.FlagSet, e env) *adminFlags {
	a := &adminFlags{}
	fs.StringVar(&a.url, "admin-url", envOr(e, envAdminURL, "http://"+keystore.DefaultAdminListen), "admin API base URL (env "+envAdminURL+")")
	fs.StringVar(&a.token, "admin-token", "", "admin token (env "+keystore.AdminTokenEnv+"; default: read from --data-dir)")
	fs.StringVar(&a.dataDir, "data-dir", envOr(e, envDataDir, defaultDataDir), "data dir holding the generated admin token (env "+envDataDir+")")
	return a
}

func envOr(e env, key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func (a *adminFlags) client(e env) (*client.Client, error) {
	token := a.token
	if token == "" {
		token = e.getenv(keystore.AdminTokenEnv)
	}
	if token == "" {
		t, err := keystore.ReadAdminTokenFile(a.dataDir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no admin token: pass --admin-token, set %s, or point --data-dir at the directory `tollgate serve` uses", keystore.AdminTokenEnv)
			}
			return nil, err
		}
		token = t
	}
	return client.New(a.url, token)
}

func exactArgs(pos []string, n int, what string) error {
	if len(pos) != n {
		return usagef("want %s, got %d argument(s)", what, len(pos))
	}
	return nil
}

// splitList reads "a,b, c" into its non-empty items.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// attrFlag collects repeated --attr key=value flags.
type attrFlag map[string]string

func (a attrFlag) String() string { return "" }

func (a attrFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	a[k] = val
	return nil
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}
