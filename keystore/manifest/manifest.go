// Package manifest parses the declarative, Kubernetes-style YAML that
// `tollgate products apply` reads (kinds APIProduct and APIOperationSet) and
// `tollgate pools apply` reads (kind InferencePool), and reports every
// problem with its file:line:column.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/keystore/model"
)

// APIVersion is the only apiVersion this parser accepts.
const APIVersion = "tollgate.dev/v1"

// Kinds of documents.
const (
	KindProduct      = "APIProduct"
	KindOperationSet = "APIOperationSet"
	// KindPool is an inference pool with static endpoints (see pool.go).
	KindPool = "InferencePool"
)

// MaxBytes caps a manifest file, so a mistaken path cannot exhaust memory.
const MaxBytes = 4 << 20

// Position is a place in a manifest file.
type Position struct {
	File   string
	Line   int
	Column int
}

// String formats as file:line:column (column omitted when unknown).
func (p Position) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return p.File + ":" + strconv.Itoa(p.Line)
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// Error is one problem at one position.
type Error struct {
	Pos Position
	Msg string
}

// Error formats as "file:line:col: message", the form editors jump to.
func (e Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errors is every problem found, in file order.
type Errors []Error

// Error joins the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Document is one valid YAML document: exactly one of Product, OperationSet and Pool is set.
type Document struct {
	Kind         string
	Name         string
	Pos          Position
	Product      *model.Product
	OperationSet *model.OperationSet
	Pool         *model.Pool
}

// Ref is "kind/name" in lower case, as apply prints it.
func (d Document) Ref() string { return strings.ToLower(d.Kind) + "/" + d.Name }

type parser struct {
	file string
	errs Errors
	// bad holds nodes that failed type checks: they are pruned before
	// decoding, so the rest of the document is still validated.
	bad map[*yaml.Node]bool
	// badPaths are their field paths, whose follow-on validation errors are dropped.
	badPaths []string
}

func (p *parser) markBad(n *yaml.Node, path string) {
	if p.bad == nil {
		p.bad = map[*yaml.Node]bool{}
	}
	p.bad[n] = true
	p.badPaths = append(p.badPaths, strings.TrimPrefix(strings.TrimPrefix(path, "spec"), "."))
}

func (p *parser) at(n *yaml.Node, format string, args ...any) {
	pos := Position{File: p.file}
	if n != nil {
		pos.Line, pos.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// Parse reads every document of one file. It returns the valid documents and,
// if anything was wrong, an Errors listing each problem; callers should apply
// nothing when the error is not nil.
func Parse(file string, data []byte) ([]Document, error) {
	p := &parser{file: file}
	if len(data) > MaxBytes {
		p.at(nil, "file is larger than %d bytes", MaxBytes)
		return nil, p.errs
	}
	var docs []Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.yamlError(err)
			break
		}
		if d, ok := p.document(&root); ok {
			docs = append(docs, d)
		}
	}
	seen := map[string]Position{}
	for _, d := range docs {
		if first, dup := seen[d.Ref()]; dup {
			p.errs = append(p.errs, Error{Pos: d.Pos, Msg: fmt.Sprintf("%s is defined twice (first at line %d)", d.Ref(), first.Line)})
		}
		seen[d.Ref()] = d.Pos
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i].Pos, p.errs[j].Pos
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Column < b.Column
		})
		return docs, p.errs
	}
	return docs, nil
}

