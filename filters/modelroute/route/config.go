// Package route is the pure policy of the modelroute filter: it turns the
// model named in an OpenAI-style request body into a routing decision (the
// header Envoy routes on, the backend model name written back into the body,
// a weighted or sticky choice among targets, a priority header) and into the
// client errors that must never reach an upstream. It makes no proxy-wasm
// calls, so every rule is tested natively.
package route

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config

// Header names used when the configuration leaves them out.
const (
	// DefaultRoutingHeader is the header the filter sets for Envoy's route match.
	DefaultRoutingHeader = "x-tollgate-model"
	// GatewayAPIRoutingHeader is the header Gateway API Inference Extension routes match on.
	GatewayAPIRoutingHeader = "x-gateway-model-name"
	// DefaultAllowedModelsHeader carries the product's allowed models, set by the apikey filter.
	DefaultAllowedModelsHeader = "x-tollgate-allowed-models"
	// DefaultProductHeader carries the API product of the caller, set by the apikey filter.
	DefaultProductHeader = "x-tollgate-product"
	// DefaultAppHeader carries the application of the caller, set by the apikey filter.
	DefaultAppHeader = "x-tollgate-app"
	// DefaultPriorityHeader is where the mapped priority is written for schedulers behind Envoy.
	DefaultPriorityHeader = "x-tollgate-priority"
	// DefaultPublicModelHeader carries the resolved public model name to later
	// filters (tokencount labels and prices by it), since the body then names the backend model.
	DefaultPublicModelHeader = "x-tollgate-public-model"
)

// Body size limits.
const (
	// DefaultMaxBodyBytes is the request body limit when none is configured (8 MiB).
	DefaultMaxBodyBytes = 8 << 20
	// MaxJSONDepth bounds max_json_depth: the view is iterative, but deep nesting serves no request.
	MaxJSONDepth = 1024
	// MaxMaxBodyBytes bounds max_body_bytes: a body is held whole in the Wasm VM's memory.
	MaxMaxBodyBytes = 256 << 20
	// DefaultMaxResponseBytes is the largest response held to map its model
	// back (512 KiB): it stays under Envoy's default 1 MiB buffer limit,
	// above which Envoy resets a response whose headers have gone out.
	DefaultMaxResponseBytes = 512 << 10
)

// Config is the filter's JSON plugin configuration, as an operator writes it.
type Config struct {
	// RoutingHeader is set to the chosen target's route value (default x-tollgate-model).
	RoutingHeader string `json:"routing_header"`
	// AllowedModelsHeader names the identity header with the product's allowed models.
	AllowedModelsHeader string `json:"allowed_models_header"`
	// ProductHeader names the identity header with the caller's product.
	ProductHeader string `json:"product_header"`
	// AppHeader names the identity header with the caller's app.
	AppHeader string `json:"app_header"`
	// PriorityHeader is written with the mapped priority; client values are always removed.
	PriorityHeader string `json:"priority_header"`
	// PublicModelHeader is set to the resolved public model name; client values are always removed.
	PublicModelHeader string `json:"public_model_header"`
	// StickyHeader, when set, names a request header (a session id) whose value pins the target.
	StickyHeader string `json:"sticky_header"`
	// MaxBodyBytes is the largest request body accepted; larger bodies get 413.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// MaxResponseBytes is the largest JSON response (or SSE line) held to map its model back.
	MaxResponseBytes int64 `json:"max_response_bytes"`
	// MaxJSONDepth bounds the nesting of request bodies (400 above); 0 means reqview's default (64).
	MaxJSONDepth int `json:"max_json_depth"`
	// Paths limits the filter to these path prefixes; empty means every request with a body.
	Paths []string `json:"paths"`
	// UnknownModels is "reject" (404 model_not_found, the default) or "passthrough"
	// (route on the client's model name unchanged).
	UnknownModels string `json:"unknown_models"`
	// HideForbidden answers a model outside the caller's product with 404 instead of 403.
	HideForbidden bool `json:"hide_forbidden"`
	// RequireIdentity rejects requests without the allowed-models header (fail closed).
	RequireIdentity bool `json:"require_identity"`
	// MapResponseModel maps the response's model back to the public name for every model.
	MapResponseModel bool `json:"map_response_model"`
	// DefaultPriority is written when neither app, product nor model set one.
	DefaultPriority string `json:"default_priority"`
	// ErrorStyle is "openai" (default) or "apigee".
	ErrorStyle string `json:"error_style"`
	// Models are the public models clients may name.
	Models []ModelConfig `json:"models"`
	// Products map a product name to its priorities.
	Products map[string]PriorityConfig `json:"products"`
	// Apps map an app name to its priorities (they win over the product's).
	Apps map[string]PriorityConfig `json:"apps"`
}

