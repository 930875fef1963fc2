// Package picker is the endpoint picker: it chooses the model-server
// endpoint of each inference request from the servers' own metrics, this
// Envoy's in-flight counts, a shared prefix-cache index and LoRA state, and
// hands the choice to Envoy the way a Gateway API Inference Extension
// endpoint picker (EPP) does: the x-gateway-destination-endpoint header
// with the primary and its fallbacks, 503 when nothing is eligible, 429
// when a sheddable request meets a saturated pool. The policy lives in
// filters/picker/pick, the metrics parser in filters/picker/scrape; this
// file only wires them to the proxy-wasm callbacks.
//
// One VM per Envoy wins the poller lease in shared data and scrapes every
// endpoint's /metrics through scrape_cluster on each tick.
//
// The PluginConfig must set allow_on_headers_stop_iteration: true, or Envoy
// never delivers the body callbacks this filter pauses for.
package picker

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/filters/picker/pick"
	"github.com/tollgate/tollgate/filters/picker/scrape"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/proxywasm"
	"github.com/tollgate/tollgate/shared/reqview"
	"github.com/tollgate/tollgate/shared/table"
	"github.com/tollgate/tollgate/shared/table/shareddata"
)

// RootID is the root_id a module holding several filters registers New under.
const RootID = "picker"

// New creates the filter's root context, for proxywasm.SetPluginFactory or
// proxywasm.RegisterPlugin; wasm/ is the standalone module.
func New(uint32) proxywasm.PluginContext { return &plugin{} }

// host is the policy's view of the Wasm environment.
type host struct{}

func (host) Store() table.Store { return shareddata.Store{} }
func (host) NowMs() int64       { return time.Now().UnixMilli() }
func (host) Intn(n int) int     { return rand.IntN(n) }

// plugin is one configured instance of the filter in one VM.
type plugin struct {
	proxywasm.DefaultPluginContext
	pol     *pick.Policy
	idx     *pick.Index
	id      uint64          // this VM's poller identity
	pending map[string]bool // endpoints with a scrape in flight
	// Pools from a pools source: the shared document's version this VM
	// runs with, and when the leader last asked the source.
	poolsVersion uint32
	poolsAsked   int64
	poolsPending bool
	metrics      *proxywasm.Metrics
}

// OnPluginStart parses the configuration, creates the shared index and
// starts the poller tick.
func (p *plugin) OnPluginStart(config []byte) error {
	pol, err := pick.Parse(config)
	if err != nil {
		return err
	}
	idx, err := pol.NewIndex(shareddata.Store{})
	if err != nil {
		return err
	}
	if err := idx.Init(); err != nil {
		return err
	}
	if err := pick.InitLeader(shareddata.Store{}); err != nil {
		return err
	}
	p.pol, p.idx, p.id = pol, idx, rand.Uint64()|1
	p.pending = map[string]bool{}
	// Defined up front so that every endpoint and reason shows at zero;
	// best effort, like every metric here.
	p.metrics = proxywasm.NewMetrics("picker")
	var names []string
	for _, e := range pol.Endpoints() {
		names = append(names, metricName("picks", e.Address), metricName("scrape_errors", e.Address))
	}
	for _, r := range []string{pick.ReasonShed, pick.ReasonNoPool, pick.ReasonNoEligible, pick.ReasonFailOpen, pick.ReasonEjectedOnly} {
		names = append(names, pick.DecisionMetric(r))
	}
	_ = p.metrics.Define(names...)
	if err := proxywasm.SetTickPeriod(pol.ScrapeInterval); err != nil {
		return err
	}
	proxywasm.Log(proxywasm.LogLevelInfo, "picker: "+strconv.Itoa(len(pol.Pools))+" pool(s), "+strconv.Itoa(len(pol.Endpoints()))+" endpoint(s), scraping every "+pol.ScrapeInterval.String())
	return nil
}

// metricName is a per-endpoint stat name.
func metricName(kind, addr string) string { return pick.EndpointMetric(kind, addr) }

