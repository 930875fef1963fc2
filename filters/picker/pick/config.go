// Package pick is the endpoint picker's policy: which model-server endpoint
// serves a request, from the endpoints' scraped metrics, this Envoy's
// in-flight counts, an approximate prefix-cache index and LoRA state, all
// kept in proxy-wasm shared data so that every worker of one Envoy sees the
// same state. It is plain Go behind a small Host (shared data, clock,
// random numbers); filters/picker/filter.go wires it to Envoy.
//
// By default each endpoint is scored by a predicted time to first token
// ("scoring": "latency"): the wait for a free slot, from the servers' batch
// limit and live occupancy, plus the prefill of the prompt blocks the
// endpoint does not hold; the batch limit, service time and prefill time
// are learned online (learn.go) unless configured. "scoring": "weights"
// selects llm-d's weighted scorers instead (queue 2, KV cache 2, prefix 3,
// max score with a random tie-break), with one departure where the
// reference fails: the prefix score fades as the endpoint's queue grows,
// so a hot prefix group spills to a second server instead of piling onto
// its first one.
package pick

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/filters/picker/scrape"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/keystoreconf"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config,PoolsDoc

// Defaults and limits of the configuration.
const (
	DefaultDestinationHeader = "x-gateway-destination-endpoint"
	DefaultSubsetHeader      = "x-gateway-destination-endpoint-subset"
	DefaultPoolHeader        = "x-tollgate-model"
	DefaultPriorityHeader    = "x-tollgate-priority"
	DefaultReasonHeader      = "x-tollgate-pick"
	DefaultMetricsPath       = "/metrics"
	DefaultScrapeInterval    = 50 * time.Millisecond
	DefaultStaleAfter        = 200 * time.Millisecond
	DefaultMaxBodyBytes      = 8 << 20
	MaxEndpoints             = 256
	MaxPools                 = 64
	MaxFallbacks             = 8
)

// Config is the filter's JSON configuration.
type Config struct {
	// Pools are the endpoint sets; a request's pool comes from PoolHeader,
	// then from the body's model, then DefaultPool.
	Pools []PoolConfig `json:"pools"`
	// DefaultPool serves requests no pool claims ("" answers them 503 unless there is one pool).
	DefaultPool string `json:"default_pool"`
	// PoolHeader names the pool (modelroute's routing header carries the route target).
	PoolHeader string `json:"pool_header"`
	// DestinationHeader receives the picked endpoints, primary first (the EPP contract).
	DestinationHeader string `json:"destination_header"`
	// SubsetHeader, when the request has it, restricts the pick to the listed endpoints.
	SubsetHeader string `json:"subset_header"`
	// PriorityHeader carries the request's priority (modelroute writes it).
	PriorityHeader string `json:"priority_header"`
	// Sheddable lists the priority values that may be shed under saturation
	// (default ["sheddable"]); negative integers are sheddable too.
	Sheddable []string `json:"sheddable"`
	// ReasonHeader is written on the upstream request with why the endpoint was picked ("" disables).
	ReasonHeader *string `json:"reason_header"`
	// Fallbacks is how many further endpoints follow the primary (default 2).
	Fallbacks *int `json:"fallbacks"`
	// Weights of the scorers.
	Weights *Weights `json:"weights"`
	// Scoring is "latency" (default: each endpoint's predicted TTFT, slot
	// wait plus uncached prefill, from learned or configured figures; see
	// Latency) or "weights" (llm-d's weighted scorers).
	Scoring string `json:"scoring"`
	// Latency sets the estimate of "scoring": "latency".
	Latency *LatencyConfig `json:"latency"`
	// Saturation thresholds: an endpoint with waiting ≥ Queue or KV use ≥ KV is saturated.
	Saturation *Saturation `json:"saturation"`
	// ScrapeCluster is the Envoy cluster metrics calls go through; it must
	// route by DestinationHeader (ORIGINAL_DST or override_host).
	ScrapeCluster string `json:"scrape_cluster"`
	// MetricsPath is scraped on every endpoint (default /metrics).
	MetricsPath string `json:"metrics_path"`
	// ScrapeInterval is the polling period ("10ms".."1s", default "50ms").
	ScrapeInterval config.Duration `json:"scrape_interval"`
	// StaleAfter: older metrics count as saturated (default "200ms").
	StaleAfter config.Duration `json:"stale_after"`
	// RetryAfter is the Retry-After of a shed request, in whole seconds (default "1s").
	RetryAfter config.Duration `json:"retry_after"`
	// Prefix sizes the approximate prefix index.
	Prefix *PrefixConfig `json:"prefix"`
	// Eject sets when failing endpoints are ejected.
	Eject *EjectConfig `json:"eject"`
	// MaxBodyBytes bounds the buffered request body (default 8 MiB; larger → 413).
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// PoolsSource, when set, is polled for the pools ({"pools": [...]}),
	// which then replace Pools without an Envoy restart.
	PoolsSource *PoolsSource `json:"pools_source"`
}

