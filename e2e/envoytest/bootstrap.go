package envoytest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// ListenerStatPrefix is the stat_prefix of the generated listener, so listener
// stats read listener.tollgate.<...> whatever port Envoy bound.
const ListenerStatPrefix = "tollgate"

// HCMStatPrefix is the stat_prefix of the generated HTTP connection manager
// (http.ingress.<...> stats).
const HCMStatPrefix = "ingress"

// Config describes the Envoy a test wants. The zero value is a bare Envoy whose
// listener answers 404 to everything.
type Config struct {
	// Filters are the Wasm HTTP filters, in chain order, before the router.
	Filters []WasmFilter
	// Routes are matched in order. When empty and Clusters is not, one route
	// sends every path to the first cluster.
	Routes []Route
	// Clusters are the upstreams routes and HTTP callouts can name.
	Clusters []Cluster
	// StatsTags extract Prometheus labels from stat names (stats_config.stats_tags).
	StatsTags []StatsTag
	// ListenerBufferLimit sets per_connection_buffer_limit_bytes on the listener
	// (Envoy's default is 1 MiB).
	ListenerBufferLimit uint32
	// Concurrency is the number of Envoy workers (default 2).
	Concurrency int
	// LogLevel is Envoy's -l (default info).
	LogLevel string
	// ComponentLogLevel is passed as --component-log-level, e.g. "wasm:debug".
	ComponentLogLevel string
	// StartTimeout bounds the wait for /ready and the listener (default 60s).
	StartTimeout time.Duration
	// Customize, when set, edits the generated bootstrap before it is written,
	// for settings the fields above do not cover.
	Customize func(bootstrap map[string]any)
	// YAML, when set, replaces the generated bootstrap. It is a text/template
	// executed with TemplateData; bind the admin interface and listeners to
	// 127.0.0.1 (port 0 is fine: the harness reads the bound ports back).
	YAML string
	// ListenerName picks the listener URL() addresses in a custom YAML
	// (default: the first listener Envoy reports).
	ListenerName string
	// ExtraArgs are appended to Envoy's command line.
	ExtraArgs []string
}

// TemplateData is what a custom Config.YAML template can refer to.
type TemplateData struct {
	// Dir is the Envoy's private temporary directory.
	Dir string
	// AccessLog is the path the harness reads with AccessLog().
	AccessLog string
	// BuildDir is the directory holding build/*.wasm.
	BuildDir string
}

// WasmFilter is one envoy.filters.http.wasm entry of the HTTP filter chain.
type WasmFilter struct {
	// Name is the filter and plugin name (required).
	Name string
	// RootID selects the plugin's root context.
	RootID string
	// VMID groups filters into one VM per worker; shared data and queues are
	// scoped by it.
	VMID string
	// WasmPath is the module's file path (required); see WasmPath().
	WasmPath string
	// Configuration is the plugin configuration handed raw (usually JSON) to
	// proxy_on_configure.
	Configuration string
	// VMConfiguration is handed to proxy_on_vm_start.
	VMConfiguration string
	// AllowOnHeadersStopIteration makes a headers PAUSE mean StopIteration
	// instead of StopAllIterationAndWatermark.
	AllowOnHeadersStopIteration bool
	// FailurePolicy is FAIL_CLOSED (Envoy's default), FAIL_OPEN or FAIL_RELOAD.
	FailurePolicy string
	// Runtime defaults to envoy.wasm.runtime.v8.
	Runtime string
}

// Route is one route of the single virtual host.
type Route struct {
	// Prefix matches a path prefix; "/" when neither Prefix nor Path is set.
	Prefix string
	// Path matches a path exactly.
	Path string
	// Headers must all match.
	Headers []HeaderMatch
	// Cluster receives the request, unless Direct is set.
	Cluster string
	// Direct answers from Envoy itself.
	Direct *DirectResponse
	// Timeout is the route timeout (Envoy's default is 15s; 0 keeps it).
	Timeout time.Duration
	// RequestBodyBufferLimit caps the buffered request body on this route
	// (request_body_buffer_limit); 0 keeps Envoy's default.
	RequestBodyBufferLimit uint64
	// Extra keys are merged into the generated route entry.
	Extra map[string]any
}

// HeaderMatch matches one request header, exactly or by presence.
type HeaderMatch struct {
	// Name is the header name.
	Name string
	// Exact is the value to match when Present is false.
	Exact string
	// Present matches any value.
	Present bool
}

// DirectResponse is a response Envoy sends without an upstream.
type DirectResponse struct {
	// Status is the HTTP status code.
	Status int
	// Body is the inline response body.
	Body string
}

// Cluster is a STATIC upstream cluster on a loopback address.
type Cluster struct {
	// Name is the cluster name routes and HTTP callouts refer to.
	Name string
	// Addr is host:port, e.g. Upstream.Addr().
	Addr string
	// HTTP2 speaks h2c (prior knowledge) to the upstream.
	HTTP2 bool
	// ConnectTimeout defaults to 1s.
	ConnectTimeout time.Duration
	// Extra keys are merged into the generated cluster.
	Extra map[string]any
}