// inc adds to a counter; metrics never fail a request.
func (p *plugin) inc(name string, delta uint64) { p.metrics.Add(name, delta) }

// gauge sets a gauge.
func (p *plugin) gauge(name string, v uint64) { p.metrics.GaugeSet(name, v) }

// OnTick renews the poller lease and, while this VM holds it, scrapes
// every endpoint that has no scrape in flight.
func (p *plugin) OnTick() {
	st := shareddata.Store{}
	now := time.Now().UnixMilli()
	p.syncPools(st)
	lease := 3 * p.pol.ScrapeInterval.Milliseconds()
	if ok, err := pick.Lead(st, p.id, now, lease); err != nil || !ok {
		return
	}
	p.askPools(now)
	timeout := max(4*p.pol.ScrapeInterval, 250*time.Millisecond)
	for _, e := range p.pol.Endpoints() {
		if p.pending[e.Address] {
			continue
		}
		headers := [][2]string{
			{":method", "GET"}, {":path", p.pol.MetricsPath}, {":authority", e.Address},
			{p.pol.DestinationHeader, e.Address}, {"accept", "text/plain"},
		}
		_, err := proxywasm.DispatchHttpCall(p.pol.ScrapeCluster, headers, nil, nil, timeout, p.scraped(e))
		if err != nil {
			p.failedScrape(e, err.Error())
			continue
		}
		p.pending[e.Address] = true
	}
}

// syncPools adopts the pools document the leader shared, when it changed.
func (p *plugin) syncPools(st shareddata.Store) {
	if p.pol.PoolsSource == nil {
		return
	}
	raw, version, found := pick.ReadPools(st)
	if !found || version == p.poolsVersion {
		return
	}
	p.poolsVersion = version
	if err := p.pol.SetPools(raw); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "picker: shared pools refused: "+err.Error())
		return
	}
	proxywasm.Log(proxywasm.LogLevelInfo, "picker: pools updated: "+strconv.Itoa(len(p.pol.Pools))+" pool(s), "+strconv.Itoa(len(p.pol.Endpoints()))+" endpoint(s)")
}

// askPools polls the pools source (leader only); a valid answer is shared
// with every worker through shared data.
func (p *plugin) askPools(now int64) {
	src := p.pol.PoolsSource
	if src == nil || p.poolsPending || now-p.poolsAsked < src.Interval.Milliseconds() {
		return
	}
	p.poolsAsked = now
	headers := src.AppendAuth([][2]string{{":method", "GET"}, {":path", src.Path}, {":authority", src.Authority}, {"accept", "application/json"}})
	_, err := proxywasm.DispatchHttpCall(src.Cluster, headers, nil, nil, src.Timeout, func(resp *proxywasm.CallResponse) {
		p.poolsPending = false
		if resp.Failed || resp.Status != 200 {
			p.inc(pick.DecisionMetric("pools_source_errors"), 1)
			proxywasm.Log(proxywasm.LogLevelWarn, "picker: pools source answered "+strconv.Itoa(resp.Status))
			return
		}
		if err := p.pol.SetPools(resp.Body); err != nil {
			p.inc(pick.DecisionMetric("pools_source_errors"), 1)
			proxywasm.Log(proxywasm.LogLevelWarn, "picker: pools source: "+err.Error())
			return
		}
		if _, err := pick.StorePools(shareddata.Store{}, resp.Body); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "picker: share pools: "+err.Error())
		}
	})
	if err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "picker: pools source: "+err.Error())
		return
	}
	p.poolsPending = true
}

