package model

import (
	"sort"
	"strconv"
	"strings"
)

// Limits on sizes, so a single record stays small and cheap to verify against.
const (
	MaxNameLen        = 63
	MaxEmailLen       = 254
	MaxTextLen        = 1024
	MaxAttributes     = 64
	MaxAttrKeyLen     = 128
	MaxAttrValueLen   = 2048
	MaxOperations     = 256
	MaxMethods        = 16
	MaxModels         = 256
	MaxModelLen       = 256
	MaxPathLen        = 1024
	MaxReferences     = 64
	MaxQuotaLimit     = 1 << 53
	MaxQuotaIntervals = 1 << 20
)

// FieldError names one invalid field by its JSON/YAML path (e.g. "operations[1].path").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// FieldErrors is every problem found in one record, so users fix them in one pass.
type FieldErrors []FieldError

// Error joins the problems as "field: message; field: message".
func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		if fe.Field == "" {
			parts[i] = fe.Message
		} else {
			parts[i] = fe.Field + ": " + fe.Message
		}
	}
	return strings.Join(parts, "; ")
}

// Err returns nil when there are no problems, so callers can return it directly.
func (e FieldErrors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

type checker struct{ errs FieldErrors }

func (c *checker) add(field, msg string) {
	c.errs = append(c.errs, FieldError{Field: field, Message: msg})
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	if strings.HasPrefix(field, "[") {
		return prefix + field
	}
	return prefix + "." + field
}

func idx(prefix string, i int) string { return prefix + "[" + strconv.Itoa(i) + "]" }

// ValidName reports whether s is a valid resource name: 1–63 characters of
// lower-case letters, digits, '-', '_' and '.', starting and ending with a
// letter or digit, so names are safe in URLs, headers and counter keys.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if alnum {
			continue
		}
		if (c == '-' || c == '_' || c == '.') && i > 0 && i < len(s)-1 {
			continue
		}
		return false
	}
	return true
}

// ValidEmail is a deliberately small check (one '@', non-empty parts, no
// spaces or control characters) that keeps developer ids sane without
// rejecting real addresses.
func ValidEmail(s string) bool {
	if len(s) < 3 || len(s) > MaxEmailLen {
		return false
	}
	at := strings.IndexByte(s, '@')
	if at <= 0 || at != strings.LastIndexByte(s, '@') || at == len(s)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f || s[i] == '/' {
			return false
		}
	}
	return true
}

func (c *checker) name(field, s string) {
	if !ValidName(s) {
		c.add(field, strconv.Quote(s)+" is not a valid name (1-"+strconv.Itoa(MaxNameLen)+" chars of a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)")
	}
}

func (c *checker) text(field, s string) {
	if len(s) > MaxTextLen {
		c.add(field, "longer than "+strconv.Itoa(MaxTextLen)+" bytes")
	}
}

func (c *checker) attributes(field string, attrs map[string]string) {
	if len(attrs) > MaxAttributes {
		c.add(field, "more than "+strconv.Itoa(MaxAttributes)+" attributes")
		return
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case k == "" || len(k) > MaxAttrKeyLen:
			c.add(field, "attribute name "+strconv.Quote(k)+" must be 1-"+strconv.Itoa(MaxAttrKeyLen)+" bytes")
		case len(attrs[k]) > MaxAttrValueLen:
			c.add(field+"."+k, "longer than "+strconv.Itoa(MaxAttrValueLen)+" bytes")
		}
	}
}

// NormalizeQuota fills defaults (interval 1, calendar window, total tokens)
// so equal configurations compare equal.
func NormalizeQuota(q *Quota, token bool) {
	if q == nil {
		return
	}
	if q.Interval == 0 {
		q.Interval = 1
	}
	q.TimeUnit = strings.ToLower(q.TimeUnit)
	q.Window = strings.ToLower(q.Window)
	if q.Window == "" {
		q.Window = WindowCalendar
	}
	q.Counted = strings.ToLower(q.Counted)
	if token && q.Counted == "" {
		q.Counted = CountedTotal
	}
}