// PoolsSource is an HTTP endpoint serving the pools document, by default
// the keystore's GET /v1/pools: the shared keystore block (cluster, default
// "keystore"; authority; timeout, default 2s; token or token_env, the
// keystore's data-plane token) plus the path and the polling interval.
type PoolsSource struct {
	keystoreconf.Config
	// Path is the document's path (default /v1/pools).
	Path string `json:"path"`
	// Interval is the polling period ("100ms".."1h", default "1s").
	Interval config.Duration `json:"interval"`
}

// DefaultPoolsPath is the keystore's pools document.
const DefaultPoolsPath = "/v1/pools"

// PoolsFetch is a validated pools source.
type PoolsFetch struct {
	keystoreconf.Keystore
	Path     string
	Interval time.Duration
}

// PoolConfig is one named set of endpoints.
type PoolConfig struct {
	Name string `json:"name"`
	// Models are body model names served by this pool.
	Models []string `json:"models"`
	// Adapters are LoRA adapter names served by this pool (they select it
	// like Models, and get LoRA-affinity scoring even where no server has
	// them loaded yet).
	Adapters []string `json:"adapters"`
	// Endpoints are the model servers.
	Endpoints []EndpointConfig `json:"endpoints"`
}

// EndpointConfig is one model server.
type EndpointConfig struct {
	// Address is ip:port.
	Address string `json:"address"`
	// Engine picks the metric names: vllm (default), sglang, trtllm, triton.
	Engine string `json:"engine"`
	// Labels are free-form (zone, hardware); reported, not scored.
	Labels map[string]string `json:"labels"`
}

// Weights of the scorers; absent fields take llm-d's defaults. Prefix 0
// takes the prefix index out of the pick in either scoring mode: no
// request is matched against it and no pick is recorded in it.
type Weights struct {
	Queue   *float64 `json:"queue"`
	KVCache *float64 `json:"kv_cache"`
	Prefix  *float64 `json:"prefix"`
	Lora    *float64 `json:"lora"`
	Session *float64 `json:"session"`
}

// LatencyConfig is the server model of latency scoring: a request waits
// for one of MaxNumSeqs slots, a slot frees every ServiceTime/MaxNumSeqs,
// and each prompt block not in the endpoint's cache costs PrefillPerBlock.
// The three figures are learned online (learn.go) unless set here.
type LatencyConfig struct {
	// MaxNumSeqs is each server's concurrent sequences (vLLM
	// --max-num-seqs; default: learned from scrapes that show a queue).
	MaxNumSeqs int `json:"max_num_seqs"`
	// ServiceTime is a request's typical time on a server, prefill and
	// decode (default: learned from this Envoy's streams, "2s" until then).
	ServiceTime config.Duration `json:"service_time"`
	// PrefillPerBlock is the prefill time of one uncached block (default:
	// learned from the first-token times of this Envoy's event streams,
	// "8ms" until then).
	PrefillPerBlock config.Duration `json:"prefill_per_block"`
	// ColdWeight multiplies the uncached prefill against the wait while
	// the pool has room (default 1; above 1 spills later).
	ColdWeight float64 `json:"cold_weight"`
	// BusyColdWeight replaces ColdWeight as the pool fills, linearly from
	// 70% of its slots held to 100% (default 2: a cold prefill also
	// delays the requests queued behind it).
	BusyColdWeight float64 `json:"busy_cold_weight"`
}

// Scoring modes.
const (
	ScoringWeights = "weights"
	ScoringLatency = "latency"
)

// Saturation thresholds (llm-d's utilization detector: queue 5, KV 0.8).
type Saturation struct {
	Queue float64 `json:"queue"`
	KV    float64 `json:"kv"`
}