// StatsTag extracts a tag (a Prometheus label) from stat names: the regex's
// first capture group is removed from the name, the second is the value.
type StatsTag struct {
	// Name is the tag (label) name.
	Name string
	// Regex is an RE2 expression with the capture groups described above.
	Regex string
}

// render produces the bootstrap YAML for the generated configuration, with the
// listener on the given port (0 lets Envoy choose).
func (c *Config) render(data TemplateData, listenerPort int) ([]byte, error) {
	if c.YAML != "" {
		tpl, err := template.New("bootstrap").Option("missingkey=error").Parse(c.YAML)
		if err != nil {
			return nil, fmt.Errorf("envoytest: parse custom YAML template: %w", err)
		}
		var buf bytes.Buffer
		if err := tpl.Execute(&buf, data); err != nil {
			return nil, fmt.Errorf("envoytest: execute custom YAML template: %w", err)
		}
		return buf.Bytes(), nil
	}
	b, err := c.bootstrap(data, listenerPort)
	if err != nil {
		return nil, err
	}
	if c.Customize != nil {
		c.Customize(b)
	}
	out, err := yaml.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("envoytest: marshal bootstrap: %w", err)
	}
	return out, nil
}

func socketAddress(host string, port int) map[string]any {
	return map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}}
}

func typed(typeURL string, fields map[string]any) map[string]any {
	m := map[string]any{"@type": "type.googleapis.com/" + typeURL}
	maps.Copy(m, fields)
	return m
}

func duration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// bootstrap builds the bootstrap as nested maps, ready for yaml.Marshal.
func (c *Config) bootstrap(data TemplateData, listenerPort int) (map[string]any, error) {
	filters := make([]any, 0, len(c.Filters)+1)
	for i, f := range c.Filters {
		wf, err := f.httpFilter()
		if err != nil {
			return nil, fmt.Errorf("envoytest: filter %d: %w", i, err)
		}
		filters = append(filters, wf)
	}
	filters = append(filters, map[string]any{
		"name":         "envoy.filters.http.router",
		"typed_config": typed("envoy.extensions.filters.http.router.v3.Router", nil),
	})

	routes := c.Routes
	if len(routes) == 0 && len(c.Clusters) > 0 {
		routes = []Route{{Prefix: "/", Cluster: c.Clusters[0].Name}}
	}
	rs := make([]any, 0, len(routes))
	for i, r := range routes {
		m, err := r.entry()
		if err != nil {
			return nil, fmt.Errorf("envoytest: route %d: %w", i, err)
		}
		rs = append(rs, m)
	}

	clusters := make([]any, 0, len(c.Clusters))
	for i, cl := range c.Clusters {
		m, err := cl.entry()
		if err != nil {
			return nil, fmt.Errorf("envoytest: cluster %d: %w", i, err)
		}
		clusters = append(clusters, m)
	}

	hcm := typed("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", map[string]any{
		"stat_prefix": HCMStatPrefix,
		"codec_type":  "AUTO",
		"route_config": map[string]any{
			"name": "local",
			"virtual_hosts": []any{map[string]any{
				"name":    "all",
				"domains": []any{"*"},
				"routes":  rs,
			}},
		},
		"http_filters": filters,
		"access_log": []any{map[string]any{
			"name": "envoy.access_loggers.file",
			"typed_config": typed("envoy.extensions.access_loggers.file.v3.FileAccessLog", map[string]any{
				"path":       data.AccessLog,
				"log_format": map[string]any{"json_format": accessLogFormat},
			}),
		}},
	})

	listener := map[string]any{
		"name":                      "main",
		"stat_prefix":               ListenerStatPrefix,
		"address":                   socketAddress("127.0.0.1", listenerPort),
		"connection_balance_config": map[string]any{"exact_balance": map[string]any{}},
		"filter_chains": []any{map[string]any{
			"filters": []any{map[string]any{
				"name":         "envoy.filters.network.http_connection_manager",
				"typed_config": hcm,
			}},
		}},
	}
	if c.ListenerBufferLimit > 0 {
		listener["per_connection_buffer_limit_bytes"] = c.ListenerBufferLimit
	}

	b := map[string]any{
		"node":  map[string]any{"id": "tollgate-e2e", "cluster": "tollgate-e2e"},
		"admin": map[string]any{"address": socketAddress("127.0.0.1", 0)},
		// Merge histograms whenever the admin interface is read, so tests
		// polling /stats see fresh values without waiting for a flush timer.
		"stats_flush_on_admin": true,
		"static_resources": map[string]any{
			"listeners": []any{listener},
			"clusters":  clusters,
		},
	}
	if len(c.StatsTags) > 0 {
		tags := make([]any, 0, len(c.StatsTags))
		for _, st := range c.StatsTags {
			if st.Name == "" || st.Regex == "" {
				return nil, errors.New("envoytest: stats tag needs Name and Regex")
			}
			tags = append(tags, map[string]any{"tag_name": st.Name, "regex": st.Regex})
		}
		b["stats_config"] = map[string]any{"stats_tags": tags}
	}
	return b, nil
}