func (c *checker) quota(field string, q *Quota, token bool) {
	if q == nil {
		return
	}
	if q.Limit <= 0 || q.Limit > MaxQuotaLimit {
		c.add(join(field, "limit"), "must be between 1 and "+strconv.FormatInt(int64(MaxQuotaLimit), 10)+", got "+strconv.FormatInt(q.Limit, 10))
	}
	if q.Interval <= 0 || q.Interval > MaxQuotaIntervals {
		c.add(join(field, "interval"), "must be between 1 and "+strconv.Itoa(MaxQuotaIntervals)+", got "+strconv.FormatInt(q.Interval, 10))
	}
	switch q.TimeUnit {
	case UnitMinute, UnitHour, UnitDay, UnitMonth:
	default:
		c.add(join(field, "timeUnit"), "must be one of minute, hour, day, month, got "+strconv.Quote(q.TimeUnit))
	}
	switch q.Window {
	case WindowCalendar, WindowRolling, WindowFlexi:
	default:
		c.add(join(field, "window"), "must be one of calendar, rolling, flexi, got "+strconv.Quote(q.Window))
	}
	if token {
		switch q.Counted {
		case CountedTotal, CountedPrompt, CountedCompletion, CountedCost:
		default:
			c.add(join(field, "counted"), "must be one of total, prompt, completion, cost, got "+strconv.Quote(q.Counted))
		}
	} else if q.Counted != "" {
		c.add(join(field, "counted"), "only a token quota counts tokens; remove it from a request quota")
	}
}

