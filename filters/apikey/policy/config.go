// Package policy is the apikey filter's logic as plain Go: configuration,
// key extraction, verify-response decoding, the cached grant format,
// authorisation and the mapping of every outcome to a client response. It
// makes no proxy-wasm calls, so all of it is unit- and fuzz-tested natively.
package policy

import (
	"bytes"
	"errors"
	"hash/fnv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/identity"
	"github.com/tollgate/tollgate/shared/keystoreconf"
	"github.com/tollgate/tollgate/shared/reqview"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config,Grant

// Modes of the filter.
const (
	// ModeVerify verifies keys and sets identity headers (the default).
	ModeVerify = "verify"
	// ModeStrip only deletes identity headers: place a second instance last
	// in the chain to keep identity away from the upstream.
	ModeStrip = "strip"
)

// Failure modes when the keystore cannot answer.
const (
	FailClosed = "closed"
	FailOpen   = "open"
)

// Key formats accepted before a keystore lookup.
const (
	// FormatTollgate accepts only well-formed "tg_" keys with a correct
	// checksum; anything else is rejected as invalid without a callout.
	FormatTollgate = "tollgate"
	// FormatAny accepts any non-empty key up to MaxKeyLen bytes.
	FormatAny = "any"
)

// Limits that keep hostile input cheap.
const (
	// MaxKeyLen is the longest key looked up; longer ones are invalid.
	MaxKeyLen = 512
	// MaxConfigLen bounds the plugin configuration.
	MaxConfigLen = 4 << 20
	// MaxCacheEntries bounds cache.max_entries.
	MaxCacheEntries = 1 << 20
)

// Duration is a time.Duration written in JSON as a Go duration string ("30s", "500ms").
type Duration time.Duration

// DecodeConfig reads "30s"-style strings; plain numbers are rejected
// because their unit would be a guess (shared/config).
func (d *Duration) DecodeConfig(v reqview.Value, path string) error {
	var c config.Duration
	if err := c.DecodeConfig(v, path); err != nil {
		return err
	}
	if c < 0 {
		return &config.FieldError{Path: path, Msg: "duration " + strconv.Quote(v.Str()) + " must not be negative"}
	}
	*d = Duration(c)
	return nil
}

// UnmarshalJSON reads the form MarshalJSON writes, for native code.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var c config.Duration
	if err := c.UnmarshalJSON(b); err != nil {
		return err
	}
	if c < 0 {
		return errors.New("duration " + string(b) + " must not be negative")
	}
	*d = Duration(c)
	return nil
}

// MarshalJSON writes the duration as a string, the form DecodeConfig reads.
func (d Duration) MarshalJSON() ([]byte, error) { return config.Duration(d).MarshalJSON() }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// KeySource is one place a key may come from: exactly one field is set.
type KeySource struct {
	// Header names a request header holding the key as its whole value.
	Header string `json:"header,omitempty"`
	// Bearer reads "Authorization: Bearer <key>".
	Bearer bool `json:"bearer,omitempty"`
	// Query names a query parameter holding the key.
	Query string `json:"query,omitempty"`
}

func (s KeySource) String() string {
	switch {
	case s.Bearer:
		return "bearer"
	case s.Query != "":
		return "query parameter " + s.Query
	default:
		return "header " + s.Header
	}
}

// KeystoreConfig says how to reach POST /v1/verify: the shared keystore
// block (cluster, authority, timeout, token) plus apikey's own path and headers.
type KeystoreConfig struct {
	keystoreconf.Config
	// Path is the verify endpoint (default /v1/verify).
	Path string `json:"path"`
	// Headers are added to every callout.
	Headers map[string]string `json:"headers"`
}

// Keystore is a validated KeystoreConfig.
type Keystore struct {
	keystoreconf.Keystore
	Path    string
	Headers map[string]string
}

// CacheConfig sizes and times the shared-data cache of verify answers.
type CacheConfig struct {
	// TTL is how long a good key's answer is reused (default 60s; "0s"
	// disables positive caching); a shorter cache_ttl_seconds from the
	// keystore or the key's expiry wins.
	TTL *Duration `json:"ttl"`
	// NegativeTTL is how long an unknown, revoked or expired key's answer is
	// reused (default 5s; "0s" disables negative caching).
	NegativeTTL *Duration `json:"negative_ttl"`
	// ErrorTTL is how long a failed callout's outcome is shared with other
	// requests for the same key (default 1s; "0s" disables).
	ErrorTTL *Duration `json:"error_ttl"`
	// MaxEntries bounds the shared cache (default 4096), and each worker's
	// decoded copy of it.
	MaxEntries int `json:"max_entries"`
	// CoalesceWait bounds how long a request waits for another worker's
	// callout for the same key before calling the keystore itself (default:
	// keystore timeout + 250ms).
	CoalesceWait Duration `json:"coalesce_wait"`
	// PollInterval is how often waiting requests look for the answer
	// (default 5ms; Envoy's timer resolution is 1ms).
	PollInterval Duration `json:"poll_interval"`
}