// ModelConfig is one public model and where it is served.
type ModelConfig struct {
	// Name is the public (canonical) model name.
	Name string `json:"name"`
	// Aliases are other names clients may use for the same model.
	Aliases []string `json:"aliases"`
	// BackendModel is the name the upstream serves it as; the body is rewritten to it.
	BackendModel string `json:"backend_model"`
	// Route is the routing header value for a single target (default: Name).
	Route string `json:"route"`
	// Targets split traffic by weight; mutually exclusive with Route.
	Targets []TargetConfig `json:"targets"`
	// StickyHeader overrides the global sticky header for this model.
	StickyHeader string `json:"sticky_header"`
	// Priority is this model's priority header value.
	Priority string `json:"priority"`
	// MapResponseModel maps the response's model back to Name (nil inherits the global setting).
	MapResponseModel *bool `json:"map_response_model"`
}

// TargetConfig is one weighted destination of a model.
type TargetConfig struct {
	// Route is the routing header value Envoy's routes match on (required).
	Route string `json:"route"`
	// Weight is the target's share; 0 drains it.
	Weight *int64 `json:"weight"`
	// BackendModel overrides the model's backend name for this target.
	BackendModel string `json:"backend_model"`
}

// PriorityConfig holds the priorities of one product or app.
type PriorityConfig struct {
	// Priority applies to every model.
	Priority string `json:"priority"`
	// Models override Priority for single public model names.
	Models map[string]string `json:"models"`
}

// Target is one compiled destination.
type Target struct {
	// Route is the routing header value.
	Route string
	// BackendModel is the model name the upstream expects.
	BackendModel string
	// Weight is the target's share of traffic.
	Weight uint64
}

// Model is one compiled public model.
type Model struct {
	// Name is the canonical public name.
	Name string
	// Targets are the destinations, in configuration order.
	Targets []Target
	// StickyHeader is the effective sticky header ("" for none).
	StickyHeader string
	// Priority is the model-level priority ("" for none).
	Priority string
	// MapResponse says whether the response's model is mapped back to Name.
	MapResponse bool

	total uint64 // sum of Targets' weights, > 0
}

// Policy is a validated configuration ready to decide requests; it is
// read-only after Parse and safe to share.
type Policy struct {
	// RoutingHeader is the lower-case header set to the chosen target's route.
	RoutingHeader string
	// AllowedModelsHeader is the lower-case identity header listing allowed models.
	AllowedModelsHeader string
	// ProductHeader is the lower-case identity header naming the product.
	ProductHeader string
	// AppHeader is the lower-case identity header naming the app.
	AppHeader string
	// PriorityHeader is the lower-case header written with the priority.
	PriorityHeader string
	// PublicModelHeader is the lower-case header written with the public model name.
	PublicModelHeader string
	// MaxBodyBytes is the request body limit (413 above).
	MaxBodyBytes int64
	// MaxResponseBytes is the largest JSON response buffered for mapping.
	MaxResponseBytes int64
	// JSONLimits bound what a request body may demand of the canonical request view.
	JSONLimits reqview.Limits
	// Paths are the path prefixes the filter owns (empty: all).
	Paths []string
	// Passthrough routes unknown models on their own name instead of 404.
	Passthrough bool
	// HideForbidden answers 404 instead of 403 for a model outside the product.
	HideForbidden bool
	// RequireIdentity answers 403 when the allowed-models header is missing.
	RequireIdentity bool
	// DefaultPriority is the priority when nothing more specific applies.
	DefaultPriority string
	// Style is the error body shape.
	Style apierror.Style

	models   []*Model
	byName   map[string]*Model // canonical names and aliases
	products map[string]PriorityConfig
	apps     map[string]PriorityConfig
}

// Models returns the compiled models in configuration order (for metrics).
func (p *Policy) Models() []*Model { return p.models }

// Lookup finds a model by canonical name or alias.
func (p *Policy) Lookup(name string) (*Model, bool) {
	m, ok := p.byName[name]
	return m, ok
}

// Parse reads and validates a JSON configuration; every error names the
// offending field so an operator can fix it from the Envoy log alone.
func Parse(data []byte) (*Policy, error) {
	var c Config
	if len(bytes.TrimSpace(data)) > 0 {
		if err := config.Decode(data, &c); err != nil {
			return nil, config.Wrap("modelroute config: ", err, "")
		}
	}
	return c.Compile()
}