// yamlError turns yaml.v3's "yaml: line N: msg" into a positioned error.
func (p *parser) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, convErr := strconv.Atoi(num); convErr == nil {
				line, msg = n, tail
			}
		}
	}
	p.errs = append(p.errs, Error{Pos: Position{File: p.file, Line: line}, Msg: "invalid YAML: " + msg})
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// checkStructure rejects duplicate keys (yaml.v3 nodes keep both silently),
// aliases and merge keys (which would make positions ambiguous and expansion
// unbounded).
func (p *parser) checkStructure(n *yaml.Node) bool {
	ok := true
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.AliasNode {
			p.at(n, "YAML aliases (*%s) are not supported; repeat the value or use an APIOperationSet", n.Value)
			ok = false
			return
		}
		if n.Kind == yaml.MappingNode {
			first := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Value == "<<" && k.Tag == "!!merge" {
					p.at(k, "YAML merge keys (<<) are not supported")
					ok = false
					continue
				}
				if k.Kind != yaml.ScalarNode {
					continue
				}
				if line, dup := first[k.Value]; dup {
					p.at(k, "duplicate key %q (first at line %d)", k.Value, line)
					ok = false
					continue
				}
				first[k.Value] = k.Line
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return ok
}

// fields maps each key of a mapping node to its key and value nodes.
func (p *parser) fields(n *yaml.Node, where string, allowed ...string) (map[string][2]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		p.at(n, "%s must be a mapping", where)
		return nil, false
	}
	out := map[string][2]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.at(k, "%s: keys must be strings", where)
			continue
		}
		if !contains(allowed, k.Value) {
			p.at(k, "%s: unknown field %q (allowed: %s)", where, k.Value, strings.Join(allowed, ", "))
			continue
		}
		out[k.Value] = [2]*yaml.Node{k, v}
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) document(root *yaml.Node) (Document, bool) {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || isNull(root.Content[0]) {
		return Document{}, false // empty document, e.g. a trailing "---"
	}
	top := root.Content[0]
	if !p.checkStructure(top) {
		return Document{}, false
	}
	before := len(p.errs)
	f, ok := p.fields(top, "document", "apiVersion", "kind", "metadata", "spec")
	if !ok {
		return Document{}, false
	}
	d := Document{Pos: Position{File: p.file, Line: top.Line, Column: top.Column}}
	str := func(key string) (string, *yaml.Node) {
		kv, ok := f[key]
		if !ok || isNull(kv[1]) {
			p.at(top, "missing %q", key)
			return "", nil
		}
		if kv[1].Kind != yaml.ScalarNode {
			p.at(kv[1], "%s must be a string", key)
			return "", kv[1]
		}
		return kv[1].Value, kv[1]
	}
	if v, n := str("apiVersion"); n != nil && v != APIVersion {
		p.at(n, "apiVersion %q is not supported; use %q", v, APIVersion)
	}
	kind, kindNode := str("kind")
	if kindNode != nil {
		d.Pos = Position{File: p.file, Line: kindNode.Line, Column: kindNode.Column}
		if !knownKind(kind) {
			p.at(kindNode, "kind %q is not supported; use %s, %s or %s", kind, KindProduct, KindOperationSet, KindPool)
		}
	}
	d.Kind = kind
	var nameNode *yaml.Node
	if kv, ok := f["metadata"]; !ok || isNull(kv[1]) {
		p.at(top, "missing \"metadata\" with a name")
	} else if mf, ok := p.fields(kv[1], "metadata", "name", "labels", "annotations"); ok {
		if nv, ok := mf["name"]; !ok || isNull(nv[1]) {
			p.at(kv[1], "metadata: missing \"name\"")
		} else if nv[1].Kind != yaml.ScalarNode {
			p.at(nv[1], "metadata.name must be a string")
		} else {
			d.Name, nameNode = nv[1].Value, nv[1]
		}
		for _, k := range []string{"labels", "annotations"} {
			if lv, ok := mf[k]; ok {
				p.typecheck(lv[1], reflect.TypeFor[map[string]string](), "metadata."+k, nil)
			}
		}
	}
	specKV, hasSpec := f["spec"]
	if !hasSpec || isNull(specKV[1]) {
		p.at(top, "missing \"spec\"")
		return d, false
	}
	spec := specKV[1]
	if len(p.errs) > before || !knownKind(kind) {
		return d, false
	}
	index := map[string]*yaml.Node{"": spec, "name": nameNode}
	switch kind {
	case KindProduct:
		var prod model.Product
		if !p.decode(spec, &prod, index) {
			return d, false
		}
		prod.Name = d.Name
		prod.Normalize()
		p.fieldErrors(prod.Validate(), index)
		d.Product = &prod
	case KindOperationSet:
		var set model.OperationSet
		if !p.decode(spec, &set, index) {
			return d, false
		}
		set.Name = d.Name
		set.Normalize()
		p.fieldErrors(set.Validate(), index)
		d.OperationSet = &set
	case KindPool:
		d.Pool = p.pool(spec, d.Name, index)
		if d.Pool == nil {
			return d, false
		}
	}
	return d, len(p.errs) == before
}

