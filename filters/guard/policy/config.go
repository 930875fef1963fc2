// Package policy is the pure policy of the guard filter: which scanners,
// threat-protection sets and moderation settings apply to a caller (by the
// product and app that the apikey filter put in the identity headers), and
// what to do with a request, a JSON answer or a streamed answer. It makes
// no proxy-wasm calls, so every rule is tested natively; filters/guard's
// filter.go only wires it to the callbacks.
package policy

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/filters/guard/detector"
	"github.com/tollgate/tollgate/filters/guard/masker"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/identity"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config

// Limits and defaults of the configuration.
const (
	DefaultMaxBodyBytes      = 8 << 20
	MaxMaxBodyBytes          = 64 << 20
	DefaultMaxResponseBytes  = 1 << 20
	DefaultMaxHoldBytes      = masker.DefaultMaxSegment
	MaxMaxHoldBytes          = 64 << 10
	DefaultMaxHold           = 2 * time.Second
	DefaultModerationPath    = "/v1/moderations"
	DefaultModerationModel   = "omni-moderation-latest"
	DefaultModerationTimeout = time.Second
	DefaultCacheTTL          = 5 * time.Minute
	DefaultCacheEntries      = 4096
	maxPatterns              = 256
	maxPatternLen            = 4096
)

// Config is the filter's JSON plugin configuration.
type Config struct {
	// ErrorStyle is "openai" (default) or "apigee".
	ErrorStyle string `json:"error_style"`
	// ProductHeader and AppHeader name apikey's identity headers.
	ProductHeader string `json:"product_header"`
	AppHeader     string `json:"app_header"`
	// MaxBodyBytes bounds the request body read for scanning (413 above).
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// MaxResponseBytes bounds a JSON answer held for scanning; a larger one
	// is refused with 502 when the profile scans answers (fail closed).
	MaxResponseBytes int64 `json:"max_response_bytes"`
	// Stream bounds what a streamed answer holds back.
	Stream StreamConfig `json:"stream"`
	// Default applies to callers whose product and app are not listed; absent
	// means they are not scanned.
	Default *Profile `json:"default"`
	// Products maps an API product to its profile.
	Products map[string]*Profile `json:"products"`
	// Apps maps an app to its profile; it wins over the product's.
	Apps map[string]*Profile `json:"apps"`
	// Moderation is the external safety check (used by profiles that enable it).
	Moderation *ModerationConfig `json:"moderation"`
}

// StreamConfig bounds the hold-back of streamed answers.
type StreamConfig struct {
	// MaxHoldBytes is the most text bytes held back per choice (default 4096).
	MaxHoldBytes int `json:"max_hold_bytes"`
	// MaxHold is the longest held text waits for the next chunk before it
	// is scanned and sent as it is (default "2s").
	MaxHold config.Duration `json:"max_hold"`
}

// Profile is what one product, app or the default gets.
type Profile struct {
	// Request scans the texts that reach the model.
	Request *ScanConfig `json:"request"`
	// Response scans the model's answers, JSON and streamed.
	Response *ScanConfig `json:"response"`
	// Threat applies threat-protection pattern sets.
	Threat *ThreatConfig `json:"threat"`
	// Moderation enables the external safety check for this profile.
	Moderation *ModerationUse `json:"moderation"`
}

// ScanConfig is one direction's detectors and patterns.
type ScanConfig struct {
	// Detectors maps a built-in detector (or "secrets", all credential
	// detectors) to block, mask or log.
	Detectors map[string]string `json:"detectors"`
	// Deny are custom RE2 patterns with their action.
	Deny []PatternConfig `json:"deny"`
	// Allow are RE2 patterns whose matches are never acted on.
	Allow []string `json:"allow"`
}

// PatternConfig is one custom deny pattern.
type PatternConfig struct {
	Name        string `json:"name"`
	Pattern     string `json:"pattern"`
	Action      string `json:"action"`
	Placeholder string `json:"placeholder"`
}

