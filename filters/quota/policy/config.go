// Package policy is the quota filter's pure logic: its configuration, which
// rule and key a request falls under, which counters it consumes, the
// keystore wire format, and the responses (429 with OpenAI-style body and
// x-ratelimit-* headers, or 503). It makes no proxy-wasm calls.
package policy

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/keystoreconf"
	"github.com/tollgate/tollgate/shared/lease"
	"github.com/tollgate/tollgate/shared/usagelog"
	"github.com/tollgate/tollgate/window"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config

// Mode is how a rule counts requests.
type Mode int

// The modes.
const (
	// Strict consumes at the keystore synchronously: one callout per request,
	// exact across every Envoy sharing the keystore.
	Strict Mode = iota
	// Local counts in this Envoy's shared data only: one view per Envoy, no
	// callouts (single-instance setups, hosts without callouts).
	Local
	// Async counts locally and syncs with the keystore on a tick: no request
	// waits, and the overshoot across Envoys is bounded (docs/quota.md).
	Async
)

var modeNames = [...]string{"strict", "local", "async"}

// String returns the configuration spelling.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return "invalid"
	}
	return modeNames[m]
}

func parseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, errors.New("mode " + strconv.Quote(s) + ": want strict, local or async")
}

// SourceKind is where a request's counted key comes from.
type SourceKind int

// The key sources.
const (
	// FromIdentity is the app the apikey filter verified (x-tollgate-app),
	// with its product and effective request quota.
	FromIdentity SourceKind = iota + 1
	// FromHeader is the value of a request header.
	FromHeader
	// FromClientIP is the downstream peer address (source.address).
	FromClientIP
)

// KeySource is one configured key source.
type KeySource struct {
	Kind   SourceKind
	Header string // FromHeader: lower-case header name
}

// Spike is a spike-arrest setting.
type Spike struct {
	Rate  window.Rate
	Burst int64
	// PerRule shares one arrest by every caller of the rule instead of one
	// per key.
	PerRule bool
}

// Keystore is where strict and async modes send /v1/quota/consume.
type Keystore struct {
	// Keystore is the shared block: cluster, authority, timeout, token.
	keystoreconf.Keystore
	Path    string
	Headers [][2]string
}

// Rule is one compiled rule: what it matches and how it limits.
type Rule struct {
	Name       string
	PathPrefix string
	Path       string
	Methods    []string
	RouteName  string

	Mode            Mode
	FailOpen        bool
	Keys            []KeySource
	Quotas          []window.Spec
	IdentityQuota   bool
	Spike           *Spike
	ResponseHeaders bool
}

// Policy is a compiled configuration.
type Policy struct {
	// Rules are tried in order; the last one is the default rule built from
	// the top-level quotas and matches every request.
	Rules      []*Rule
	Keystore   Keystore
	SyncPeriod time.Duration
	// SyncCount, when positive, pushes a counter as soon as this many
	// requests are pending, without waiting for the tick.
	SyncCount  int64
	MaxEntries int
	Style      apierror.Style
	Identity   identity.Headers
	// Namespace prefixes the shared-data keys, so filter instances with
	// incompatible settings in one vm_id never share records.
	Namespace string
	// UsesMode reports whether any rule uses each mode.
	UsesMode [3]bool
	// NeedsRouteName is set when some rule matches on Envoy's route name.
	NeedsRouteName bool
	// Usage is the usage reporting of refused requests (shared/usagelog).
	Usage usagelog.Settings
	// Lease is the budget leases' settings for strict rules (Enabled false: none).
	Lease lease.Settings
}

// Limits and defaults of the configuration.
const (
	MaxConfigLen      = 256 << 10
	DefaultTimeout    = 500 * time.Millisecond
	DefaultSyncPeriod = time.Second
	DefaultMaxEntries = 8192
	// DefaultLeaseMax bounds the requests one Envoy holds on one counter
	// unless lease.max says otherwise.
	DefaultLeaseMax = 1000
	DefaultPath     = "/v1/quota/consume"
	DefaultCluster  = "keystore"
	maxRules        = 256
	maxQuotas       = 16
)

