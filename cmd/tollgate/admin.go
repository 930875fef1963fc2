package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/keystore/manifest"
	"github.com/tollgate/tollgate/keystore/model"
)

// outputFlag chooses table or JSON output.
func outputFlag(fsSet func(p *string, name, value, usage string)) *string {
	var o string
	fsSet(&o, "o", "table", "output format: table or json")
	return &o
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usagef("-o %q: want table or json", o)
	}
	return nil
}

// listing is one `<noun> list` command: every kind of record shares the flags,
// the admin client call and the JSON-or-table output, and differs only here.
type listing[T any] struct {
	name        string // command name, e.g. "apps list"
	filter      string // optional filter flag, e.g. "developer"
	filterUsage string
	fetch       func(c *client.Client, ctx context.Context, filter string) ([]T, error)
	header      string // tab-separated column titles
	row         func(T) []string
}

func (l listing[T]) run(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, l.name)
	af := addAdminFlags(fs, e)
	filter := new(string)
	if l.filter != "" {
		filter = fs.String(l.filter, "", l.filterUsage)
	}
	out := outputFlag(fs.StringVar)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	items, err := l.fetch(c, ctx, *filter)
	if err != nil {
		return err
	}
	if *out == "json" {
		return printJSON(e.stdout, items)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, l.row(it))
	}
	return table(e.stdout, l.header, rows)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeCell(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// --- products ---

func readManifest(e env, path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = e.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open manifest: %w", err)
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, manifest.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return raw, nil
}

// applyFlags are the flags every "<group> apply" command shares: the admin
// connection, the manifest files and --dry-run.
type applyFlags struct {
	fs     *flag.FlagSet
	af     *adminFlags
	files  multiFlag
	dryRun *bool
}

// newApplyFlags declares the shared apply flags of cmd; the caller may add
// its own to fs before parse.
func newApplyFlags(e env, cmd, fileHelp string) *applyFlags {
	a := &applyFlags{fs: newFlags(e, cmd)}
	a.af = addAdminFlags(a.fs, e)
	a.fs.Var(&a.files, "f", fileHelp)
	a.dryRun = a.fs.Bool("dry-run", false, "validate only; change nothing")
	return a
}

// parse reads args: manifests come only after -f, and at least one is named.
func (a *applyFlags) parse(args []string) error {
	pos, err := parse(a.fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (manifests go after -f)", pos[0])
	}
	if len(a.files) == 0 {
		return usagef("need at least one -f FILE")
	}
	return nil
}

func runProductsApply(ctx context.Context, e env, args []string) error {
	a := newApplyFlags(e, "products apply", "manifest file (repeatable; - for stdin)")
	if err := a.parse(args); err != nil {
		return err
	}
	af, files, dryRun := a.af, a.files, a.dryRun

	docs, err := parseManifests(e, files, manifest.KindProduct, manifest.KindOperationSet)
	if err != nil {
		return err
	}
	if len(docs) == 0 {
		// An empty file is almost always the wrong file: say so and fail,
		// rather than report success for applying nothing.
		return fmt.Errorf("nothing to apply: %s hold(s) no %s or %s document", strings.Join(files, ", "), manifest.KindProduct, manifest.KindOperationSet)
	}
	if *dryRun {
		for _, d := range docs {
			fmt.Fprintf(e.stdout, "%s valid (dry run)\n", d.Ref())
		}
		return nil
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	// Operation sets first, so products can name sets defined later in the files.
	failed := 0
	for _, pass := range []string{manifest.KindOperationSet, manifest.KindProduct} {
		for _, d := range docs {
			if d.Kind != pass {
				continue
			}
			var res string
			var err error
			if d.OperationSet != nil {
				_, res, err = c.PutOperationSet(ctx, *d.OperationSet)
			} else {
				_, res, err = c.PutProduct(ctx, *d.Product)
			}
			if err != nil {
				var ae *client.APIError
				if !errors.As(err, &ae) {
					return err // connection problems stop the run
				}
				fmt.Fprintf(e.stderr, "%s: %s: %v\n", d.Pos, d.Ref(), err)
				failed++
				continue
			}
			fmt.Fprintf(e.stdout, "%s %s\n", d.Ref(), dash(res))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d document(s) rejected by the keystore", failed, len(docs))
	}
	return nil
}

// parseManifests reads and validates every file first, so nothing is applied
// if any file has a problem; documents of kinds other than the command's are
// problems too, named with the command that applies them.
func parseManifests(e env, files []string, kinds ...string) ([]manifest.Document, error) {
	var docs []manifest.Document
	var problems manifest.Errors
	seen := map[string]manifest.Position{}
	for _, f := range files {
		raw, err := readManifest(e, f)
		if err != nil {
			return nil, err
		}
		name := f
		if f == "-" {
			name = "<stdin>"
		}
		d, err := manifest.Parse(name, raw)
		var errs manifest.Errors
		if errors.As(err, &errs) {
			problems = append(problems, errs...)
		} else if err != nil {
			return nil, err
		}
		fileSeen := map[string]bool{}
		for _, doc := range d { // duplicates inside one file are reported by Parse
			if !slices.Contains(kinds, doc.Kind) {
				problems = append(problems, manifest.Error{Pos: doc.Pos, Msg: fmt.Sprintf("%s: apply kind %s with '%s'", doc.Ref(), doc.Kind, applyCommand(doc.Kind))})
			}
			if first, dup := seen[doc.Ref()]; dup && !fileSeen[doc.Ref()] {
				problems = append(problems, manifest.Error{Pos: doc.Pos, Msg: fmt.Sprintf("%s is defined twice (also at %s)", doc.Ref(), first)})
			}
			fileSeen[doc.Ref()] = true
			seen[doc.Ref()] = doc.Pos
		}
		docs = append(docs, d...)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p.Error())
		}
		return nil, fmt.Errorf("%d problem(s); nothing applied", len(problems))
	}
	return docs, nil
}

// applyCommand names the command that applies a kind of document.
func applyCommand(kind string) string {
	if kind == manifest.KindPool {
		return "tollgate pools apply"
	}
	return "tollgate products apply"
}

func runProductsList(ctx context.Context, e env, args []string) error {
	return listing[model.Product]{
		name: "products list",
		fetch: func(c *client.Client, ctx context.Context, _ string) ([]model.Product, error) {
			return c.ListProducts(ctx)
		},
		header: "NAME\tDISPLAY NAME\tOPERATIONS\tMODELS\tREQUEST QUOTA\tTOKEN QUOTA",
		row: func(p model.Product) []string {
			return []string{p.Name, dash(p.DisplayName), fmt.Sprintf("%d+%d sets", len(p.Operations), len(p.OperationSets)),
				dash(strings.Join(p.AllowedModels, ",")), quotaCell(p.RequestQuota), quotaCell(p.TokenQuota)}
		},
	}.run(ctx, e, args)
}

func quotaCell(q *model.Quota) string {
	if q == nil {
		return "-"
	}
	s := fmt.Sprintf("%d/%d%s %s", q.Limit, q.Interval, q.TimeUnit, q.Window)
	if q.Counted != "" {
		s += " " + q.Counted
	}
	return s
}

func runProductsGet(ctx context.Context, e env, args []string) error {
	return getter("products get", "product", (*client.Client).GetProduct)(ctx, e, args)
}

// getter is the "<group> get NAME" command of cmd, printing one what as JSON.
func getter[T any](cmd, what string, get func(*client.Client, context.Context, string) (T, error)) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error {
		fs := newFlags(e, cmd)
		af := addAdminFlags(fs, e)
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if err := exactArgs(pos, 1, "a "+what+" NAME"); err != nil {
			return err
		}
		c, err := af.client(e)
		if err != nil {
			return err
		}
		v, err := get(c, ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(e.stdout, v)
	}
}

// deleter is the "<group> delete NAME" command of cmd, deleting one what.
func deleter(cmd, what string, del func(*client.Client, context.Context, string) error) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error {
		fs := newFlags(e, cmd)
		af := addAdminFlags(fs, e)
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if err := exactArgs(pos, 1, "the "+what+" to delete"); err != nil {
			return err
		}
		c, err := af.client(e)
		if err != nil {
			return err
		}
		if err := del(c, ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s %s deleted\n", what, pos[0])
		return nil
	}
}

func runProductsDelete(ctx context.Context, e env, args []string) error {
	return deleter("products delete", "product", (*client.Client).DeleteProduct)(ctx, e, args)
}

func runOperationSetsDelete(ctx context.Context, e env, args []string) error {
	return deleter("operationsets delete", "operation set", (*client.Client).DeleteOperationSet)(ctx, e, args)
}

func runOperationSetsList(ctx context.Context, e env, args []string) error {
	return listing[model.OperationSet]{
		name: "operationsets list",
		fetch: func(c *client.Client, ctx context.Context, _ string) ([]model.OperationSet, error) {
			return c.ListOperationSets(ctx)
		},
		header: "NAME\tPATHS\tREQUEST QUOTA\tTOKEN QUOTA",
		row: func(s model.OperationSet) []string {
			paths := make([]string, len(s.Operations))
			for i, op := range s.Operations {
				paths[i] = op.Path
			}
			return []string{s.Name, strings.Join(paths, ","), quotaCell(s.RequestQuota), quotaCell(s.TokenQuota)}
		},
	}.run(ctx, e, args)
}

// --- developers ---

func runDevelopersCreate(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "developers create")
	af := addAdminFlags(fs, e)
	email := fs.String("email", "", "developer e-mail address (the developer's id)")
	name := fs.String("name", "", "display name")
	attrs := attrFlag{}
	fs.Var(attrs, "attr", "attribute key=value (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *email == "" && len(pos) == 1 {
		*email, pos = pos[0], nil
	}
	if *email == "" || len(pos) > 0 {
		return usagef("want --email EMAIL [--name NAME]")
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	d := model.Developer{Email: *email, Name: *name}
	if len(attrs) > 0 {
		d.Attributes = attrs
	}
	got, err := c.CreateDeveloper(ctx, d)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "developer %s created\n", got.Email)
	return nil
}