// ThreatConfig chooses threat-protection sets and where they apply.
type ThreatConfig struct {
	// Sets are "sqli", "xss" and "ssi" (default: all three).
	Sets []string `json:"sets"`
	// Path and Query check the URL path and the decoded query parameters.
	Path  bool `json:"path"`
	Query bool `json:"query"`
	// Headers names request headers to check.
	Headers []string `json:"headers"`
	// JSONFields are dot paths into the request body ("user",
	// "metadata.*"; "*" is any member or element).
	JSONFields []string `json:"json_fields"`
	// Prompt also checks the prompt texts: off by default, because people
	// ask models about SQL and HTML all day.
	Prompt bool `json:"prompt"`
}

// ModerationConfig is the moderation service.
type ModerationConfig struct {
	// Cluster is the Envoy cluster of the service (required).
	Cluster string `json:"cluster"`
	// Authority is the :authority of the callout (default: the cluster).
	Authority string `json:"authority"`
	// Path is the endpoint (default /v1/moderations).
	Path string `json:"path"`
	// Model is sent as "model" (default omni-moderation-latest).
	Model string `json:"model"`
	// APIKeyEnv is not supported in Wasm; a bearer token may be set here.
	BearerToken string `json:"bearer_token"`
	// Timeout bounds the callout (default "1s").
	Timeout config.Duration `json:"timeout"`
	// Fail is "open" (let the request through) or "closed" (503) when the
	// service fails or times out.
	Fail string `json:"fail"`
	// CacheTTL keeps verdicts keyed by a hash of the text (unset: "5m";
	// "0s" turns the cache off).
	CacheTTL *config.Duration `json:"cache_ttl"`
	// CacheEntries bounds the shared verdict cache (default 4096).
	CacheEntries int `json:"cache_entries"`
}

// ModerationUse enables moderation for a profile.
type ModerationUse struct {
	// Request checks the prompt before the upstream sees it.
	Request bool `json:"request"`
	// Response checks a JSON answer before the client sees it.
	Response bool `json:"response"`
	// Thresholds maps a category (or "*") to the score at or above which it
	// blocks; without any, the service's own "flagged" categories block.
	Thresholds map[string]float64 `json:"thresholds"`
	// Fail overrides the service's fail mode for this profile ("open" or "closed").
	Fail string `json:"fail"`
}

// ModerationFailOpen reports whether a failed check lets the text through.
func (c *Compiled) ModerationFailOpen(m *Moderation) bool {
	switch c.Moderation.Fail {
	case "open":
		return true
	case "closed":
		return false
	}
	return m.FailOpen
}

// Policy is the compiled configuration, shared by every stream of a plugin.
type Policy struct {
	Style            apierror.Style
	ProductHeader    string
	AppHeader        string
	MaxBodyBytes     int64
	MaxResponseBytes int64
	MaxHold          time.Duration
	Moderation       *Moderation
	def              *Compiled
	products, apps   map[string]*Compiled
	names            []string // every rule and set name, for metrics
}

// Compiled is one profile, compiled.
type Compiled struct {
	Name       string // "product:<p>", "app:<a>" or "default"
	Request    *masker.Scanner
	Response   *masker.Scanner
	Threat     *Threat
	Moderation *ModerationUse
}

// ScansRequestBody reports whether the request body must be read.
func (c *Compiled) ScansRequestBody() bool {
	return c != nil && (!c.Request.Empty() || c.Threat.onBody() || c.Moderation != nil && c.Moderation.Request)
}

// ScansResponse reports whether answers are scanned.
func (c *Compiled) ScansResponse() bool {
	return c != nil && (!c.Response.Empty() || c.Moderation != nil && c.Moderation.Response)
}

// Parse decodes and compiles a configuration.
func Parse(data []byte) (*Policy, error) {
	var c Config
	if strings.TrimSpace(string(data)) == "" {
		return nil, errors.New("guard: empty configuration (configure at least one profile)")
	}
	if err := config.Decode(data, &c); err != nil {
		return nil, config.Wrap("guard: ", err, "")
	}
	return compile(&c)
}