// PrefixConfig sizes the approximate prefix index.
type PrefixConfig struct {
	// BlockBytes is the bytes of prompt text per block (default 64: 16 tokens × 4 chars).
	BlockBytes int `json:"block_bytes"`
	// MaxBlocks caps the blocks hashed per request (default 256).
	MaxBlocks int `json:"max_blocks"`
	// BlocksPerEndpoint bounds the index: entries = this × endpoints (default 4096).
	BlocksPerEndpoint int `json:"blocks_per_endpoint"`
	// TTL forgets blocks not used for this long (default "10m").
	TTL config.Duration `json:"ttl"`
	// LoadCutoff is the waiting-queue length at which the prefix score has
	// faded to zero (default: twice the saturation queue threshold).
	LoadCutoff float64 `json:"load_cutoff"`
}

// EjectConfig: after Failures consecutive failures an endpoint is left out for Backoff.
type EjectConfig struct {
	Failures int             `json:"failures"`
	Backoff  config.Duration `json:"backoff"`
}

// Latency is a validated LatencyConfig; a zero MaxNumSeqs, ServiceTime or
// PrefillPerBlock is learned.
type Latency struct {
	MaxNumSeqs      int
	ServiceTime     time.Duration
	PrefillPerBlock time.Duration
	ColdWeight      float64
	BusyColdWeight  float64
}

// Endpoint is a validated endpoint.
type Endpoint struct {
	Address string
	IP      string
	Engine  scrape.Engine
	Labels  map[string]string
}

// Pool is a validated pool.
type Pool struct {
	Name      string
	Models    []string // base models and adapters
	Adapters  []string
	Endpoints []Endpoint
}

// Policy is the validated configuration.
type Policy struct {
	Pools             []Pool
	DefaultPool       string
	PoolHeader        string
	DestinationHeader string
	SubsetHeader      string
	PriorityHeader    string
	ReasonHeader      string
	Sheddable         map[string]bool
	Fallbacks         int
	WQueue, WKV       float64
	WPrefix, WLora    float64
	WSession          float64
	SatQueue, SatKV   float64
	ScrapeCluster     string
	MetricsPath       string
	ScrapeInterval    time.Duration
	StaleAfter        time.Duration
	RetryAfter        int
	BlockBytes        int
	MaxBlocks         int
	IndexEntries      int
	PrefixTTL         time.Duration
	LoadCutoff        float64
	// Latency is set with "scoring": "latency", the default (nil: "weights", llm-d's weighted scorers).
	Latency       *Latency
	EjectFailures int
	EjectBackoff  time.Duration
	MaxBodyBytes  int64
	PoolsSource   *PoolsFetch
	endpoints     []Endpoint // every distinct endpoint of every pool
}

// Endpoints lists every distinct endpoint of every pool (what the poller scrapes).
func (p *Policy) Endpoints() []Endpoint { return p.endpoints }

// Parse validates a JSON configuration.
func Parse(raw []byte) (*Policy, error) {
	var c Config
	if err := config.Decode(raw, &c); err != nil {
		return nil, config.Wrap("picker config: ", err, "")
	}
	return build(c)
}