// Config is the JSON configuration (docs/quota.md).
type Config struct {
	Mode            string           `json:"mode"`
	FailureMode     string           `json:"failure_mode"`
	KeySources      []KeySourceJSON  `json:"key_sources"`
	Quotas          []QuotaJSON      `json:"quotas"`
	IdentityQuota   *bool            `json:"identity_quota"`
	SpikeArrest     *SpikeJSON       `json:"spike_arrest"`
	ResponseHeaders *bool            `json:"response_headers"`
	Rules           []RuleJSON       `json:"rules"`
	Keystore        KeystoreJSON     `json:"keystore"`
	Async           AsyncJSON        `json:"async"`
	Local           LocalJSON        `json:"local"`
	ErrorStyle      string           `json:"error_style"`
	IdentityHeaders identity.Headers `json:"identity_headers"`
	// Usage reports the requests this filter refuses to the keystore's analytics.
	Usage usagelog.Config `json:"usage"`
	// Lease admits strict rules' requests from budget leases held in
	// shared data instead of a keystore round trip each (docs/leases.md).
	Lease lease.Config `json:"lease"`
}

// RuleJSON is one entry of "rules". Unset settings inherit the top level;
// quotas and spike_arrest never do (a rule without them limits nothing).
type RuleJSON struct {
	Name            string          `json:"name"`
	PathPrefix      string          `json:"path_prefix"`
	Path            string          `json:"path"`
	Methods         []string        `json:"methods"`
	RouteName       string          `json:"route_name"`
	Mode            string          `json:"mode"`
	FailureMode     string          `json:"failure_mode"`
	KeySources      []KeySourceJSON `json:"key_sources"`
	Quotas          []QuotaJSON     `json:"quotas"`
	IdentityQuota   *bool           `json:"identity_quota"`
	SpikeArrest     *SpikeJSON      `json:"spike_arrest"`
	ResponseHeaders *bool           `json:"response_headers"`
}

// KeySourceJSON is {"identity": true}, {"header": NAME} or {"client_ip": true}.
type KeySourceJSON struct {
	Identity bool   `json:"identity"`
	Header   string `json:"header"`
	ClientIP bool   `json:"client_ip"`
}

// QuotaJSON is a quota spec as the keystore writes it.
type QuotaJSON struct {
	Limit    *int64 `json:"limit"`
	Interval int    `json:"interval"`
	TimeUnit string `json:"timeUnit"`
	Window   string `json:"window"`
}

// SpikeJSON is a spike-arrest setting.
type SpikeJSON struct {
	Rate       string `json:"rate"`
	Burst      int64  `json:"burst"`
	Identifier string `json:"identifier"`
}

// KeystoreJSON locates the keystore's data plane.
type KeystoreJSON struct {
	keystoreconf.Config
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
}

// AsyncJSON tunes async mode.
type AsyncJSON struct {
	SyncPeriod string `json:"sync_period"`
	SyncCount  int64  `json:"sync_count"`
}

// LocalJSON sizes the shared-data table of local and async modes and spike arrest.
type LocalJSON struct {
	MaxEntries int `json:"max_entries"`
}

// ParseConfig reads and validates the plugin configuration. Every problem
// is reported with the field it concerns; nothing is applied half-way.
func ParseConfig(raw []byte) (*Policy, error) {
	if len(raw) > MaxConfigLen {
		return nil, errors.New("configuration is " + strconv.Itoa(len(raw)) + " bytes; the limit is " + strconv.Itoa(MaxConfigLen))
	}
	var c Config
	if err := config.Decode(raw, &c); err != nil {
		return nil, config.Wrap("configuration: ", err, "")
	}
	return c.compile()
}