// scraped handles one endpoint's metrics answer.
func (p *plugin) scraped(e pick.Endpoint) proxywasm.CallResponseHandler {
	return func(resp *proxywasm.CallResponse) {
		delete(p.pending, e.Address)
		if resp.Failed || resp.Status != 200 {
			p.failedScrape(e, "status "+strconv.Itoa(resp.Status))
			return
		}
		snap, err := scrape.Parse(e.Engine, resp.Body)
		if err != nil && !errors.Is(err, scrape.ErrTruncated) {
			p.failedScrape(e, err.Error())
			return
		}
		st := shareddata.Store{}
		if err := pick.StoreScrape(st, e.Address, snap, time.Now().UnixMilli()); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "picker: store metrics of "+e.Address+": "+err.Error())
		}
		p.gauge(metricName("waiting", e.Address), uint64(snap.Waiting))
		p.gauge(metricName("running", e.Address), uint64(snap.Running))
		p.gauge(metricName("kv_cache_permille", e.Address), uint64(snap.KVUsage*1000))
		p.gauge(metricName("in_flight", e.Address), uint64(pick.InFlight(st, e.Address)))
		p.gauge(metricName("saturation_permille", e.Address), uint64(min(p.pol.Saturation(pick.Metrics{Snapshot: snap}), 1000)*1000))
		p.gauge(metricName("scrape_age_ms", e.Address), 0)
		if l := p.pol.Latency; l != nil {
			if l.MaxNumSeqs == 0 {
				if err := pick.LearnScrape(st, e.Address, snap, time.Now().UnixMilli()); err != nil {
					proxywasm.Log(proxywasm.LogLevelWarn, "picker: learn from the metrics of "+e.Address+": "+err.Error())
				}
			}
			ln := pick.ReadLearned(st, e.Address)
			p.gauge(metricName("learned_max_num_seqs", e.Address), uint64(ln.Seqs))
			p.gauge(metricName("learned_service_time_ms", e.Address), uint64(ln.ServiceTime().Milliseconds()))
			p.gauge(metricName("learned_prefill_per_block_us", e.Address), uint64(ln.PrefillPerBlock().Microseconds()))
		}
	}
}

func (p *plugin) failedScrape(e pick.Endpoint, why string) {
	p.inc(metricName("scrape_errors", e.Address), 1)
	st := shareddata.Store{}
	n, _ := pick.StoreScrapeFailure(st, e.Address)
	if m := pick.ReadMetrics(st, e.Address); m.AtMs > 0 {
		p.gauge(metricName("scrape_age_ms", e.Address), uint64(max(0, time.Now().UnixMilli()-m.AtMs)))
	}
	p.gauge(metricName("saturation_permille", e.Address), 1000) // no fresh metrics: saturated
	if n == 1 || n%100 == 0 {
		proxywasm.Log(proxywasm.LogLevelWarn, "picker: scrape "+e.Address+" failed ("+strconv.Itoa(n)+" in a row): "+why)
	}
}

// NewHttpContext starts the state of one stream.
func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{p: p} }

// stream follows one request from the pick to its end.
type stream struct {
	proxywasm.DefaultHttpContext
	p       *plugin
	body    proxywasm.BodyGatherer
	primary string // the picked endpoint, "" until a pick
	// What latency scoring learns from this stream (learn is false when
	// it learns nothing: weights scoring, configured figures, or a pick
	// made while the endpoint had no free slot).
	learn    bool
	pickedAt int64 // Unix ns (a time.Time would link its formatting code)
	uncached float64
	blocks   int
	ok, sse  bool          // a 2xx response; an event stream
	ttft     time.Duration // pick to the first response body bytes of an event stream
}

func header(name string) (string, bool) {
	v, err := proxywasm.RequestHeaders.Get(name)
	return v, err == nil
}

func (s *stream) OnRequestHeaders(_ int, endOfStream bool) proxywasm.Action {
	pol := s.p.pol
	// The destination is the picker's to set, never the client's.
	_ = proxywasm.RequestHeaders.Remove(pol.DestinationHeader)
	if pol.ReasonHeader != "" {
		_ = proxywasm.RequestHeaders.Remove(pol.ReasonHeader)
	}
	ct, _ := header("content-type")
	if endOfStream || !strings.Contains(strings.ToLower(ct), "json") {
		return s.decide("", nil)
	}
	s.body.Limit = pol.MaxBodyBytes
	return s.body.Start()
}

func (s *stream) OnRequestBody(bodySize int, endOfStream bool) proxywasm.Action {
	return s.body.OnBody(bodySize, endOfStream, s)
}