func build(c Config) (*Policy, error) {
	p := &Policy{
		DefaultPool:       c.DefaultPool,
		PoolHeader:        orDefault(c.PoolHeader, DefaultPoolHeader),
		DestinationHeader: orDefault(c.DestinationHeader, DefaultDestinationHeader),
		SubsetHeader:      orDefault(c.SubsetHeader, DefaultSubsetHeader),
		PriorityHeader:    orDefault(c.PriorityHeader, DefaultPriorityHeader),
		ReasonHeader:      DefaultReasonHeader,
		Sheddable:         map[string]bool{},
		Fallbacks:         2,
		WQueue:            2, WKV: 2, WPrefix: 3, WLora: 2, WSession: 0,
		SatQueue: 5, SatKV: 0.8,
		ScrapeCluster:  c.ScrapeCluster,
		MetricsPath:    orDefault(c.MetricsPath, DefaultMetricsPath),
		ScrapeInterval: DefaultScrapeInterval,
		StaleAfter:     DefaultStaleAfter,
		RetryAfter:     1,
		BlockBytes:     64, MaxBlocks: 256,
		PrefixTTL:     10 * time.Minute,
		EjectFailures: 3, EjectBackoff: 5 * time.Second,
		MaxBodyBytes: DefaultMaxBodyBytes,
	}
	for _, h := range []struct {
		field string
		v     *string
	}{{"pool_header", &p.PoolHeader}, {"destination_header", &p.DestinationHeader}, {"subset_header", &p.SubsetHeader}, {"priority_header", &p.PriorityHeader}} {
		v, err := config.HeaderName(h.field, *h.v)
		if err != nil {
			return nil, config.Wrap("picker config: ", err, "")
		}
		*h.v = v
	}
	if c.ReasonHeader != nil {
		p.ReasonHeader = ""
		if *c.ReasonHeader != "" {
			v, err := config.HeaderName("reason_header", *c.ReasonHeader)
			if err != nil {
				return nil, config.Wrap("picker config: ", err, "")
			}
			p.ReasonHeader = v
		}
	}
	if p.ScrapeCluster == "" {
		return nil, errors.New("picker config: scrape_cluster is required (the cluster metrics calls go through)")
	}
	if !strings.HasPrefix(p.MetricsPath, "/") {
		return nil, errors.New("picker config: metrics_path " + strconv.Quote(p.MetricsPath) + " must start with /")
	}
	sheddable := c.Sheddable
	if sheddable == nil {
		sheddable = []string{"sheddable"}
	}
	for _, s := range sheddable {
		p.Sheddable[strings.ToLower(s)] = true
	}
	if c.Fallbacks != nil {
		if *c.Fallbacks < 0 || *c.Fallbacks > MaxFallbacks {
			return nil, errors.New("picker config: fallbacks " + strconv.Itoa(*c.Fallbacks) + " out of range 0.." + strconv.Itoa(MaxFallbacks))
		}
		p.Fallbacks = *c.Fallbacks
	}
	if w := c.Weights; w != nil {
		for _, f := range []struct {
			name string
			in   *float64
			out  *float64
		}{{"queue", w.Queue, &p.WQueue}, {"kv_cache", w.KVCache, &p.WKV}, {"prefix", w.Prefix, &p.WPrefix}, {"lora", w.Lora, &p.WLora}, {"session", w.Session, &p.WSession}} {
			if f.in == nil {
				continue
			}
			if *f.in < 0 || *f.in > 100 {
				return nil, errors.New("picker config: weights." + f.name + " " + strconv.FormatFloat(float64(*f.in), 'g', -1, 64) + " out of range 0..100")
			}
			*f.out = *f.in
		}
	}
	if s := c.Saturation; s != nil {
		if s.Queue <= 0 || s.KV <= 0 || s.KV > 1 {
			return nil, errors.New("picker config: saturation needs queue > 0 and 0 < kv ≤ 1")
		}
		p.SatQueue, p.SatKV = s.Queue, s.KV
	}
	var err error
	if p.ScrapeInterval, err = c.ScrapeInterval.Within("picker config: scrape_interval", p.ScrapeInterval, 10*time.Millisecond, time.Second); err != nil {
		return nil, err
	}
	if p.StaleAfter, err = c.StaleAfter.Within("picker config: stale_after", p.StaleAfter, time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	ra, err := c.RetryAfter.Within("picker config: retry_after", time.Duration(p.RetryAfter)*time.Second, time.Second, time.Hour)
	if err != nil {
		return nil, err
	}
	if ra%time.Second != 0 {
		return nil, errors.New("picker config: retry_after " + ra.String() + ": want whole seconds (Retry-After has no fraction)")
	}
	p.RetryAfter = int(ra / time.Second)
	p.LoadCutoff = 2 * p.SatQueue
	perEndpoint := 4096
	if px := c.Prefix; px != nil {
		if px.BlockBytes != 0 {
			if px.BlockBytes < 8 || px.BlockBytes > 4096 {
				return nil, errors.New("picker config: prefix.block_bytes " + strconv.Itoa(px.BlockBytes) + " out of range 8..4096")
			}
			p.BlockBytes = px.BlockBytes
		}
		if px.MaxBlocks != 0 {
			if px.MaxBlocks < 1 || px.MaxBlocks > 4096 {
				return nil, errors.New("picker config: prefix.max_blocks " + strconv.Itoa(px.MaxBlocks) + " out of range 1..4096")
			}
			p.MaxBlocks = px.MaxBlocks
		}
		if px.BlocksPerEndpoint != 0 {
			if px.BlocksPerEndpoint < 16 || px.BlocksPerEndpoint > 65536 {
				return nil, errors.New("picker config: prefix.blocks_per_endpoint " + strconv.Itoa(px.BlocksPerEndpoint) + " out of range 16..65536")
			}
			perEndpoint = px.BlocksPerEndpoint
		}
		if p.PrefixTTL, err = px.TTL.Within("picker config: prefix.ttl", p.PrefixTTL, time.Second, 24*time.Hour); err != nil {
			return nil, err
		}
		if px.LoadCutoff != 0 {
			if px.LoadCutoff < 0 {
				return nil, errors.New("picker config: prefix.load_cutoff must be positive")
			}
			p.LoadCutoff = px.LoadCutoff
		}
	}
	if p.Latency, err = buildLatency(c.Scoring, c.Latency); err != nil {
		return nil, err
	}
	if e := c.Eject; e != nil {
		if e.Failures < 1 || e.Failures > 100 {
			return nil, errors.New("picker config: eject.failures " + strconv.Itoa(e.Failures) + " out of range 1..100")
		}
		if e.Backoff == 0 {
			return nil, errors.New("picker config: eject.backoff is required (such as \"5s\")")
		}
		backoff, err := e.Backoff.Within("picker config: eject.backoff", 0, time.Millisecond, 10*time.Minute)
		if err != nil {
			return nil, err
		}
		p.EjectFailures, p.EjectBackoff = e.Failures, backoff
	}
	if c.MaxBodyBytes != 0 {
		if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 64<<20 {
			return nil, errors.New("picker config: max_body_bytes " + strconv.FormatInt(c.MaxBodyBytes, 10) + " out of range 1024.." + strconv.Itoa(64<<20))
		}
		p.MaxBodyBytes = c.MaxBodyBytes
	}
	if c.PoolsSource != nil {
		ps := c.PoolsSource
		path := orDefault(ps.Path, DefaultPoolsPath)
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "\x00\r\n") {
			return nil, errors.New("picker config: pools_source.path must start with /")
		}
		iv, err := ps.Interval.Within("picker config: pools_source.interval", time.Second, 100*time.Millisecond, time.Hour)
		if err != nil {
			return nil, err
		}
		ks, err := ps.Config.Compile(2*time.Second, nil)
		if err != nil {
			return nil, config.Wrap("picker config: pools_source: ", err, "")
		}
		p.PoolsSource = &PoolsFetch{Keystore: ks, Path: path, Interval: iv}
	}
	if len(c.Pools) == 0 && p.PoolsSource == nil {
		return nil, errors.New("picker config: pools needs 1.." + strconv.Itoa(MaxPools) + " pools (or a pools_source)")
	}
	pools, eps, err := buildPools(c.Pools)
	if err != nil {
		return nil, config.Wrap("picker config: ", err, "")
	}
	p.Pools, p.endpoints = pools, eps
	if p.DefaultPool != "" && p.PoolsSource == nil && p.named(p.DefaultPool) == nil {
		return nil, errors.New("picker config: default_pool " + strconv.Quote(p.DefaultPool) + " is not a pool")
	}
	p.IndexEntries = min(perEndpoint*max(len(p.endpoints), MinIndexedEndpoints), 1<<20)
	return p, nil
}