func (c Config) compile() (*Policy, error) {
	p := &Policy{}
	var ok bool
	if p.Style, ok = apierror.ParseStyle(c.ErrorStyle); !ok {
		return nil, errors.New("error_style " + strconv.Quote(c.ErrorStyle) + ": want \"openai\" or \"apigee\"")
	}
	p.Identity = c.IdentityHeaders.WithDefaults()
	if err := p.Identity.Validate(); err != nil {
		return nil, config.Wrap("identity_headers: ", err, "")
	}
	ks, err := c.Keystore.compile()
	if err != nil {
		return nil, err
	}
	p.Keystore = ks
	if p.Usage, err = c.Usage.Compile(); err != nil {
		return nil, err
	}
	p.SyncPeriod = DefaultSyncPeriod
	if c.Async.SyncPeriod != "" {
		if p.SyncPeriod, err = parseDuration("async.sync_period", c.Async.SyncPeriod, 10*time.Millisecond, time.Minute); err != nil {
			return nil, err
		}
	}
	if c.Async.SyncCount < 0 || c.Async.SyncCount > window.MaxRateCount {
		return nil, errors.New("async.sync_count " + strconv.FormatInt(c.Async.SyncCount, 10) + ": want 0 (off) to " + strconv.Itoa(window.MaxRateCount))
	}
	p.SyncCount = c.Async.SyncCount
	if p.Lease, err = c.Lease.Compile(DefaultLeaseMax); err != nil {
		return nil, err
	}
	p.MaxEntries = DefaultMaxEntries
	if c.Local.MaxEntries != 0 {
		if c.Local.MaxEntries < 1 || c.Local.MaxEntries > 1<<20 {
			return nil, errors.New("local.max_entries " + strconv.Itoa(c.Local.MaxEntries) + ": want 1 to " + strconv.Itoa(1<<20))
		}
		p.MaxEntries = c.Local.MaxEntries
	}

	base := RuleJSON{Name: "default", Mode: c.Mode, FailureMode: c.FailureMode, KeySources: c.KeySources,
		Quotas: c.Quotas, IdentityQuota: c.IdentityQuota, SpikeArrest: c.SpikeArrest, ResponseHeaders: c.ResponseHeaders}
	if len(c.Rules) > maxRules {
		return nil, errors.New("rules: " + strconv.Itoa(len(c.Rules)) + " rules; the limit is " + strconv.Itoa(maxRules))
	}
	names := map[string]bool{"default": true}
	for i, rj := range c.Rules {
		where := "rules[" + strconv.Itoa(i) + "]"
		if rj.Name == "" {
			rj.Name = "rule" + strconv.Itoa(i)
		}
		if names[rj.Name] {
			return nil, errors.New(where + ".name " + strconv.Quote(rj.Name) + " is used twice (\"default\" is reserved)")
		}
		names[rj.Name] = true
		r, err := rj.compile(where, base)
		if err != nil {
			return nil, err
		}
		p.Rules = append(p.Rules, r)
	}
	def, err := base.compile("top level", RuleJSON{})
	if err != nil {
		return nil, err
	}
	p.Rules = append(p.Rules, def)
	for _, r := range p.Rules {
		p.UsesMode[r.Mode] = true
		if r.RouteName != "" {
			p.NeedsRouteName = true
		}
	}
	if (p.UsesMode[Strict] || p.UsesMode[Async] || p.Usage.Enabled) && p.Keystore.Cluster == "" {
		return nil, errors.New("keystore.cluster is empty, but strict and async modes and usage reporting call the keystore")
	}
	p.Namespace = "tollgate.quota.v1." + strconv.Itoa(p.MaxEntries)
	return p, nil
}

func (k KeystoreJSON) compile() (Keystore, error) {
	shared, err := k.Config.Compile(DefaultTimeout, nil)
	if err != nil {
		return Keystore{}, err
	}
	ks := Keystore{Keystore: shared, Path: k.Path}
	if ks.Path == "" {
		ks.Path = DefaultPath
	}
	if !strings.HasPrefix(ks.Path, "/") || strings.ContainsAny(ks.Path, " \r\n") {
		return ks, errors.New("keystore.path " + strconv.Quote(ks.Path) + " must start with / and hold no spaces")
	}
	for name, v := range k.Headers {
		n, err := config.HeaderName("keystore.headers", name)
		if err != nil {
			return ks, err
		}
		if n == "content-type" || n == "content-length" || (n == keystoreconf.AuthorizationHeader && ks.Token != "") {
			return ks, errors.New("keystore.headers: " + strconv.Quote(name) + " is not a header the filter may set")
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return ks, errors.New("keystore.headers[" + strconv.Quote(name) + "]: value holds a line break")
		}
		ks.Headers = append(ks.Headers, [2]string{n, v})
	}
	return ks, nil
}

func parseDuration(field, s string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New(field + " " + strconv.Quote(s) + ": want a duration such as \"500ms\" or \"2s\"")
	}
	if d < lo || d > hi {
		return 0, errors.New(field + " " + d.String() + ": want " + lo.String() + " to " + hi.String())
	}
	return d, nil
}