// OnRequestTrailers finishes a body that ended with trailers.
func (s *stream) OnRequestTrailers(int) proxywasm.Action { return s.body.OnTrailers(s) }

// BodyTooLarge answers 413 before the whole body is read.
func (s *stream) BodyTooLarge() proxywasm.Action {
	return s.reject(apierror.New(413, "request_too_large", "the request body exceeds "+strconv.FormatInt(s.p.pol.MaxBodyBytes, 10)+" bytes"), "too_large")
}

// BodyUnreadable answers 500 when the host cannot return the body.
func (s *stream) BodyUnreadable(err error) proxywasm.Action {
	proxywasm.Log(proxywasm.LogLevelError, "picker: read request body: "+err.Error())
	return s.reject(apierror.New(500, "internal_error", "the gateway could not read the request"), "internal")
}

// BodyComplete reads the model and prompt through the canonical request
// view and picks.
func (s *stream) BodyComplete(body []byte) proxywasm.Action {
	if len(body) == 0 {
		return s.decide("", nil)
	}
	req, err := proxywasm.RequestMemo().ParseRequest(body, reqview.Limits{MaxBytes: int(s.p.pol.MaxBodyBytes)})
	if err != nil {
		var re *reqview.Error
		if errors.As(err, &re) {
			return s.reject(re.API(), "invalid_body")
		}
		return s.reject(apierror.New(400, "invalid_json", err.Error()), "invalid_body")
	}
	pol := s.p.pol
	texts := func(yield func(string) bool) {
		req.Texts(func(_ string, v reqview.Value) bool { return yield(v.View()) })
	}
	return s.decide(req.Model, pick.Blocks(req.Model, texts, pol.BlockBytes, pol.MaxBlocks))
}

// decide picks and applies the decision.
func (s *stream) decide(model string, blocks []uint64) proxywasm.Action {
	pol := s.p.pol
	r := pick.Request{Model: model, Blocks: blocks}
	r.PoolHint, _ = header(pol.PoolHeader)
	r.Priority, _ = header(pol.PriorityHeader)
	if pol.WSession > 0 {
		if v, ok := header(pick.SessionHeader); ok {
			r.Session = pick.SessionEndpoint(v)
		}
	}
	if v, ok := header(pol.SubsetHeader); ok {
		r.HasSubset = true
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				r.Subset = append(r.Subset, e)
			}
		}
	}
	d := pol.Pick(host{}, s.p.idx, r)
	if d.Status != 0 {
		var extra [][2]string
		if d.Status == 429 {
			extra = append(extra, [2]string{"retry-after", strconv.Itoa(d.RetryAfter)})
		}
		s.p.inc(pick.DecisionMetric(d.Reason), 1)
		_ = proxywasm.SetProperty([]string{"tollgate.picker.pick"}, []byte("- "+d.Reason))
		if err := proxywasm.SendError(d.Err, apierror.StyleOpenAI, extra...); err != nil {
			proxywasm.Log(proxywasm.LogLevelError, "picker: send "+strconv.Itoa(d.Status)+": "+err.Error())
		}
		return proxywasm.ActionPause
	}
	if err := proxywasm.RequestHeaders.Replace(pol.DestinationHeader, d.Header()); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "picker: set "+pol.DestinationHeader+": "+err.Error())
		return s.reject(apierror.New(500, "internal_error", "the gateway could not route this request"), "internal")
	}
	if pol.ReasonHeader != "" {
		_ = proxywasm.RequestHeaders.Replace(pol.ReasonHeader, d.Reason)
	}
	if err := pol.Commit(host{}, s.p.idx, &d); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "picker: record pick: "+err.Error())
	}
	s.primary = d.Endpoints[0]
	if l := pol.Latency; l != nil && (l.ServiceTime == 0 || l.PrefillPerBlock == 0) && d.Primary.Ahead == 0 {
		s.learn, s.pickedAt, s.uncached, s.blocks = true, time.Now().UnixNano(), d.Primary.Uncached, len(blocks)
	}
	s.p.inc(metricName("picks", s.primary), 1)
	if d.Primary.Parts.Prefix > 0 {
		s.p.inc(metricName("prefix_picks", s.primary), 1)
	}
	pt := d.Primary.Parts
	for i, v := range []float64{pt.Queue, pt.KV, pt.Prefix, pt.Lora, d.Primary.Score} {
		s.p.metrics.Record(pick.ScoreMetric(pick.ScoreParts[i]), uint64(v*100))
	}
	if d.Reason != pick.ReasonScored && d.Reason != pick.ReasonSingleEndpoint {
		s.p.inc(pick.DecisionMetric(d.Reason), 1)
	}
	_ = proxywasm.SetProperty([]string{"tollgate.picker.pick"}, []byte(s.primary+" "+d.Reason))
	return proxywasm.ActionContinue
}