// accessLogFormat is the JSON access-log line AccessEntry decodes.
var accessLogFormat = map[string]any{
	"start_time":      "%START_TIME%",
	"method":          "%REQ(:METHOD)%",
	"path":            "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"protocol":        "%PROTOCOL%",
	"status":          "%RESPONSE_CODE%",
	"flags":           "%RESPONSE_FLAGS%",
	"details":         "%RESPONSE_CODE_DETAILS%",
	"upstream":        "%UPSTREAM_CLUSTER%",
	"upstream_host":   "%UPSTREAM_HOST%",
	"bytes_received":  "%BYTES_RECEIVED%",
	"bytes_sent":      "%BYTES_SENT%",
	"duration_ms":     "%DURATION%",
	"request_id":      "%REQ(X-REQUEST-ID)%",
	"connection_id":   "%CONNECTION_ID%",
	"downstream_peer": "%DOWNSTREAM_REMOTE_ADDRESS%",
}

func (f WasmFilter) httpFilter() (map[string]any, error) {
	if f.Name == "" || f.WasmPath == "" {
		return nil, errors.New("wasm filter needs Name and WasmPath")
	}
	runtime := f.Runtime
	if runtime == "" {
		runtime = "envoy.wasm.runtime.v8"
	}
	vm := map[string]any{
		"vm_id":   f.VMID,
		"runtime": runtime,
		"code":    map[string]any{"local": map[string]any{"filename": f.WasmPath}},
	}
	if f.VMConfiguration != "" {
		vm["configuration"] = typed("google.protobuf.StringValue", map[string]any{"value": f.VMConfiguration})
	}
	plugin := map[string]any{
		"name":      f.Name,
		"root_id":   f.RootID,
		"vm_config": vm,
	}
	if f.Configuration != "" {
		plugin["configuration"] = typed("google.protobuf.StringValue", map[string]any{"value": f.Configuration})
	}
	if f.AllowOnHeadersStopIteration {
		plugin["allow_on_headers_stop_iteration"] = true
	}
	if f.FailurePolicy != "" {
		plugin["failure_policy"] = f.FailurePolicy
	}
	return map[string]any{
		"name":         f.Name,
		"typed_config": typed("envoy.extensions.filters.http.wasm.v3.Wasm", map[string]any{"config": plugin}),
	}, nil
}

func (r Route) entry() (map[string]any, error) {
	match := map[string]any{}
	switch {
	case r.Path != "" && r.Prefix != "":
		return nil, errors.New("set Path or Prefix, not both")
	case r.Path != "":
		match["path"] = r.Path
	case r.Prefix != "":
		match["prefix"] = r.Prefix
	default:
		match["prefix"] = "/"
	}
	if len(r.Headers) > 0 {
		hs := make([]any, 0, len(r.Headers))
		for _, h := range r.Headers {
			if h.Name == "" {
				return nil, errors.New("header match needs a Name")
			}
			if h.Present {
				hs = append(hs, map[string]any{"name": h.Name, "present_match": true})
			} else {
				hs = append(hs, map[string]any{"name": h.Name, "string_match": map[string]any{"exact": h.Exact}})
			}
		}
		match["headers"] = hs
	}
	e := map[string]any{"match": match}
	switch {
	case r.Direct != nil && r.Cluster != "":
		return nil, errors.New("set Cluster or Direct, not both")
	case r.Direct != nil:
		e["direct_response"] = map[string]any{
			"status": r.Direct.Status,
			"body":   map[string]any{"inline_string": r.Direct.Body},
		}
	case r.Cluster != "":
		action := map[string]any{"cluster": r.Cluster}
		if r.Timeout > 0 {
			action["timeout"] = duration(r.Timeout)
		}
		e["route"] = action
	default:
		return nil, errors.New("route needs a Cluster or a Direct response")
	}
	if r.RequestBodyBufferLimit > 0 {
		e["request_body_buffer_limit"] = r.RequestBodyBufferLimit
	}
	maps.Copy(e, r.Extra)
	return e, nil
}

func (c Cluster) entry() (map[string]any, error) {
	if c.Name == "" || c.Addr == "" {
		return nil, errors.New("cluster needs Name and Addr")
	}
	host, port, err := splitHostPort(c.Addr)
	if err != nil {
		return nil, err
	}
	ct := c.ConnectTimeout
	if ct <= 0 {
		ct = time.Second
	}
	e := map[string]any{
		"name":            c.Name,
		"type":            "STATIC",
		"connect_timeout": duration(ct),
		"load_assignment": map[string]any{
			"cluster_name": c.Name,
			"endpoints": []any{map[string]any{
				"lb_endpoints": []any{map[string]any{
					"endpoint": map[string]any{"address": socketAddress(host, port)},
				}},
			}},
		},
	}
	if c.HTTP2 {
		e["typed_extension_protocol_options"] = map[string]any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
				"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				map[string]any{"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}}},
			),
		}
	}
	maps.Copy(e, c.Extra)
	return e, nil
}