// decode type-checks spec against v's type (recording each field's node in
// index by its path) and then decodes what passed, so semantic checks still
// run on the rest of the document.
func (p *parser) decode(spec *yaml.Node, v any, index map[string]*yaml.Node) bool {
	p.bad, p.badPaths = nil, nil
	p.typecheck(spec, reflect.TypeOf(v).Elem(), "spec", index)
	if p.bad[spec] {
		return false
	}
	if err := prune(spec, p.bad).Decode(v); err != nil {
		p.at(spec, "spec: %v", err)
		return false
	}
	return true
}

// prune copies n without the nodes in bad (and the keys of bad values).
func prune(n *yaml.Node, bad map[*yaml.Node]bool) *yaml.Node {
	if len(bad) == 0 {
		return n
	}
	c := *n
	c.Content = nil
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if bad[n.Content[i]] || bad[n.Content[i+1]] {
				continue
			}
			c.Content = append(c.Content, n.Content[i], prune(n.Content[i+1], bad))
		}
	default:
		for _, child := range n.Content {
			if !bad[child] {
				c.Content = append(c.Content, prune(child, bad))
			}
		}
	}
	return &c
}

// pruned reports whether a validation error concerns a field already
// reported as having the wrong type.
func (p *parser) pruned(field string) bool {
	for _, b := range p.badPaths {
		if field == b || strings.HasPrefix(field, b+".") || strings.HasPrefix(field, b+"[") {
			return true
		}
	}
	return false
}

// fieldErrors positions model validation errors at the nodes they name,
// falling back to the closest enclosing node that exists.
func (p *parser) fieldErrors(errs model.FieldErrors, index map[string]*yaml.Node) {
	for _, fe := range errs {
		if p.pruned(fe.Field) {
			continue
		}
		n := index[fe.Field]
		for path := fe.Field; n == nil && path != ""; {
			path = parentPath(path)
			n = index[path]
		}
		where := "spec." + fe.Field
		if fe.Field == "name" {
			where = "metadata.name"
		}
		p.at(n, "%s: %s", where, fe.Message)
	}
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if tag == "-" {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func kindWord(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	}
	return "a string"
}

// typecheck walks node against the Go type the spec decodes into, reporting
// unknown fields and wrong shapes at their exact position. Paths use the
// same names as model.FieldError ("operations[0].path"), minus "spec.".
func (p *parser) typecheck(n *yaml.Node, t reflect.Type, path string, index map[string]*yaml.Node) {
	rel := strings.TrimPrefix(strings.TrimPrefix(path, "spec"), ".")
	if index != nil && strings.HasPrefix(path, "spec") {
		index[rel] = n
	}
	if t.Kind() == reflect.Pointer {
		if isNull(n) {
			return
		}
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.at(n, "%s must be a mapping, got %s", path, kindWord(n))
			p.markBad(n, path)
			return
		}
		byName := map[string]reflect.StructField{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			if name := yamlName(t.Field(i)); name != "" {
				byName[name] = t.Field(i)
				names = append(names, name)
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := byName[k.Value]
			if !ok || k.Kind != yaml.ScalarNode {
				p.at(k, "%s: unknown field %q (allowed: %s)", path, k.Value, strings.Join(names, ", "))
				p.markBad(k, path+"."+k.Value)
				continue
			}
			p.typecheck(v, f.Type, path+"."+k.Value, index)
		}
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			p.at(n, "%s must be a list, got %s", path, kindWord(n))
			p.markBad(n, path)
			return
		}
		for i, c := range n.Content {
			p.typecheck(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", index)
		}
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			p.at(n, "%s must be a mapping, got %s", path, kindWord(n))
			p.markBad(n, path)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				p.at(k, "%s: keys must be strings", path)
				p.markBad(k, path)
				continue
			}
			p.typecheck(v, t.Elem(), path+"."+k.Value, index)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			p.at(n, "%s must be a string, got %s", path, kindWord(n))
			p.markBad(n, path)
		}
	case reflect.Int, reflect.Int64:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!float" && !strings.ContainsAny(n.Value, ".eE") {
			p.at(n, "%s: %q is out of range", path, n.Value)
			p.markBad(n, path)
			return
		}
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			p.at(n, "%s must be an integer, got %s", path, kindWord(n))
			p.markBad(n, path)
			return
		}
		if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err != nil {
			p.at(n, "%s: %q is out of range", path, n.Value)
			p.markBad(n, path)
		}
	default:
		p.at(n, "%s: unsupported field type %s", path, t)
		p.markBad(n, path)
	}
}