func ruleName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// compile builds a rule; base supplies inherited settings.
func (rj RuleJSON) compile(where string, base RuleJSON) (*Rule, error) {
	if !ruleName(rj.Name) {
		return nil, errors.New(where + ".name " + strconv.Quote(rj.Name) + ": want 1 to 64 characters from [A-Za-z0-9._-]")
	}
	r := &Rule{Name: rj.Name, PathPrefix: rj.PathPrefix, Path: rj.Path, RouteName: rj.RouteName}
	if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
		return nil, errors.New(where + ".path_prefix " + strconv.Quote(r.PathPrefix) + " must start with /")
	}
	if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
		return nil, errors.New(where + ".path " + strconv.Quote(r.Path) + " must start with /")
	}
	for _, m := range rj.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
			return nil, errors.New(where + ".methods: " + strconv.Quote(m) + " is not an upper-case method")
		}
		r.Methods = append(r.Methods, m)
	}
	pick := func(v, inherited string) string {
		if v == "" {
			return inherited
		}
		return v
	}
	var err error
	if r.Mode, err = parseMode(pick(pick(rj.Mode, base.Mode), "strict")); err != nil {
		return nil, config.Wrap(where+": ", err, "")
	}
	switch fm := pick(pick(rj.FailureMode, base.FailureMode), "open"); fm {
	case "open":
		r.FailOpen = true
	case "closed":
	default:
		return nil, errors.New(where + ".failure_mode " + strconv.Quote(fm) + ": want \"open\" or \"closed\"")
	}
	sources := rj.KeySources
	if sources == nil {
		sources = base.KeySources
	}
	if len(sources) == 0 {
		return nil, errors.New(where + ".key_sources is required: [{\"identity\": true}] behind the apikey filter, or [{\"header\": NAME}] or [{\"client_ip\": true}]")
	}
	for i, s := range sources {
		ks, err := s.compile()
		if err != nil {
			return nil, config.Wrap(where+".key_sources["+strconv.Itoa(i)+"]: ", err, "")
		}
		r.Keys = append(r.Keys, ks)
	}
	r.IdentityQuota = boolOr(rj.IdentityQuota, boolOr(base.IdentityQuota, true))
	r.ResponseHeaders = boolOr(rj.ResponseHeaders, boolOr(base.ResponseHeaders, true))
	if len(rj.Quotas) > maxQuotas {
		return nil, errors.New(where + ".quotas: " + strconv.Itoa(len(rj.Quotas)) + " quotas; the limit is " + strconv.Itoa(maxQuotas))
	}
	shapes := map[string]bool{}
	for i, q := range rj.Quotas {
		s, err := q.compile()
		if err != nil {
			return nil, config.Wrap(where+".quotas["+strconv.Itoa(i)+"]: ", err, "")
		}
		if shapes[s.Shape()] {
			return nil, errors.New(where + ".quotas[" + strconv.Itoa(i) + "]: a second quota with window " + s.Shape() + " would share its counter")
		}
		shapes[s.Shape()] = true
		r.Quotas = append(r.Quotas, s)
	}
	if rj.SpikeArrest != nil {
		sp, err := rj.SpikeArrest.compile()
		if err != nil {
			return nil, config.Wrap(where+".spike_arrest: ", err, "")
		}
		r.Spike = sp
	}
	return r, nil
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func (s KeySourceJSON) compile() (KeySource, error) {
	n := 0
	var ks KeySource
	if s.Identity {
		n, ks = n+1, KeySource{Kind: FromIdentity}
	}
	if s.Header != "" {
		h, err := config.HeaderName("header", s.Header)
		if err != nil {
			return ks, err
		}
		n, ks = n+1, KeySource{Kind: FromHeader, Header: h}
	}
	if s.ClientIP {
		n, ks = n+1, KeySource{Kind: FromClientIP}
	}
	if n != 1 {
		return ks, errors.New("want exactly one of {\"identity\": true}, {\"header\": NAME}, {\"client_ip\": true}")
	}
	return ks, nil
}

func (q QuotaJSON) compile() (window.Spec, error) {
	if q.Limit == nil {
		return window.Spec{}, errors.New("limit is required")
	}
	interval := q.Interval
	if interval == 0 {
		interval = 1
	}
	if q.TimeUnit == "" {
		return window.Spec{}, errors.New("timeUnit is required")
	}
	return window.NewSpec(*q.Limit, interval, q.TimeUnit, q.Window)
}

func (s SpikeJSON) compile() (*Spike, error) {
	r, err := window.ParseRate(s.Rate)
	if err != nil {
		return nil, err
	}
	sp := &Spike{Rate: r, Burst: s.Burst}
	if sp.Burst == 0 {
		sp.Burst = 1
	}
	if sp.Burst < 1 || sp.Burst > window.MaxRateCount {
		return nil, errors.New("burst " + strconv.FormatInt(s.Burst, 10) + ": want 1 to " + strconv.Itoa(window.MaxRateCount))
	}
	switch s.Identifier {
	case "", "key":
	case "rule":
		sp.PerRule = true
	default:
		return nil, errors.New("identifier " + strconv.Quote(s.Identifier) + ": want \"key\" or \"rule\"")
	}
	return sp, nil
}
