// Package meter is the pure policy of the tokencount filter: its
// configuration, which token quota applies to a request, the reservation a
// request needs and whether it may go on, the keystore callouts (reserve,
// settle, release, consume) and their answers, the usage a response
// settles, the rate-limit headers and the metric names. It makes no
// proxy-wasm calls; filters/tokencount/filter.go wires it to the callbacks.
package meter

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/keystoreconf"
	"github.com/tollgate/tollgate/shared/lease"
	"github.com/tollgate/tollgate/shared/usagelog"
	"github.com/tollgate/tollgate/window"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config

// Defaults of the configuration.
const (
	// DefaultCluster is the Envoy cluster of the keystore data plane.
	DefaultCluster = "keystore"
	// DefaultAuthority is the :authority of keystore callouts.
	DefaultAuthority = "keystore"
	// DefaultTimeout bounds one keystore callout.
	DefaultTimeout = time.Second
	// DefaultReservationTTL is how long an unsettled reservation lives in the
	// counter; it must exceed the slowest response (the counter releases it
	// on its own afterwards).
	DefaultReservationTTL = 10 * time.Minute
	// MaxReservationTTL is the counter's own upper bound.
	MaxReservationTTL = 24 * time.Hour
	// DefaultMaxRequestBytes is the largest request body metered (8 MiB);
	// larger bodies get 413.
	DefaultMaxRequestBytes = 8 << 20
	// MaxMaxRequestBytes bounds max_request_bytes: the body is held whole in
	// the VM's memory.
	MaxMaxRequestBytes = 256 << 20
	// DefaultHoldResponseBytes is the largest JSON response whose headers
	// wait for the settlement (256 KiB), so that its rate-limit headers show
	// the settled usage; it stays well under Envoy's 1 MiB buffer limit.
	DefaultHoldResponseBytes = 256 << 10
	// DefaultMaxResponseBytes is the largest JSON response read for usage
	// (4 MiB); a larger one is settled at its reservation.
	DefaultMaxResponseBytes = 4 << 20
	// MaxJSONDepth bounds max_json_depth: the view is iterative, but deep
	// nesting serves no request.
	MaxJSONDepth = 1024
	// DefaultMaxMetricModels bounds the distinct model labels per VM.
	DefaultMaxMetricModels = 50
	// DefaultMaxMetricApps bounds the distinct app labels per VM.
	DefaultMaxMetricApps = 200
	// DefaultPublicModelHeader is the header the modelroute filter sets to
	// the public model name after rewriting the body to the backend name.
	DefaultPublicModelHeader = "x-tollgate-public-model"
	// DefaultStaticProduct is the counter product of static quotas.
	DefaultStaticProduct = "tokencount"
	// AnonymousApp is the counter app of requests without the static quota's header.
	AnonymousApp = "_anonymous"
	// GlobalApp is the counter app of a static quota without a header: one
	// budget shared by every request.
	GlobalApp = "_global"
)

// Default rate-limit header names (OpenAI's).
const (
	DefaultLimitHeader     = "x-ratelimit-limit-tokens"
	DefaultRemainingHeader = "x-ratelimit-remaining-tokens"
	DefaultResetHeader     = "x-ratelimit-reset-tokens"
)