// Compile validates c and builds a Policy.
func (c *Config) Compile() (*Policy, error) {
	p := &Policy{
		byName:   map[string]*Model{},
		products: c.Products,
		apps:     c.Apps,
	}
	var err error
	hdr := func(field, v, def string) string {
		if err != nil {
			return ""
		}
		var h string
		h, err = headerName(field, v, def)
		return h
	}
	p.RoutingHeader = hdr("routing_header", c.RoutingHeader, DefaultRoutingHeader)
	p.AllowedModelsHeader = hdr("allowed_models_header", c.AllowedModelsHeader, DefaultAllowedModelsHeader)
	p.ProductHeader = hdr("product_header", c.ProductHeader, DefaultProductHeader)
	p.AppHeader = hdr("app_header", c.AppHeader, DefaultAppHeader)
	p.PriorityHeader = hdr("priority_header", c.PriorityHeader, DefaultPriorityHeader)
	p.PublicModelHeader = hdr("public_model_header", c.PublicModelHeader, DefaultPublicModelHeader)
	sticky := ""
	if c.StickyHeader != "" {
		sticky = hdr("sticky_header", c.StickyHeader, "")
	}
	if err != nil {
		return nil, err
	}
	if p.RoutingHeader == p.PriorityHeader {
		return nil, errors.New("modelroute config: routing_header and priority_header are both " + strconv.Quote(p.RoutingHeader))
	}
	if p.PublicModelHeader == p.RoutingHeader || p.PublicModelHeader == p.PriorityHeader {
		return nil, errors.New("modelroute config: public_model_header " + strconv.Quote(p.PublicModelHeader) + " is also the routing or priority header")
	}

	switch {
	case c.MaxBodyBytes == 0:
		p.MaxBodyBytes = DefaultMaxBodyBytes
	case c.MaxBodyBytes < 0 || c.MaxBodyBytes > MaxMaxBodyBytes:
		return nil, errors.New("modelroute config: max_body_bytes " + strconv.FormatInt(c.MaxBodyBytes, 10) + " is outside 1.." + strconv.Itoa(MaxMaxBodyBytes))
	default:
		p.MaxBodyBytes = c.MaxBodyBytes
	}
	if c.MaxJSONDepth < 0 || c.MaxJSONDepth > MaxJSONDepth {
		return nil, errors.New("modelroute config: max_json_depth " + strconv.Itoa(c.MaxJSONDepth) + " is outside 1.." + strconv.Itoa(MaxJSONDepth))
	}
	p.JSONLimits = reqview.Limits{MaxBytes: int(p.MaxBodyBytes), MaxDepth: c.MaxJSONDepth}
	switch {
	case c.MaxResponseBytes == 0:
		p.MaxResponseBytes = DefaultMaxResponseBytes
	case c.MaxResponseBytes < 0 || c.MaxResponseBytes > MaxMaxBodyBytes:
		return nil, errors.New("modelroute config: max_response_bytes " + strconv.FormatInt(c.MaxResponseBytes, 10) + " is outside 1.." + strconv.Itoa(MaxMaxBodyBytes))
	default:
		p.MaxResponseBytes = c.MaxResponseBytes
	}
	for i, pre := range c.Paths {
		if !strings.HasPrefix(pre, "/") {
			return nil, errors.New("modelroute config: paths[" + strconv.Itoa(i) + "] " + strconv.Quote(pre) + " must start with /")
		}
	}
	p.Paths = c.Paths
	switch c.UnknownModels {
	case "", "reject":
	case "passthrough":
		p.Passthrough = true
	default:
		return nil, errors.New("modelroute config: unknown_models " + strconv.Quote(c.UnknownModels) + " must be \"reject\" or \"passthrough\"")
	}
	style, ok := apierror.ParseStyle(c.ErrorStyle)
	if !ok {
		return nil, errors.New("modelroute config: error_style " + strconv.Quote(c.ErrorStyle) + " must be \"openai\" or \"apigee\"")
	}
	p.Style = style
	p.HideForbidden = c.HideForbidden
	p.RequireIdentity = c.RequireIdentity
	if p.DefaultPriority, err = headerValue("default_priority", c.DefaultPriority, true); err != nil {
		return nil, err
	}

	for i := range c.Models {
		m, err := c.compileModel(i, sticky)
		if err != nil {
			return nil, err
		}
		for _, n := range append([]string{m.Name}, c.Models[i].Aliases...) {
			if prev, dup := p.byName[n]; dup {
				return nil, errors.New("modelroute config: models[" + strconv.Itoa(i) + "]: name " + strconv.Quote(n) + " is already used by model " + strconv.Quote(prev.Name))
			}
			p.byName[n] = m
		}
		p.models = append(p.models, m)
	}
	if err := checkPriorities("products", c.Products); err != nil {
		return nil, err
	}
	if err := checkPriorities("apps", c.Apps); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Config) compileModel(i int, sticky string) (*Model, error) {
	mc := c.Models[i]
	where := "models[" + strconv.Itoa(i) + "]"
	if err := modelName(where+".name", mc.Name); err != nil {
		return nil, err
	}
	where = "models[" + strconv.Itoa(i) + "] (" + strconv.Quote(mc.Name) + ")"
	for j, a := range mc.Aliases {
		if err := modelName(where+".aliases["+strconv.Itoa(j)+"]", a); err != nil {
			return nil, err
		}
	}
	m := &Model{Name: mc.Name, StickyHeader: sticky, MapResponse: c.MapResponseModel}
	if mc.MapResponseModel != nil {
		m.MapResponse = *mc.MapResponseModel
	}
	var err error
	if mc.StickyHeader != "" {
		if m.StickyHeader, err = headerName(where+".sticky_header", mc.StickyHeader, ""); err != nil {
			return nil, err
		}
	}
	if m.Priority, err = headerValue(where+".priority", mc.Priority, true); err != nil {
		return nil, err
	}
	backend := mc.BackendModel
	if backend == "" {
		backend = mc.Name
	} else if err := modelName(where+".backend_model", backend); err != nil {
		return nil, err
	}
	if mc.Route != "" && len(mc.Targets) > 0 {
		return nil, errors.New("modelroute config: " + where + ": set route or targets, not both")
	}
	if len(mc.Targets) == 0 {
		r := mc.Route
		if r == "" {
			r = mc.Name
		}
		if r, err = headerValue(where+".route", r, false); err != nil {
			return nil, err
		}
		m.Targets = []Target{{Route: r, BackendModel: backend, Weight: 1}}
		m.total = 1
		return m, nil
	}
	seen := map[string]bool{}
	for j, tc := range mc.Targets {
		tw := where + ".targets[" + strconv.Itoa(j) + "]"
		r, err := headerValue(tw+".route", tc.Route, false)
		if err != nil {
			return nil, err
		}
		if seen[r] {
			return nil, errors.New("modelroute config: " + tw + ": route " + strconv.Quote(r) + " appears twice")
		}
		seen[r] = true
		t := Target{Route: r, BackendModel: backend, Weight: 1}
		if tc.BackendModel != "" {
			if err := modelName(tw+".backend_model", tc.BackendModel); err != nil {
				return nil, err
			}
			t.BackendModel = tc.BackendModel
		}
		if tc.Weight != nil {
			w := *tc.Weight
			if w < 0 || w > math.MaxUint32 {
				return nil, errors.New("modelroute config: " + tw + ".weight " + strconv.FormatInt(w, 10) + " is outside 0.." + strconv.FormatUint(uint64(uint32(math.MaxUint32)), 10))
			}
			t.Weight = uint64(w)
		}
		m.total += t.Weight
		m.Targets = append(m.Targets, t)
	}
	if m.total == 0 {
		return nil, errors.New("modelroute config: " + where + ": the target weights add up to 0")
	}
	return m, nil
}