// ValidMethod reports whether m is an upper-case HTTP method token or "*".
func ValidMethod(m string) bool {
	if m == "*" {
		return true
	}
	if m == "" || len(m) > 20 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

// ValidPathPattern explains why p is not an operation path pattern, or returns "".
// Patterns are exact paths, "prefix/**" (the prefix and everything below it) or
// "prefix*" (any path starting with prefix).
func ValidPathPattern(p string) string {
	switch {
	case p == "":
		return "must not be empty"
	case len(p) > MaxPathLen:
		return "longer than " + strconv.Itoa(MaxPathLen) + " bytes"
	case p[0] != '/':
		return strconv.Quote(p) + " must start with '/'"
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '\\' {
			return strconv.Quote(p) + " must not contain spaces, control characters, '?', '#' or '\\'"
		}
	}
	stars := strings.Count(p, "*")
	switch {
	case stars == 0:
	case stars == 2 && strings.HasSuffix(p, "/**"):
	case stars == 1 && strings.HasSuffix(p, "*"):
	default:
		return strconv.Quote(p) + ": '*' may only end the pattern, as \"/prefix/**\" or \"prefix*\""
	}
	if hasDotSegment(strings.TrimRight(p, "*")) {
		return strconv.Quote(p) + " must not contain '.' or '..' segments"
	}
	return ""
}

// ValidModelPattern explains why m is not a model pattern, or returns "".
func ValidModelPattern(m string) string {
	switch {
	case m == "":
		return "must not be empty"
	case len(m) > MaxModelLen:
		return "longer than " + strconv.Itoa(MaxModelLen) + " bytes"
	case strings.Contains(strings.TrimSuffix(m, "*"), "*"):
		return strconv.Quote(m) + ": '*' may only end the pattern"
	}
	for i := 0; i < len(m); i++ {
		if m[i] <= ' ' || m[i] == 0x7f || m[i] == ',' {
			return strconv.Quote(m) + " must not contain spaces, commas or control characters"
		}
	}
	return ""
}

func normalizeOperations(ops []Operation) {
	for i := range ops {
		for j, m := range ops[i].Methods {
			ops[i].Methods[j] = strings.ToUpper(strings.TrimSpace(m))
		}
		NormalizeQuota(ops[i].RequestQuota, false)
		NormalizeQuota(ops[i].TokenQuota, true)
	}
}

func (c *checker) operations(field string, ops []Operation) {
	if len(ops) > MaxOperations {
		c.add(field, "more than "+strconv.Itoa(MaxOperations)+" operations")
		return
	}
	for i, op := range ops {
		f := idx(field, i)
		if msg := ValidPathPattern(op.Path); msg != "" {
			c.add(f+".path", msg)
		}
		if len(op.Methods) > MaxMethods {
			c.add(f+".methods", "more than "+strconv.Itoa(MaxMethods)+" methods")
		}
		seen := map[string]bool{}
		for j, m := range op.Methods {
			switch {
			case !ValidMethod(m):
				c.add(idx(f+".methods", j), strconv.Quote(m)+" is not an HTTP method")
			case seen[m]:
				c.add(idx(f+".methods", j), strconv.Quote(m)+" listed twice")
			}
			seen[m] = true
		}
		c.quota(f+".requestQuota", op.RequestQuota, false)
		c.quota(f+".tokenQuota", op.TokenQuota, true)
	}
}

func (c *checker) references(field string, refs []string) {
	if len(refs) > MaxReferences {
		c.add(field, "more than "+strconv.Itoa(MaxReferences)+" entries")
		return
	}
	seen := map[string]bool{}
	for i, r := range refs {
		switch {
		case !ValidName(r):
			c.add(idx(field, i), strconv.Quote(r)+" is not a valid name")
		case seen[r]:
			c.add(idx(field, i), strconv.Quote(r)+" listed twice")
		}
		seen[r] = true
	}
}

// Normalize fills defaults and canonical spellings before validation and storage.
func (p *Product) Normalize() {
	normalizeOperations(p.Operations)
	NormalizeQuota(p.RequestQuota, false)
	NormalizeQuota(p.TokenQuota, true)
}

// Validate lists every problem with the product.
func (p *Product) Validate() FieldErrors {
	var c checker
	c.name("name", p.Name)
	c.text("displayName", p.DisplayName)
	c.text("description", p.Description)
	if len(p.Operations) == 0 && len(p.OperationSets) == 0 {
		c.add("operations", "a product needs at least one operation or operation set (use path \"/**\" to allow every path)")
	}
	c.operations("operations", p.Operations)
	c.references("operationSets", p.OperationSets)
	if len(p.AllowedModels) > MaxModels {
		c.add("allowedModels", "more than "+strconv.Itoa(MaxModels)+" models")
	} else {
		for i, m := range p.AllowedModels {
			if msg := ValidModelPattern(m); msg != "" {
				c.add(idx("allowedModels", i), msg)
			}
		}
	}
	c.quota("requestQuota", p.RequestQuota, false)
	c.quota("tokenQuota", p.TokenQuota, true)
	c.attributes("attributes", p.Attributes)
	return c.errs
}

// Normalize fills defaults and canonical spellings before validation and storage.
func (s *OperationSet) Normalize() {
	normalizeOperations(s.Operations)
	NormalizeQuota(s.RequestQuota, false)
	NormalizeQuota(s.TokenQuota, true)
}

// Validate lists every problem with the operation set.
func (s *OperationSet) Validate() FieldErrors {
	var c checker
	c.name("name", s.Name)
	c.text("description", s.Description)
	if len(s.Operations) == 0 {
		c.add("operations", "an operation set needs at least one operation")
	}
	c.operations("operations", s.Operations)
	c.quota("requestQuota", s.RequestQuota, false)
	c.quota("tokenQuota", s.TokenQuota, true)
	return c.errs
}

// Normalize lower-cases the e-mail address, which is the developer's id.
func (d *Developer) Normalize() {
	d.Email = strings.ToLower(strings.TrimSpace(d.Email))
}

// Validate lists every problem with the developer.
func (d *Developer) Validate() FieldErrors {
	var c checker
	if !ValidEmail(d.Email) {
		c.add("email", strconv.Quote(d.Email)+" is not a valid e-mail address")
	}
	c.text("name", d.Name)
	c.attributes("attributes", d.Attributes)
	return c.errs
}

// Normalize lower-cases the developer reference.
func (a *App) Normalize() {
	a.Developer = strings.ToLower(strings.TrimSpace(a.Developer))
}

// Validate lists every problem with the app (references are checked by the store).
func (a *App) Validate() FieldErrors {
	var c checker
	c.name("name", a.Name)
	if !ValidEmail(a.Developer) {
		c.add("developer", strconv.Quote(a.Developer)+" is not a valid developer e-mail address")
	}
	c.references("products", a.Products)
	c.attributes("attributes", a.Attributes)
	return c.errs
}