// Config is the filter's JSON plugin configuration, as an operator writes it.
type Config struct {
	// Keystore says where the counter engine's /v1/quota/* endpoints are.
	Keystore KeystoreConfig `json:"keystore"`
	// Counted is what quotas count unless the quota itself says: total
	// (default), prompt, completion or cost.
	Counted string `json:"counted"`
	// Pricing holds per-model prices for cost quotas (per million tokens).
	Pricing usage.Pricing `json:"pricing"`
	// DefaultMaxOutputTokens is reserved per choice when the client sets no
	// max_tokens / max_completion_tokens (default 4096).
	DefaultMaxOutputTokens int64 `json:"default_max_output_tokens"`
	// MaxOutputTokensCap caps the output reserved per choice even when the
	// client asks for more (0: no cap).
	MaxOutputTokensCap int64 `json:"max_output_tokens_cap"`
	// InjectIncludeUsage sets stream_options.include_usage on streamed
	// chat and completions requests (default true) and removes the extra
	// usage chunk again when the client had not asked for it.
	InjectIncludeUsage *bool `json:"inject_include_usage"`
	// StripAcceptEncoding removes accept-encoding from metered requests
	// (default true) so that responses arrive readable.
	StripAcceptEncoding *bool `json:"strip_accept_encoding"`
	// IdentityHeaders renames the apikey filter's identity headers.
	IdentityHeaders identity.Headers `json:"identity_headers"`
	// TrustIdentityHeaders reads the caller's token quota from the apikey
	// filter's headers (default true). Set it to false when no apikey
	// filter runs before this one: clients could otherwise send their own.
	TrustIdentityHeaders *bool `json:"trust_identity_headers"`
	// PublicModelHeader names the request header a trusted filter in front
	// (modelroute) sets to the public model name (default
	// x-tollgate-public-model); when present it replaces the body's model
	// in metric labels, the access-log model and price lookups. It is only
	// read when trust_identity_headers is on.
	PublicModelHeader string `json:"public_model_header"`
	// Usage reports every metered request to the keystore's usage analytics
	// (shared/usagelog: queued, posted in batches on the tick).
	Usage usagelog.Config `json:"usage"`
	// StaticQuota applies when the request carries no token quota from the
	// apikey filter, so the filter also works on its own.
	StaticQuota *StaticQuotaConfig `json:"static_quota"`
	// RateLimitHeaders names (or disables) the headers sent to clients.
	RateLimitHeaders HeaderConfig `json:"rate_limit_headers"`
	// FailureMode is what happens when the keystore cannot be reached:
	// "closed" (default: 503) or "open" (the request goes on unreserved and
	// its usage is recorded afterwards).
	FailureMode string `json:"failure_mode"`
	// OnAbort is what a stream cut short (client abort, upstream reset)
	// costs: "charge_streamed" (default: the tokens streamed so far, the
	// rest of the reservation is released) or "release" (nothing).
	OnAbort string `json:"on_abort"`
	// MaxRequestBytes is the largest request body accepted (413 above).
	MaxRequestBytes int64 `json:"max_request_bytes"`
	// HoldResponseBytes is the largest JSON response held until it is
	// settled (0: default; -1: never hold).
	HoldResponseBytes int64 `json:"hold_response_bytes"`
	// MaxResponseBytes is the largest JSON response read for usage.
	MaxResponseBytes int64 `json:"max_response_bytes"`
	// MaxJSONDepth bounds the nesting of request bodies (400 above); 0
	// means the canonical view's default (64).
	MaxJSONDepth int `json:"max_json_depth"`
	// MetricModels, when set, are the only model names used as metric
	// labels (others count as "_other"); otherwise the first
	// MaxMetricModels distinct names are.
	MetricModels []string `json:"metric_models"`
	// MaxMetricModels bounds distinct model labels per VM (default 50).
	MaxMetricModels int `json:"max_metric_models"`
	// MaxMetricApps bounds distinct app labels per VM (default 200).
	MaxMetricApps int `json:"max_metric_apps"`
	// ErrorStyle is "openai" (default) or "apigee".
	ErrorStyle string `json:"error_style"`
	// Strict makes token quotas impossible to overshoot: the prompt is
	// reserved at its provable bound and the output cap is enforced on the
	// forwarded body.
	Strict StrictConfig `json:"strict"`
	// PromptBound holds the framing constants and per-item maxima of the
	// prompt bound (used by strict mode and to distrust upstream usage).
	PromptBound BoundConfig `json:"prompt_bound"`
	// ContextTokens is each model's context window, the last bound of any
	// usage an upstream may report.
	ContextTokens ContextConfig `json:"context_tokens"`
	// UnmeteredPaths are POST paths that may pass without metering when a
	// token quota applies; every other POST that is not a metered API is
	// refused then (403), so tokens are never consumed uncounted.
	UnmeteredPaths []string `json:"unmetered_paths"`
	// SettleRetry sizes the shared queue of settles that failed.
	SettleRetry SettleRetryConfig `json:"settle_retry"`
	// Lease reserves from budget leases held in shared data instead of a
	// keystore round trip per request (docs/leases.md).
	Lease lease.Config `json:"lease"`
}

// KeystoreConfig locates the counter engine.
type KeystoreConfig struct {
	// Config is the shared block: cluster and authority (default
	// "keystore"), timeout (default "1s"), token.
	keystoreconf.Config
	// ReservationTTL is the reservation lifetime (default "10m").
	ReservationTTL config.Duration `json:"reservation_ttl"`
}

// QuotaConfig is one token quota in the keystore's product schema.
type QuotaConfig struct {
	// Limit is the budget per window (0 blocks everything).
	Limit *int64 `json:"limit"`
	// Interval is how many time units a window lasts (default 1).
	Interval int `json:"interval"`
	// TimeUnit is second, minute, hour, day, week or month.
	TimeUnit string `json:"time_unit"`
	// Window is calendar (default), rolling or flexi.
	Window string `json:"window"`
	// Counted overrides the filter-wide counted setting.
	Counted string `json:"counted"`
}