func checkPriorities(field string, m map[string]PriorityConfig) error {
	for name, pc := range m {
		if name == "" {
			return errors.New("modelroute config: " + field + ": empty name")
		}
		if _, err := headerValue(field+"["+strconv.Quote(name)+"].priority", pc.Priority, true); err != nil {
			return err
		}
		for model, v := range pc.Models {
			if _, err := headerValue(field+"["+strconv.Quote(name)+"].models["+strconv.Quote(model)+"]", v, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// headerName validates an HTTP header name (RFC 9110 token) and lower-cases
// it, as Envoy stores header keys; def replaces an empty value.
func headerName(field, v, def string) (string, error) {
	if v == "" {
		v = def
	}
	h, err := config.HeaderName(field, v)
	if err != nil {
		return "", config.Wrap("modelroute config: ", err, "")
	}
	return h, nil
}

// headerValue validates a value that will be written into a header: visible
// ASCII and inner spaces only, so it can never split or smuggle headers.
func headerValue(field, v string, allowEmpty bool) (string, error) {
	if v == "" {
		if allowEmpty {
			return "", nil
		}
		return "", errors.New("modelroute config: " + field + " is empty")
	}
	if !validHeaderValue(v) {
		return "", errors.New("modelroute config: " + field + " " + strconv.Quote(v) + " must be visible ASCII without leading or trailing spaces")
	}
	return v, nil
}

func validHeaderValue(v string) bool {
	if v == "" || v[0] == ' ' || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// modelName validates a model name from the configuration.
func modelName(field, v string) error {
	if v == "" {
		return errors.New("modelroute config: " + field + " is empty")
	}
	if len(v) > maxModelLen {
		return errors.New("modelroute config: " + field + " is longer than " + strconv.Itoa(maxModelLen) + " bytes")
	}
	if !validHeaderValue(v) {
		return errors.New("modelroute config: " + field + " " + strconv.Quote(v) + " must be visible ASCII without leading or trailing spaces")
	}
	return nil
}

// maxModelLen bounds model names, in configuration and in requests.
const maxModelLen = 256