func runDevelopersList(ctx context.Context, e env, args []string) error {
	return listing[model.Developer]{
		name: "developers list",
		fetch: func(c *client.Client, ctx context.Context, _ string) ([]model.Developer, error) {
			return c.ListDevelopers(ctx)
		},
		header: "EMAIL\tNAME\tCREATED",
		row:    func(d model.Developer) []string { return []string{d.Email, dash(d.Name), timeCell(d.CreatedAt)} },
	}.run(ctx, e, args)
}

func runDevelopersDelete(ctx context.Context, e env, args []string) error {
	return deleter("developers delete", "developer", (*client.Client).DeleteDeveloper)(ctx, e, args)
}

// --- apps ---

func runAppsCreate(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "apps create")
	af := addAdminFlags(fs, e)
	name := fs.String("name", "", "app name (or give it as the argument)")
	dev := fs.String("developer", "", "owning developer's e-mail")
	products := fs.String("products", "", "comma-separated API products the app subscribes to")
	attrs := attrFlag{}
	fs.Var(attrs, "attr", "attribute key=value (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *name == "" && len(pos) == 1 {
		*name, pos = pos[0], nil
	}
	if *name == "" || *dev == "" || len(pos) > 0 {
		return usagef("want NAME --developer EMAIL [--products a,b]")
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	a := model.App{Name: *name, Developer: *dev, Products: splitList(*products)}
	if len(attrs) > 0 {
		a.Attributes = attrs
	}
	got, err := c.CreateApp(ctx, a)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "app %s created for %s (products: %s)\n", got.Name, got.Developer, dash(strings.Join(got.Products, ",")))
	return nil
}