func (s *stream) reject(e *apierror.Error, why string) proxywasm.Action {
	_ = proxywasm.SetProperty([]string{"tollgate.picker.pick"}, []byte("- "+why))
	if err := proxywasm.SendError(e, apierror.StyleOpenAI); err != nil {
		proxywasm.Log(proxywasm.LogLevelError, "picker: send "+strconv.Itoa(e.Status)+": "+err.Error())
	}
	return proxywasm.ActionPause
}

// OnResponseHeaders hands the client a session token naming the endpoint
// that served, when session affinity is weighted in.
func (s *stream) OnResponseHeaders(int, bool) proxywasm.Action {
	if s.learn {
		status, _ := proxywasm.ResponseHeaders.Get(":status")
		ct, _ := proxywasm.ResponseHeaders.Get("content-type")
		s.ok = len(status) == 3 && status[0] == '2'
		s.sse = s.ok && strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/event-stream")
	}
	if s.primary != "" && s.p.pol.WSession > 0 {
		served := s.primary
		if up, err := proxywasm.GetProperty("upstream", "address"); err == nil && len(up) > 0 {
			served = string(up)
		}
		_ = proxywasm.ResponseHeaders.Replace(pick.SessionHeader, pick.SessionToken(served))
	}
	return proxywasm.ActionContinue
}

// OnResponseBody notes when the first bytes of an event stream arrive:
// the first token, for learning the prefill time.
func (s *stream) OnResponseBody(bodySize int, _ bool) proxywasm.Action {
	if s.sse && s.ttft == 0 && bodySize > 0 {
		s.ttft = max(time.Duration(time.Now().UnixNano()-s.pickedAt), 1)
	}
	return proxywasm.ActionContinue
}

// OnLog ends the pick: the in-flight count falls, and a primary that
// failed before answering (Envoy's retry went elsewhere, or nothing
// answered) counts towards its ejection.
func (s *stream) OnLog() {
	if s.primary == "" {
		return
	}
	pol := s.p.pol
	st := shareddata.Store{}
	if err := pol.Done(host{}, s.primary); err != nil {
		proxywasm.Log(proxywasm.LogLevelWarn, "picker: in-flight of "+s.primary+": "+err.Error())
	}
	served, _ := proxywasm.GetProperty("upstream", "address")
	details, _ := proxywasm.GetProperty("response", "code_details")
	failed := strings.HasPrefix(string(details), "upstream_reset_before_response_started") ||
		(len(served) > 0 && string(served) != s.primary)
	if ejected, err := pol.Outcome(st, s.primary, failed, time.Now().UnixMilli()); err == nil && ejected {
		proxywasm.Log(proxywasm.LogLevelWarn, "picker: "+s.primary+" ejected for "+pol.EjectBackoff.String()+" after repeated failures")
	}
	if s.learn && s.ok && !failed {
		sample := pick.StreamSample{Duration: time.Duration(time.Now().UnixNano() - s.pickedAt), TTFT: s.ttft, Uncached: s.uncached, Blocks: s.blocks}
		if err := pick.LearnStream(st, s.primary, sample); err != nil {
			proxywasm.Log(proxywasm.LogLevelWarn, "picker: learn from "+s.primary+": "+err.Error())
		}
	}
	s.primary = ""
}