// buildLatency validates the scoring mode and its latency model.
func buildLatency(mode string, c *LatencyConfig) (*Latency, error) {
	switch mode {
	case ScoringWeights:
		if c != nil {
			return nil, errors.New(`picker config: latency needs "scoring": "latency" (the default), not "weights"`)
		}
		return nil, nil
	case "", ScoringLatency:
	default:
		return nil, errors.New("picker config: scoring " + strconv.Quote(mode) + ": want " + strconv.Quote(ScoringWeights) + " or " + strconv.Quote(ScoringLatency))
	}
	l := &Latency{ColdWeight: 1, BusyColdWeight: 2}
	if c == nil {
		return l, nil
	}
	if c.MaxNumSeqs != 0 {
		if c.MaxNumSeqs < 1 || c.MaxNumSeqs > 65536 {
			return nil, errors.New("picker config: latency.max_num_seqs " + strconv.Itoa(c.MaxNumSeqs) + " out of range 1..65536")
		}
		l.MaxNumSeqs = c.MaxNumSeqs
	}
	var err error
	if c.ServiceTime != 0 {
		if l.ServiceTime, err = c.ServiceTime.Within("picker config: latency.service_time", 0, time.Millisecond, time.Hour); err != nil {
			return nil, err
		}
	}
	if c.PrefillPerBlock != 0 {
		if l.PrefillPerBlock, err = c.PrefillPerBlock.Within("picker config: latency.prefill_per_block", 0, time.Microsecond, time.Minute); err != nil {
			return nil, err
		}
	}
	if c.ColdWeight != 0 {
		if c.ColdWeight < 0 || c.ColdWeight > 100 {
			return nil, errors.New("picker config: latency.cold_weight " + strconv.FormatFloat(float64(c.ColdWeight), 'g', -1, 64) + " out of range 0..100")
		}
		l.ColdWeight = c.ColdWeight
	}
	if c.BusyColdWeight != 0 {
		if c.BusyColdWeight < 0 || c.BusyColdWeight > 100 {
			return nil, errors.New("picker config: latency.busy_cold_weight " + strconv.FormatFloat(float64(c.BusyColdWeight), 'g', -1, 64) + " out of range 0..100")
		}
		l.BusyColdWeight = c.BusyColdWeight
	}
	return l, nil
}