// StaticQuotaConfig is a token quota from the filter's own configuration,
// keyed by a request header.
type StaticQuotaConfig struct {
	QuotaConfig
	// Header names the request header whose value identifies the caller
	// (the counter's app). Empty: one budget shared by every request.
	// Requests without the header share the "_anonymous" budget. Only use a
	// header that a trusted filter sets or that clients cannot forge.
	Header string `json:"header"`
	// Product is the counter product (default "tokencount").
	Product string `json:"product"`
	// Overrides give some header values their own limits.
	Overrides map[string]QuotaConfig `json:"overrides"`
}

// HeaderConfig names the rate-limit response headers.
type HeaderConfig struct {
	// Disabled sends no rate-limit headers.
	Disabled bool `json:"disabled"`
	// Limit, Remaining and Reset rename the three headers.
	Limit     string `json:"limit"`
	Remaining string `json:"remaining"`
	Reset     string `json:"reset"`
}

// Policy is a validated configuration; it is read-only after Parse.
type Policy struct {
	// Keystore addresses the keystore: Cluster, Authority, Timeout, Token.
	keystoreconf.Keystore
	// ReservationTTL is the lifetime of a reservation.
	ReservationTTL time.Duration
	// Metric is the default counted metric.
	Metric usage.Metric
	// Pricing prices cost quotas.
	Pricing usage.Pricing
	// Estimator sizes prompts and reservations.
	Estimator usage.Estimator
	// InjectIncludeUsage asks streamed requests for a usage chunk.
	InjectIncludeUsage bool
	// StripAcceptEncoding removes accept-encoding from metered requests.
	StripAcceptEncoding bool
	// Identity names the apikey filter's headers.
	Identity identity.Headers
	// TrustIdentity reads quotas from the identity headers.
	TrustIdentity bool
	// PublicModelHeader is the lower-case header naming the public model
	// (read only when TrustIdentity is set).
	PublicModelHeader string
	// Static is the static quota (nil: none).
	Static *StaticQuota
	// Headers names the rate-limit headers ("" names: none sent).
	Headers HeaderNames
	// FailOpen lets requests through unreserved when the keystore fails.
	FailOpen bool
	// ReleaseOnAbort releases the whole reservation of an aborted stream.
	ReleaseOnAbort bool
	// MaxRequestBytes, HoldResponseBytes and MaxResponseBytes are the body limits.
	MaxRequestBytes   int64
	HoldResponseBytes int64
	MaxResponseBytes  int64
	// MaxJSONDepth bounds request body nesting (0: reqview's default).
	MaxJSONDepth int
	// MetricModels is the fixed model label set (nil: first come).
	MetricModels map[string]bool
	// MaxMetricModels and MaxMetricApps bound the label sets.
	MaxMetricModels int
	MaxMetricApps   int
	// Style is the error body shape.
	Style apierror.Style
	// Strict reserves prompt bounds and enforces the output cap.
	Strict bool
	// Lease is the budget leases' settings (Enabled false: none).
	Lease lease.Settings
	// RefuseUnbounded refuses, in strict mode, inputs whose tokens do not
	// follow from their bytes.
	RefuseUnbounded bool
	// ClampMaxTokens lowers the forwarded output cap to what the budget
	// allows instead of refusing (strict mode).
	ClampMaxTokens bool
	// MinOutputTokens is the smallest output cap a clamp leaves.
	MinOutputTokens int64
	// Bounds are the prompt bound's constants.
	Bounds usage.Bounds
	// Context is the context window per model.
	Context ContextLimits
	// UnmeteredPaths are the POST paths allowed through unmetered.
	UnmeteredPaths []PathPattern
	// SettleQueueEntries bounds the shared queue of failed settles.
	SettleQueueEntries int
	// SettleRetryInterval is the tick that retries queued settles.
	SettleRetryInterval time.Duration
	// Usage is the usage reporting (disabled unless usage.enabled).
	Usage usagelog.Settings
}

// HeaderNames are the lower-case rate-limit header names.
type HeaderNames struct {
	Limit, Remaining, Reset string
}

// StaticQuota is a compiled static quota.
type StaticQuota struct {
	// Header is the lower-case identifying header ("" for one global budget).
	Header string
	// Product is the counter product.
	Product string
	// Default is the quota of every caller without an override.
	Default QuotaSpec
	// Overrides are per header value.
	Overrides map[string]QuotaSpec
}