func runAppsList(ctx context.Context, e env, args []string) error {
	return listing[model.App]{
		name: "apps list", filter: "developer", filterUsage: "only this developer's apps",
		fetch:  (*client.Client).ListApps,
		header: "NAME\tDEVELOPER\tPRODUCTS\tCREATED",
		row: func(a model.App) []string {
			return []string{a.Name, a.Developer, dash(strings.Join(a.Products, ",")), timeCell(a.CreatedAt)}
		},
	}.run(ctx, e, args)
}

func runAppsDelete(ctx context.Context, e env, args []string) error {
	return deleter("apps delete", "app", (*client.Client).DeleteApp)(ctx, e, args)
}

// --- keys ---

func runKeysCreate(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "keys create")
	af := addAdminFlags(fs, e)
	app := fs.String("app", "", "app the key belongs to")
	expires := fs.String("expires", "", "lifetime, e.g. 720h or 30d (default: until revoked)")
	expiresAt := fs.String("expires-at", "", "expiry as an RFC 3339 timestamp")
	products := fs.String("products", "", "restrict the key to these of the app's products (comma-separated)")
	out := fs.String("o", "key", "output: key (just the secret) or json (the whole record, secret included)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *app == "" || len(pos) > 0 {
		return usagef("want --app NAME [--expires 720h] [--products a,b]")
	}
	if *out != "key" && *out != "json" {
		return usagef("-o %q: want key or json", *out)
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	k, err := c.CreateKey(ctx, *app, model.KeyRequest{Products: splitList(*products), ExpiresIn: *expires, ExpiresAt: *expiresAt})
	if err != nil {
		return err
	}
	if *out == "json" {
		return printJSON(e.stdout, k)
	}
	fmt.Fprintln(e.stdout, k.Secret)
	exp := "never expires"
	if !k.ExpiresAt.IsZero() {
		exp = "expires " + timeCell(k.ExpiresAt)
	}
	fmt.Fprintf(e.stderr, "key %s for app %s (%s). This is the only time the key is shown: store it now.\n", k.ID, k.App, exp)
	return nil
}