// MinIndexedEndpoints sizes the prefix index for pools that grow later
// (pools_source): the index cannot be resized once created.
const MinIndexedEndpoints = 8

// PoolsDoc is what a pools source serves: the pools, as in the configuration.
type PoolsDoc struct {
	Pools []PoolConfig `json:"pools"`
}

// SetPools replaces the pools with a pools source's document; on error the
// current pools stay.
func (p *Policy) SetPools(raw []byte) error {
	var doc PoolsDoc
	if err := config.Decode(raw, &doc); err != nil {
		return config.Wrap("pools: ", err, "")
	}
	pools, eps, err := buildPools(doc.Pools)
	if err != nil {
		return config.Wrap("pools: ", err, "")
	}
	p.Pools, p.endpoints = pools, eps
	return nil
}

// buildPools validates pool declarations.
func buildPools(pcs []PoolConfig) ([]Pool, []Endpoint, error) {
	if len(pcs) > MaxPools {
		return nil, nil, errors.New("pools needs at most " + strconv.Itoa(MaxPools) + " pools")
	}
	var out []Pool
	var all []Endpoint
	seen := map[string]bool{}
	models := map[string]string{}
	addrs := map[string]Endpoint{}
	for i, pc := range pcs {
		if pc.Name == "" || seen[pc.Name] {
			return nil, nil, errors.New("pools[" + strconv.Itoa(i) + "] needs a unique name")
		}
		seen[pc.Name] = true
		if len(pc.Endpoints) == 0 {
			return nil, nil, errors.New("pool " + strconv.Quote(pc.Name) + " has no endpoints")
		}
		pool := Pool{Name: pc.Name, Models: append(slices.Clone(pc.Models), pc.Adapters...), Adapters: pc.Adapters}
		for _, m := range pool.Models {
			if other, ok := models[m]; ok {
				return nil, nil, errors.New("model " + strconv.Quote(m) + " is in pools " + strconv.Quote(other) + " and " + strconv.Quote(pc.Name))
			}
			models[m] = pc.Name
		}
		inPool := map[string]bool{}
		for j, ec := range pc.Endpoints {
			ep, err := endpoint(ec)
			if err != nil {
				return nil, nil, config.Wrap("pool "+strconv.Quote(pc.Name)+" endpoints["+strconv.Itoa(j)+"]: ", err, "")
			}
			if inPool[ep.Address] {
				return nil, nil, errors.New("pool " + strconv.Quote(pc.Name) + " lists " + ep.Address + " twice")
			}
			inPool[ep.Address] = true
			if prev, ok := addrs[ep.Address]; ok && prev.Engine != ep.Engine {
				return nil, nil, errors.New(ep.Address + " has two engines")
			} else if !ok {
				addrs[ep.Address] = ep
				all = append(all, ep)
			}
			pool.Endpoints = append(pool.Endpoints, ep)
		}
		out = append(out, pool)
	}
	if len(all) > MaxEndpoints {
		return nil, nil, errors.New(strconv.Itoa(len(all)) + " endpoints, at most " + strconv.Itoa(MaxEndpoints))
	}
	return out, all, nil
}

// endpoint validates one endpoint.
func endpoint(ec EndpointConfig) (Endpoint, error) {
	ap, err := netip.ParseAddrPort(ec.Address)
	if err != nil || ap.Port() == 0 {
		return Endpoint{}, errors.New("address " + strconv.Quote(ec.Address) + ": want ip:port")
	}
	eng, err := scrape.ParseEngine(ec.Engine)
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{Address: ap.String(), IP: ap.Addr().String(), Engine: eng, Labels: ec.Labels}, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