// QuotaSpec is a validated window and what it counts.
type QuotaSpec struct {
	Spec   window.Spec
	Metric usage.Metric
}

// Parse reads and validates a JSON configuration. Unknown fields are
// errors, and every error names the field, so a typo cannot silently
// disable metering.
func Parse(data []byte) (*Policy, error) {
	var c Config
	if len(bytes.TrimSpace(data)) > 0 {
		if err := config.Decode(data, &c); err != nil {
			return nil, config.Wrap("tokencount config: ", err, "")
		}
	}
	p, err := c.compile()
	if err != nil {
		return nil, config.Wrap("tokencount config: ", err, "")
	}
	return p, nil
}

func (c *Config) compile() (*Policy, error) {
	p := &Policy{
		ReservationTTL:      DefaultReservationTTL,
		Pricing:             c.Pricing,
		InjectIncludeUsage:  c.InjectIncludeUsage == nil || *c.InjectIncludeUsage,
		StripAcceptEncoding: c.StripAcceptEncoding == nil || *c.StripAcceptEncoding,
		Identity:            c.IdentityHeaders.WithDefaults(),
		TrustIdentity:       c.TrustIdentityHeaders == nil || *c.TrustIdentityHeaders,
		PublicModelHeader:   strings.ToLower(orDefault(c.PublicModelHeader, DefaultPublicModelHeader)),
		MaxRequestBytes:     DefaultMaxRequestBytes,
		HoldResponseBytes:   DefaultHoldResponseBytes,
		MaxResponseBytes:    DefaultMaxResponseBytes,
		MaxMetricModels:     DefaultMaxMetricModels,
		MaxMetricApps:       DefaultMaxMetricApps,
	}
	var err error
	if p.Keystore, err = c.Keystore.Compile(DefaultTimeout, nil); err != nil {
		return nil, err
	}
	if p.ReservationTTL, err = c.Keystore.ReservationTTL.Within("keystore.reservation_ttl", p.ReservationTTL, time.Millisecond, MaxReservationTTL); err != nil {
		return nil, err
	}
	if p.Usage, err = c.Usage.Compile(); err != nil {
		return nil, err
	}
	if p.Metric, err = usage.ParseMetric(c.Counted); err != nil {
		return nil, config.Wrap("counted: ", err, "")
	}
	if err := c.Pricing.Validate(); err != nil {
		return nil, config.Wrap("pricing: ", err, "")
	}
	if c.DefaultMaxOutputTokens < 0 || c.MaxOutputTokensCap < 0 {
		return nil, errors.New("default_max_output_tokens and max_output_tokens_cap must not be negative")
	}
	p.Estimator = usage.Estimator{DefaultMaxOutput: c.DefaultMaxOutputTokens, MaxOutputCap: c.MaxOutputTokensCap}
	if err := p.Identity.Validate(); err != nil {
		return nil, config.Wrap("identity_headers: ", err, "")
	}
	if p.PublicModelHeader, err = config.HeaderName("public_model_header", p.PublicModelHeader); err != nil {
		return nil, err
	}
	if c.StaticQuota != nil {
		if p.Static, err = c.StaticQuota.compile(p.Metric); err != nil {
			return nil, config.Wrap("static_quota: ", err, "")
		}
	}
	if !c.RateLimitHeaders.Disabled {
		h := c.RateLimitHeaders
		p.Headers = HeaderNames{
			Limit:     orDefault(h.Limit, DefaultLimitHeader),
			Remaining: orDefault(h.Remaining, DefaultRemainingHeader),
			Reset:     orDefault(h.Reset, DefaultResetHeader),
		}
		for field, n := range map[string]*string{"limit": &p.Headers.Limit, "remaining": &p.Headers.Remaining, "reset": &p.Headers.Reset} {
			if *n, err = config.HeaderName("rate_limit_headers."+field, *n); err != nil {
				return nil, err
			}
		}
	}
	switch c.FailureMode {
	case "", "closed":
	case "open":
		p.FailOpen = true
	default:
		return nil, errors.New("failure_mode " + strconv.Quote(c.FailureMode) + ": want closed or open")
	}
	switch c.OnAbort {
	case "", "charge_streamed":
	case "release":
		p.ReleaseOnAbort = true
	default:
		return nil, errors.New("on_abort " + strconv.Quote(c.OnAbort) + ": want charge_streamed or release")
	}
	if c.MaxRequestBytes < 0 || c.MaxRequestBytes > MaxMaxRequestBytes {
		return nil, errors.New("max_request_bytes " + strconv.FormatInt(c.MaxRequestBytes, 10) + " out of range [0, " + strconv.Itoa(MaxMaxRequestBytes) + "]")
	}
	if c.MaxRequestBytes > 0 {
		p.MaxRequestBytes = c.MaxRequestBytes
	}
	switch {
	case c.HoldResponseBytes == -1:
		p.HoldResponseBytes = 0
	case c.HoldResponseBytes < -1 || c.HoldResponseBytes > 1<<20:
		return nil, errors.New("hold_response_bytes " + strconv.FormatInt(c.HoldResponseBytes, 10) + " out of range [-1, " + strconv.Itoa(1<<20) + "] (Envoy's default buffer limit)")
	case c.HoldResponseBytes > 0:
		p.HoldResponseBytes = c.HoldResponseBytes
	}
	if c.MaxResponseBytes < 0 || c.MaxResponseBytes > MaxMaxRequestBytes {
		return nil, errors.New("max_response_bytes " + strconv.FormatInt(c.MaxResponseBytes, 10) + " out of range [0, " + strconv.Itoa(MaxMaxRequestBytes) + "]")
	}
	if c.MaxResponseBytes > 0 {
		p.MaxResponseBytes = c.MaxResponseBytes
	}
	if c.MaxJSONDepth < 0 || c.MaxJSONDepth > MaxJSONDepth {
		return nil, errors.New("max_json_depth " + strconv.Itoa(c.MaxJSONDepth) + " out of range [0, " + strconv.Itoa(MaxJSONDepth) + "]")
	}
	p.MaxJSONDepth = c.MaxJSONDepth
	if c.MaxMetricModels < 0 || c.MaxMetricApps < 0 {
		return nil, errors.New("max_metric_models and max_metric_apps must not be negative")
	}
	if c.MaxMetricModels > 0 {
		p.MaxMetricModels = c.MaxMetricModels
	}
	if c.MaxMetricApps > 0 {
		p.MaxMetricApps = c.MaxMetricApps
	}
	if len(c.MetricModels) > 0 {
		p.MetricModels = make(map[string]bool, len(c.MetricModels))
		for _, m := range c.MetricModels {
			p.MetricModels[m] = true
		}
	}
	if err := c.compileHardening(p); err != nil {
		return nil, err
	}
	var ok bool
	if p.Style, ok = apierror.ParseStyle(c.ErrorStyle); !ok {
		return nil, errors.New("error_style " + strconv.Quote(c.ErrorStyle) + ": want openai or apigee")
	}
	return p, nil
}