func runKeysList(ctx context.Context, e env, args []string) error {
	return listing[model.Key]{
		name: "keys list", filter: "app", filterUsage: "only this app's keys",
		fetch:  (*client.Client).ListKeys,
		header: "ID\tAPP\tPREFIX\tSTATUS\tPRODUCTS\tCREATED\tEXPIRES",
		row: func(k model.Key) []string {
			return []string{k.ID, k.App, k.Prefix + "…", k.Status, dash(strings.Join(k.Products, ",")), timeCell(k.CreatedAt), timeCell(k.ExpiresAt)}
		},
	}.run(ctx, e, args)
}

func keyStatus(name, status string) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error {
		fs := newFlags(e, "keys "+name)
		af := addAdminFlags(fs, e)
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if err := exactArgs(pos, 1, "a key ID (see 'tollgate keys list')"); err != nil {
			return err
		}
		c, err := af.client(e)
		if err != nil {
			return err
		}
		k, err := c.SetKeyStatus(ctx, pos[0], status)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "key %s %s\n", k.ID, k.Status)
		return nil
	}
}

func runKeysRevoke(ctx context.Context, e env, args []string) error {
	return keyStatus("revoke", model.KeyRevoked)(ctx, e, args)
}

func runKeysApprove(ctx context.Context, e env, args []string) error {
	return keyStatus("approve", model.KeyApproved)(ctx, e, args)
}

func runKeysDelete(ctx context.Context, e env, args []string) error {
	return deleter("keys delete", "key", (*client.Client).DeleteKey)(ctx, e, args)
}