func compile(c *Config) (*Policy, error) {
	style, ok := apierror.ParseStyle(c.ErrorStyle)
	if !ok {
		return nil, errors.New("guard: error_style " + strconv.Quote(c.ErrorStyle) + " is not openai or apigee")
	}
	p := &Policy{Style: style, ProductHeader: identity.HeaderProduct, AppHeader: identity.HeaderApp,
		MaxBodyBytes: c.MaxBodyBytes, MaxResponseBytes: c.MaxResponseBytes,
		products: map[string]*Compiled{}, apps: map[string]*Compiled{}}
	var err error
	if c.ProductHeader != "" {
		if p.ProductHeader, err = config.HeaderName("guard: product_header", c.ProductHeader); err != nil {
			return nil, err
		}
	}
	if c.AppHeader != "" {
		if p.AppHeader, err = config.HeaderName("guard: app_header", c.AppHeader); err != nil {
			return nil, err
		}
	}
	switch {
	case p.MaxBodyBytes == 0:
		p.MaxBodyBytes = DefaultMaxBodyBytes
	case p.MaxBodyBytes < 0 || p.MaxBodyBytes > MaxMaxBodyBytes:
		return nil, errors.New("guard: max_body_bytes " + strconv.FormatInt(p.MaxBodyBytes, 10) + " outside 1.." + strconv.Itoa(MaxMaxBodyBytes))
	}
	switch {
	case p.MaxResponseBytes == 0:
		p.MaxResponseBytes = DefaultMaxResponseBytes
	case p.MaxResponseBytes < 0 || p.MaxResponseBytes > MaxMaxBodyBytes:
		return nil, errors.New("guard: max_response_bytes " + strconv.FormatInt(p.MaxResponseBytes, 10) + " outside 1.." + strconv.Itoa(MaxMaxBodyBytes))
	}
	hold := c.Stream.MaxHoldBytes
	switch {
	case hold == 0:
		hold = DefaultMaxHoldBytes
	case hold < 64 || hold > MaxMaxHoldBytes:
		return nil, errors.New("guard: stream.max_hold_bytes " + strconv.Itoa(hold) + " outside 64.." + strconv.Itoa(MaxMaxHoldBytes))
	}
	if p.MaxHold, err = c.Stream.MaxHold.Within("guard: stream.max_hold", DefaultMaxHold, time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	if c.Moderation != nil {
		m, err := compileModeration(c.Moderation)
		if err != nil {
			return nil, config.Wrap("guard: moderation: ", err, "")
		}
		p.Moderation = m
	}
	if c.Default == nil && len(c.Products) == 0 && len(c.Apps) == 0 {
		return nil, errors.New("guard: no profile: set default, products or apps")
	}
	names := map[string]bool{}
	comp := func(name string, pr *Profile) (*Compiled, error) {
		if pr == nil {
			return nil, errors.New("guard: " + name + ": null profile")
		}
		cp, err := compileProfile(name, pr, hold, names)
		if err != nil {
			return nil, config.Wrap("guard: "+name+": ", err, "")
		}
		if cp.Moderation != nil && p.Moderation == nil {
			return nil, errors.New("guard: " + name + ": moderation is enabled but no moderation service is configured")
		}
		return cp, nil
	}
	if c.Default != nil {
		if p.def, err = comp("default", c.Default); err != nil {
			return nil, err
		}
	}
	for n, pr := range c.Products {
		if p.products[n], err = comp("products."+n, pr); err != nil {
			return nil, err
		}
	}
	for n, pr := range c.Apps {
		if p.apps[n], err = comp("apps."+n, pr); err != nil {
			return nil, err
		}
	}
	for n := range names {
		p.names = append(p.names, n)
	}
	sort.Strings(p.names)
	return p, nil
}

func compileProfile(name string, pr *Profile, hold int, names map[string]bool) (*Compiled, error) {
	cp := &Compiled{Name: name}
	var err error
	if cp.Request, err = compileScan(pr.Request, hold, names); err != nil {
		return nil, config.Wrap("request: ", err, "")
	}
	if cp.Response, err = compileScan(pr.Response, hold, names); err != nil {
		return nil, config.Wrap("response: ", err, "")
	}
	if pr.Threat != nil {
		if cp.Threat, err = compileThreat(pr.Threat); err != nil {
			return nil, config.Wrap("threat: ", err, "")
		}
		for _, s := range cp.Threat.sets {
			names[s.name] = true
		}
	}
	if m := pr.Moderation; m != nil {
		if !m.Request && !m.Response {
			return nil, errors.New("moderation: enable request, response or both")
		}
		if m.Fail != "" && m.Fail != "open" && m.Fail != "closed" {
			return nil, errors.New("moderation.fail " + strconv.Quote(m.Fail) + ": say \"open\" or \"closed\"")
		}
		for k, v := range m.Thresholds {
			if k == "" || v < 0 || v > 1 {
				return nil, errors.New("moderation: threshold " + strconv.Quote(k) + "=" + strconv.FormatFloat(float64(v), 'g', -1, 64) + ": categories are non-empty, scores 0..1")
			}
		}
		cp.Moderation = m
		names["moderation"] = true
	}
	return cp, nil
}

func compileScan(sc *ScanConfig, hold int, names map[string]bool) (*masker.Scanner, error) {
	if sc == nil {
		return nil, nil
	}
	var rules []masker.Rule
	actions := map[string]string{}
	for k, v := range sc.Detectors {
		if k == "secrets" {
			for _, s := range detector.Secrets() {
				if _, set := sc.Detectors[s]; !set {
					actions[s] = v
				}
			}
			continue
		}
		actions[k] = v
	}
	keys := make([]string, 0, len(actions))
	for k := range actions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a, err := masker.ParseAction(actions[k])
		if err != nil {
			return nil, config.Wrap("detectors."+k+": ", err, "")
		}
		d, err := detector.Compile(k)
		if err != nil {
			return nil, err
		}
		rules = append(rules, masker.Builtin(d, a))
		names[k] = true
	}
	if len(sc.Deny) > maxPatterns || len(sc.Allow) > maxPatterns {
		return nil, errors.New("at most " + strconv.Itoa(maxPatterns) + " deny and " + strconv.Itoa(maxPatterns) + " allow patterns")
	}
	for i, d := range sc.Deny {
		if !validName(d.Name) {
			return nil, errors.New("deny[" + strconv.Itoa(i) + "].name " + strconv.Quote(d.Name) + ": use 1-48 of a-z, 0-9 and _")
		}
		if actions[d.Name] != "" {
			return nil, errors.New("deny[" + strconv.Itoa(i) + "].name " + strconv.Quote(d.Name) + " is a detector's name")
		}
		if d.Pattern == "" || len(d.Pattern) > maxPatternLen {
			return nil, errors.New("deny[" + strconv.Itoa(i) + "].pattern: 1-" + strconv.Itoa(maxPatternLen) + " bytes")
		}
		a, err := masker.ParseAction(d.Action)
		if err != nil {
			return nil, config.Wrap("deny["+strconv.Itoa(i)+"]: ", err, "")
		}
		r, err := masker.Custom(d.Name, d.Pattern, d.Placeholder, a)
		if err != nil {
			return nil, config.Wrap("deny["+strconv.Itoa(i)+"]: ", err, "")
		}
		rules = append(rules, r)
		names[d.Name] = true
	}
	for i, a := range sc.Allow {
		if a == "" || len(a) > maxPatternLen {
			return nil, errors.New("allow[" + strconv.Itoa(i) + "]: 1-" + strconv.Itoa(maxPatternLen) + " bytes")
		}
	}
	return masker.New(rules, sc.Allow, hold)
}

func validName(s string) bool {
	if s == "" || len(s) > 48 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Names lists every detector, pattern and set name the configuration can
// report, for defining metrics up front.
func (p *Policy) Names() []string { return p.names }

// Profile picks the caller's profile from the identity headers: the app's,
// else the product's, else the default (nil: nothing applies).
func (p *Policy) Profile(header func(string) string) (*Compiled, string) {
	product := header(p.ProductHeader)
	if c, ok := p.apps[header(p.AppHeader)]; ok {
		return c, product
	}
	if c, ok := p.products[product]; ok {
		return c, product
	}
	return p.def, product
}