func (s *StaticQuotaConfig) compile(def usage.Metric) (*StaticQuota, error) {
	q := &StaticQuota{Product: orDefault(s.Product, DefaultStaticProduct)}
	if s.Header != "" {
		h, err := config.HeaderName("header", s.Header)
		if err != nil {
			return nil, err
		}
		q.Header = h
	}
	if len(q.Product) > 256 {
		return nil, errors.New("product is longer than 256 bytes")
	}
	var err error
	if q.Default, err = s.QuotaConfig.compile(def); err != nil {
		return nil, err
	}
	if len(s.Overrides) > 0 && q.Header == "" {
		return nil, errors.New("overrides need a header")
	}
	q.Overrides = make(map[string]QuotaSpec, len(s.Overrides))
	for v, oc := range s.Overrides {
		if v == "" || len(v) > 256 {
			return nil, errors.New("overrides: key " + strconv.Quote(v) + " must be 1 to 256 bytes")
		}
		if q.Overrides[v], err = oc.compile(q.Default.Metric); err != nil {
			return nil, config.Wrap("overrides["+strconv.Quote(v)+"]: ", err, "")
		}
	}
	return q, nil
}

func (c QuotaConfig) compile(def usage.Metric) (QuotaSpec, error) {
	if c.Limit == nil {
		return QuotaSpec{}, errors.New("limit is required")
	}
	interval := c.Interval
	if interval == 0 {
		interval = 1
	}
	spec, err := window.NewSpec(*c.Limit, interval, c.TimeUnit, orDefault(c.Window, "calendar"))
	if err != nil {
		return QuotaSpec{}, err
	}
	m := def
	if c.Counted != "" {
		if m, err = usage.ParseMetric(c.Counted); err != nil {
			return QuotaSpec{}, err
		}
	}
	return QuotaSpec{Spec: spec, Metric: m}, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