// CacheSettings is CacheConfig with every default applied.
type CacheSettings struct {
	TTL          time.Duration
	NegativeTTL  time.Duration
	ErrorTTL     time.Duration
	MaxEntries   int
	CoalesceWait time.Duration
	PollInterval time.Duration
}

// LocalKey is one key of local mode: its hash and what it grants.
type LocalKey struct {
	// Hash is the lower-case hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
	Hash      string    `json:"hash"`
	KeyID     string    `json:"key_id"`
	App       string    `json:"app"`
	Developer string    `json:"developer"`
	Products  []string  `json:"products"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// LocalConfig lists keys and products in the plugin configuration, for hosts
// without HTTP callouts or shared data (e.g. Google Cloud Service Extensions).
type LocalConfig struct {
	Keys          []LocalKey           `json:"keys"`
	Products      []model.Product      `json:"products"`
	OperationSets []model.OperationSet `json:"operation_sets"`
}

// Config is the apikey plugin configuration (JSON). Zero values take the
// documented defaults; unknown fields are errors.
type Config struct {
	Mode        string         `json:"mode"`
	KeySources  []KeySource    `json:"key_sources"`
	StripKey    *bool          `json:"strip_key"`
	KeyFormat   string         `json:"key_format"`
	Keystore    KeystoreConfig `json:"keystore"`
	Cache       CacheConfig    `json:"cache"`
	FailureMode string         `json:"failure_mode"`
	ErrorStyle  string         `json:"error_style"`
	// Realm is the realm of WWW-Authenticate challenges (default "tollgate").
	Realm    string           `json:"realm"`
	Identity identity.Headers `json:"identity_headers"`
	Local    *LocalConfig     `json:"local"`
}

// Policy is a validated configuration, ready for the filter.
type Policy struct {
	Mode         string
	Sources      []KeySource
	StripKey     bool
	KeyFormat    string
	Keystore     Keystore
	Cache        CacheSettings
	FailOpen     bool
	Style        apierror.Style
	Realm        string
	Identity     identity.Headers
	IdentityList []string // every identity header name, deleted from client requests
	keyHeaders   []string // every configured key header (and authorization with bearer), deleted when StripKey
	// Local is the local-mode key table by hash; nil in remote mode.
	Local map[string]*Grant
}

// ParseConfig reads and validates the plugin configuration; an empty
// configuration is remote mode with a "keystore" cluster and every default.
func ParseConfig(raw []byte) (*Policy, error) {
	if len(raw) > MaxConfigLen {
		return nil, errors.New("configuration is " + strconv.Itoa(len(raw)) + " bytes; the limit is " + strconv.Itoa(MaxConfigLen))
	}
	var c Config
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := config.Decode(raw, &c); err != nil {
			return nil, config.Wrap("configuration: ", err, "")
		}
	}
	return c.compile()
}

func (c Config) compile() (*Policy, error) {
	p := &Policy{Mode: c.Mode, StripKey: true, Realm: c.Realm, KeyFormat: c.KeyFormat}
	switch p.Mode {
	case "":
		p.Mode = ModeVerify
	case ModeVerify, ModeStrip:
	default:
		return nil, errors.New("mode " + strconv.Quote(c.Mode) + ": want " + strconv.Quote(ModeVerify) + " or " + strconv.Quote(ModeStrip))
	}
	p.Identity = c.Identity.WithDefaults()
	if err := p.Identity.Validate(); err != nil {
		return nil, config.Wrap("identity_headers: ", err, "")
	}
	p.IdentityList = p.Identity.All()
	if p.Mode == ModeStrip {
		return p, nil
	}

	if c.StripKey != nil {
		p.StripKey = *c.StripKey
	}
	if p.Realm == "" {
		p.Realm = "tollgate"
	}
	if strings.ContainsAny(p.Realm, "\"\\\r\n") {
		return nil, errors.New("realm " + strconv.Quote(p.Realm) + " must not contain quotes, backslashes or line breaks")
	}
	var ok bool
	if p.Style, ok = apierror.ParseStyle(c.ErrorStyle); !ok {
		return nil, errors.New("error_style " + strconv.Quote(c.ErrorStyle) + ": want \"openai\" or \"apigee\"")
	}
	switch c.FailureMode {
	case "", FailClosed:
	case FailOpen:
		p.FailOpen = true
	default:
		return nil, errors.New("failure_mode " + strconv.Quote(c.FailureMode) + ": want " + strconv.Quote(FailClosed) + " or " + strconv.Quote(FailOpen))
	}

	p.Sources = c.KeySources
	if len(p.Sources) == 0 {
		p.Sources = []KeySource{{Header: "x-api-key"}}
	}
	for i := range p.Sources {
		s := &p.Sources[i]
		n := 0
		if s.Header != "" {
			n++
			h, err := config.HeaderName("key_sources["+strconv.Itoa(i)+"].header", s.Header)
			if err != nil {
				return nil, err
			}
			s.Header = h
			if s.Header == "authorization" {
				return nil, errors.New("key_sources[" + strconv.Itoa(i) + "]: use {\"bearer\": true} for the Authorization header")
			}
			for _, id := range p.IdentityList {
				if id == s.Header {
					return nil, errors.New("key_sources[" + strconv.Itoa(i) + "].header " + strconv.Quote(s.Header) + " is an identity header")
				}
			}
		}
		if s.Bearer {
			n++
		}
		if s.Query != "" {
			n++
			if !validQueryName(s.Query) {
				return nil, errors.New("key_sources[" + strconv.Itoa(i) + "].query " + strconv.Quote(s.Query) + ": use letters, digits, '-', '_' or '.'")
			}
		}
		if n != 1 {
			return nil, errors.New("key_sources[" + strconv.Itoa(i) + "]: set exactly one of header, bearer or query")
		}
		switch {
		case s.Header != "":
			p.keyHeaders = append(p.keyHeaders, s.Header)
		case s.Bearer:
			p.keyHeaders = append(p.keyHeaders, "authorization")
		}
	}

	if c.Local != nil {
		if c.Keystore.Cluster != "" {
			return nil, errors.New("set either local or keystore.cluster, not both")
		}
		if p.KeyFormat == "" {
			p.KeyFormat = FormatAny
		}
		local, err := compileLocal(c.Local)
		if err != nil {
			return nil, config.Wrap("local: ", err, "")
		}
		p.Local = local
	} else {
		if err := p.compileRemote(c); err != nil {
			return nil, err
		}
	}
	switch p.KeyFormat {
	case "":
		p.KeyFormat = FormatTollgate
	case FormatTollgate, FormatAny:
	default:
		return nil, errors.New("key_format " + strconv.Quote(p.KeyFormat) + ": want " + strconv.Quote(FormatTollgate) + " or " + strconv.Quote(FormatAny))
	}
	return p, nil
}

func (p *Policy) compileRemote(c Config) error {
	ks, err := c.Keystore.Compile(time.Second, nil)
	if err != nil {
		return err
	}
	k := Keystore{Keystore: ks, Path: c.Keystore.Path, Headers: c.Keystore.Headers}
	if k.Path == "" {
		k.Path = "/v1/verify"
	}
	if !strings.HasPrefix(k.Path, "/") {
		return errors.New("keystore.path " + strconv.Quote(k.Path) + " must start with '/'")
	}
	for name := range k.Headers {
		if _, err := config.HeaderName("keystore.headers", name); err != nil {
			return err
		}
		if k.Token != "" && strings.EqualFold(name, keystoreconf.AuthorizationHeader) {
			return errors.New("keystore.headers: authorization is set by keystore.token")
		}
	}
	p.Keystore = k

	cc := c.Cache
	cs := CacheSettings{
		TTL:          60 * time.Second,
		NegativeTTL:  5 * time.Second,
		ErrorTTL:     time.Second,
		MaxEntries:   cc.MaxEntries,
		CoalesceWait: cc.CoalesceWait.D(),
		PollInterval: cc.PollInterval.D(),
	}
	if cc.TTL != nil {
		cs.TTL = cc.TTL.D()
	}
	if cc.NegativeTTL != nil {
		cs.NegativeTTL = cc.NegativeTTL.D()
	}
	if cc.ErrorTTL != nil {
		cs.ErrorTTL = cc.ErrorTTL.D()
	}
	if cs.MaxEntries == 0 {
		cs.MaxEntries = 4096
	}
	if cs.MaxEntries < 1 || cs.MaxEntries > MaxCacheEntries {
		return errors.New("cache.max_entries " + strconv.Itoa(cs.MaxEntries) + ": want 1 to " + strconv.Itoa(MaxCacheEntries))
	}
	if cs.CoalesceWait == 0 {
		cs.CoalesceWait = k.Timeout + 250*time.Millisecond
	}
	if cs.PollInterval == 0 {
		cs.PollInterval = 5 * time.Millisecond
	}
	if cs.PollInterval < time.Millisecond {
		return errors.New("cache.poll_interval " + cs.PollInterval.String() + ": want at least 1ms")
	}
	p.Cache = cs
	return nil
}

// CacheNamespace names this configuration's shared cache. Plugins of one
// vm_id share answers only when they ask the same keystore endpoint and cache
// them the same way, so a plugin never serves an answer longer, or from a
// differently sized cache, than its own settings allow.
func (p *Policy) CacheNamespace() string {
	h := fnv.New32a()
	_, _ = io.WriteString(h, p.Keystore.Cluster+"|"+p.Keystore.Authority+"|"+p.Keystore.Path+
		"|"+strconv.FormatInt(int64(p.Cache.TTL), 10)+"|"+strconv.FormatInt(int64(p.Cache.NegativeTTL), 10)+
		"|"+strconv.FormatInt(int64(p.Cache.ErrorTTL), 10)+"|"+strconv.Itoa(p.Cache.MaxEntries))
	return "tollgate.apikey.v1." + strconv.FormatUint(uint64(h.Sum32()), 16)
}

func validQueryName(n string) bool {
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
