package model

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of inference pools; they match the endpoint picker's (filters/picker),
// so every pool set the keystore accepts is one the picker adopts.
const (
	// MaxPools bounds the pools the keystore holds.
	MaxPools = 64
	// MaxPoolEndpoints bounds the endpoints of one pool and the distinct
	// endpoints of all pools together.
	MaxPoolEndpoints = 256
)

// Model-server engines a pool endpoint may run; the picker reads each one's metric names.
const (
	EngineVLLM   = "vllm"
	EngineSGLang = "sglang"
	EngineTRTLLM = "trtllm"
	EngineTriton = "triton"
)

// Engines lists the accepted engine names, for messages and tests.
func Engines() []string { return []string{EngineVLLM, EngineSGLang, EngineTRTLLM, EngineTriton} }

// Pool is an inference pool: a named set of model-server endpoints that serve
// some models (or, when it is the only or default pool, every model). It is
// the keystore's form of a Gateway API InferencePool with static endpoints;
// the endpoint picker fetches all pools from GET /v1/pools.
type Pool struct {
	Name string `json:"name" yaml:"-"`
	// Models are the request model names this pool serves.
	Models []string `json:"models,omitempty" yaml:"models"`
	// Adapters are LoRA adapter names served by the pool's servers.
	Adapters []string `json:"adapters,omitempty" yaml:"adapters"`
	// Endpoints are the model servers.
	Endpoints []PoolEndpoint `json:"endpoints" yaml:"endpoints"`
	CreatedAt time.Time      `json:"createdAt,omitzero" yaml:"-"`
	UpdatedAt time.Time      `json:"updatedAt,omitzero" yaml:"-"`
}

// PoolEndpoint is one model server of a pool.
type PoolEndpoint struct {
	// Address is ip:port (IPv6 in brackets).
	Address string `json:"address" yaml:"address"`
	// Engine is vllm (default), sglang, trtllm or triton.
	Engine string `json:"engine,omitempty" yaml:"engine"`
	// Labels are free-form (zone, hardware), reported by the picker, not scored.
	Labels map[string]string `json:"labels,omitempty" yaml:"labels"`
}

// PoolsDocument is the data-plane answer of GET /v1/pools, in the shape the
// picker's pools_source reads (no timestamps: the picker refuses unknown fields).
type PoolsDocument struct {
	Pools []PoolSpec `json:"pools"`
}

// PoolSpec is one pool as the picker reads it.
type PoolSpec struct {
	Name      string         `json:"name"`
	Models    []string       `json:"models,omitempty"`
	Adapters  []string       `json:"adapters,omitempty"`
	Endpoints []PoolEndpoint `json:"endpoints"`
}

// Spec is the pool without its timestamps.
func (p Pool) Spec() PoolSpec {
	return PoolSpec{Name: p.Name, Models: p.Models, Adapters: p.Adapters, Endpoints: p.Endpoints}
}

// Normalize spells engines and addresses canonically ("" → vllm,
// "tensorrt-llm" → trtllm, "[::1]:08000" → "[::1]:8000"), so equal pools
// compare equal and duplicates are found.
func (p *Pool) Normalize() {
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		ep.Engine = strings.ToLower(strings.TrimSpace(ep.Engine))
		switch ep.Engine {
		case "":
			ep.Engine = EngineVLLM
		case "trtllm-serve", "tensorrt-llm":
			ep.Engine = EngineTRTLLM
		}
		if ap, err := netip.ParseAddrPort(strings.TrimSpace(ep.Address)); err == nil {
			ep.Address = ap.String()
		}
		if len(ep.Labels) == 0 {
			ep.Labels = nil
		}
	}
}

// Validate lists every problem with the pool (conflicts with other pools are
// checked by the store).
func (p *Pool) Validate() FieldErrors {
	var c checker
	c.name("name", p.Name)
	names := map[string]string{}
	c.poolModels("models", p.Models, names)
	c.poolModels("adapters", p.Adapters, names)
	switch {
	case len(p.Endpoints) == 0:
		c.add("endpoints", "a pool needs at least one endpoint")
	case len(p.Endpoints) > MaxPoolEndpoints:
		c.add("endpoints", "more than "+strconv.Itoa(MaxPoolEndpoints)+" endpoints")
	default:
		seen := map[string]int{}
		for i, ep := range p.Endpoints {
			f := idx("endpoints", i)
			if msg := ValidEndpointAddress(ep.Address); msg != "" {
				c.add(f+".address", msg)
			} else if first, dup := seen[ep.Address]; dup {
				c.add(f+".address", ep.Address+" is listed twice (also endpoints["+strconv.Itoa(first)+"])")
			} else {
				seen[ep.Address] = i
			}
			if !validEngine(ep.Engine) {
				c.add(f+".engine", strconv.Quote(ep.Engine)+" is not an engine (want "+strings.Join(Engines(), ", ")+")")
			}
			c.attributes(f+".labels", ep.Labels)
		}
	}
	return c.errs
}

// poolModels checks exact model names: no patterns, no duplicates across
// models and adapters (names collects them).
func (c *checker) poolModels(field string, list []string, names map[string]string) {
	if len(list) > MaxModels {
		c.add(field, "more than "+strconv.Itoa(MaxModels)+" names")
		return
	}
	for i, m := range list {
		f := idx(field, i)
		msg := ValidModelPattern(m)
		if msg == "" && strings.Contains(m, "*") {
			msg = "must be an exact model name, not a pattern"
		}
		if msg != "" {
			c.add(f, msg)
			continue
		}
		if first, dup := names[m]; dup {
			c.add(f, strconv.Quote(m)+" is listed twice (also "+first+")")
			continue
		}
		names[m] = f
	}
}

// ValidEndpointAddress explains why a is not an endpoint address (an IP
// literal and a port 1-65535, no zone, not unspecified or multicast), or
// returns "".
func ValidEndpointAddress(a string) string {
	ap, err := netip.ParseAddrPort(a)
	switch {
	case err != nil:
		return "\"" + truncate(a, 64) + "\" is not ip:port (IPv6 as [addr]:port; host names are not resolved)"
	case ap.Port() == 0:
		return a + ": port must be 1-65535"
	case ap.Addr().Zone() != "":
		return a + ": zoned IPv6 addresses are not supported"
	case ap.Addr().IsUnspecified() || ap.Addr().IsMulticast():
		return a + ": not a unicast address"
	}
	return ""
}

func validEngine(e string) bool {
	return slices.Contains(Engines(), e)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
