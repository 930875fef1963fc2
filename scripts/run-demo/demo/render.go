// Package demo holds what `make run` and the full-chain tests share: it
// renders examples/envoy/gateway.yaml for given addresses (listener, admin,
// keystore, model upstream, Wasm directory, access log) and prepares the
// keystore with a demo developer, app and key.
package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Cluster names in examples/envoy/gateway.yaml.
const (
	// KeystoreCluster is the keystore data plane's cluster.
	KeystoreCluster = "keystore"
)

// ModelClusters are the model-server clusters of the example, all pointed at
// the one upstream.
func ModelClusters() []string { return []string{"pool_a", "pool_b"} }

// Upstream is a model server: the demo's mock-llm, vLLM or any
// OpenAI-compatible endpoint.
type Upstream struct {
	// TLS is set for https upstreams.
	TLS bool
	// Host is a name or an IP address; Port its port.
	Host string
	Port int
	// APIKey, when set, is sent upstream as "Authorization: Bearer <APIKey>"
	// (the client's Tollgate key never is).
	APIKey string
}

// Addr is host:port.
func (u Upstream) Addr() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// URL is the upstream's base URL.
func (u Upstream) URL() string {
	if u.TLS {
		return "https://" + u.Addr()
	}
	return "http://" + u.Addr()
}

// ParseUpstream reads UPSTREAM: http(s)://host[:port], optionally ending in
// /v1 (the OpenAI base path, which requests carry themselves).
func ParseUpstream(raw string) (Upstream, error) {
	if !strings.Contains(raw, "://") {
		return Upstream{}, fmt.Errorf("UPSTREAM %q: want http://host:port or https://host", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Upstream{}, fmt.Errorf("UPSTREAM %q: %w", raw, err)
	}
	var up Upstream
	switch u.Scheme {
	case "http":
		up.Port = 80
	case "https":
		up.TLS, up.Port = true, 443
	default:
		return Upstream{}, fmt.Errorf("UPSTREAM %q: want http://host:port or https://host", raw)
	}
	if u.Hostname() == "" {
		return Upstream{}, fmt.Errorf("UPSTREAM %q: no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Upstream{}, fmt.Errorf("UPSTREAM %q: credentials, query and fragment are not supported (use UPSTREAM_API_KEY)", raw)
	}
	switch strings.TrimRight(u.Path, "/") {
	case "", "/v1":
	default:
		return Upstream{}, fmt.Errorf("UPSTREAM %q: base paths other than /v1 are not supported", raw)
	}
	up.Host = u.Hostname()
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Upstream{}, fmt.Errorf("UPSTREAM %q: bad port", raw)
		}
		up.Port = n
	}
	return up, nil
}

// RenderOptions say where the rendered gateway runs.
type RenderOptions struct {
	// Listen and Admin are the gateway listener's and the admin interface's
	// host:port (port 0: Envoy picks).
	Listen, Admin string
	// Keystore is the keystore data plane's host:port.
	Keystore string
	// Upstream receives every model request.
	Upstream Upstream
	// BuildDir holds the filters' .wasm files; Wasm paths become absolute.
	BuildDir string
	// AccessLog is the access log's path ("" keeps the example's).
	AccessLog string
	// AnyModel lets modelroute pass models it does not know to the upstream
	// (unknown_models: passthrough), for upstreams with their own names.
	AnyModel bool
	// DataToken, when set, is written into the filters' VM environment as
	// DataTokenEnv (key_values) instead of being read from Envoy's own
	// environment (host_env_keys). Empty keeps the example's host_env_keys:
	// then Envoy must run with DataTokenEnv set, as `make run` does.
	DataToken string
	// Picker inserts the endpoint picker after modelroute (PickerConfig:
	// pools from the keystore) and turns the model clusters into
	// ORIGINAL_DST clusters that send each request where the picker says.
	Picker bool
}

// DataTokenEnv is the variable that carries the keystore's data-plane token
// to `tollgate serve` and, through the filters' VM environment, to the
// filters' "token_env".
const DataTokenEnv = "TOLLGATE_DATA_TOKEN"

// Render rewrites the example gateway configuration src for o. It edits the
// parsed document, never the text, so comments and layout do not matter.
func Render(src []byte, o RenderOptions) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("parse gateway config: %w", err)
	}
	if err := setSocket(doc, o.Admin, "admin", "address"); err != nil {
		return nil, err
	}
	static, err := mapAt(doc, "static_resources")
	if err != nil {
		return nil, err
	}
	listeners, err := listAt(static, "listeners")
	if err != nil {
		return nil, err
	}
	if len(listeners) != 1 {
		return nil, fmt.Errorf("gateway config: want one listener, found %d", len(listeners))
	}
	lst, ok := listeners[0].(map[string]any)
	if !ok {
		return nil, errors.New("gateway config: listener is not a map")
	}
	if err := setSocket(lst, o.Listen, "address"); err != nil {
		return nil, err
	}
	hcm, err := connectionManager(lst)
	if err != nil {
		return nil, err
	}
	if o.Picker {
		if err := addPicker(hcm); err != nil {
			return nil, err
		}
		if err := pickerStatsTags(doc); err != nil {
			return nil, err
		}
	}
	if err := editFilters(hcm, o); err != nil {
		return nil, err
	}
	if o.AccessLog != "" {
		if err := setAccessLog(hcm, o.AccessLog); err != nil {
			return nil, err
		}
	}
	if err := editRoutes(hcm, o.Upstream); err != nil {
		return nil, err
	}
	if err := editClusters(static, o); err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode gateway config: %w", err)
	}
	return out, nil
}

// mapAt returns m[key] as a map.
func mapAt(m map[string]any, key string) (map[string]any, error) {
	v, ok := m[key].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("gateway config: %q is missing or not a map", key)
	}
	return v, nil
}

// listAt returns m[key] as a list.
func listAt(m map[string]any, key string) ([]any, error) {
	v, ok := m[key].([]any)
	if !ok {
		return nil, fmt.Errorf("gateway config: %q is missing or not a list", key)
	}
	return v, nil
}

// socketAddress is Envoy's address object for host:port.
func socketAddress(hostport string) (map[string]any, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", hostport, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("address %q: bad port", hostport)
	}
	return map[string]any{"socket_address": map[string]any{"address": host, "port_value": p}}, nil
}

// setSocket replaces the address found under path in m.
func setSocket(m map[string]any, hostport string, path ...string) error {
	if hostport == "" {
		return nil
	}
	addr, err := socketAddress(hostport)
	if err != nil {
		return err
	}
	for _, k := range path[:len(path)-1] {
		if m, err = mapAt(m, k); err != nil {
			return err
		}
	}
	m[path[len(path)-1]] = addr
	return nil
}

// connectionManager returns the HTTP connection manager's typed_config.
func connectionManager(lst map[string]any) (map[string]any, error) {
	chains, err := listAt(lst, "filter_chains")
	if err != nil || len(chains) != 1 {
		return nil, errors.New("gateway config: want one filter chain")
	}
	chain, _ := chains[0].(map[string]any)
	filters, err := listAt(chain, "filters")
	if err != nil || len(filters) != 1 {
		return nil, errors.New("gateway config: want one network filter (the HTTP connection manager)")
	}
	f, _ := filters[0].(map[string]any)
	return mapAt(f, "typed_config")
}

// editFilters makes Wasm paths absolute and applies AnyModel.
func editFilters(hcm map[string]any, o RenderOptions) error {
	filters, err := listAt(hcm, "http_filters")
	if err != nil {
		return err
	}
	for _, f := range filters {
		fm, _ := f.(map[string]any)
		tc, _ := fm["typed_config"].(map[string]any)
		cfg, _ := tc["config"].(map[string]any)
		if cfg == nil {
			continue // the router
		}
		vm, err := mapAt(cfg, "vm_config")
		if err != nil {
			return err
		}
		code, err := mapAt(vm, "code")
		if err != nil {
			return err
		}
		local, err := mapAt(code, "local")
		if err != nil {
			return err
		}
		file, _ := local["filename"].(string)
		if o.BuildDir != "" && file != "" {
			local["filename"] = filepath.Join(o.BuildDir, filepath.Base(file))
		}
		if o.DataToken != "" {
			setVMEnv(vm, DataTokenEnv, o.DataToken)
		}
		if o.AnyModel {
			switch cfg["root_id"] {
			case "modelroute":
				if err := anyModel(cfg, ""); err != nil {
					return err
				}
			case FusedRootID:
				if err := anyModel(cfg, "modelroute"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// setVMEnv moves name from a VM's host_env_keys (if listed there) into its
// key_values with value.
func setVMEnv(vm map[string]any, name, value string) {
	ev, _ := vm["environment_variables"].(map[string]any)
	if ev == nil {
		return // this filter does not read the variable
	}
	keys, _ := ev["host_env_keys"].([]any)
	kept := keys[:0:0]
	found := false
	for _, k := range keys {
		if k == name {
			found = true
			continue
		}
		kept = append(kept, k)
	}
	if !found {
		return
	}
	if len(kept) == 0 {
		delete(ev, "host_env_keys")
	} else {
		ev["host_env_keys"] = kept
	}
	kv, _ := ev["key_values"].(map[string]any)
	if kv == nil {
		kv = map[string]any{}
	}
	kv[name] = value
	ev["key_values"] = kv
}

// FusedRootID is the root_id of the suite module's fused filter, whose
// configuration holds each filter's as a section named after it.
const FusedRootID = "tollgate"

// fusedFilter is the Wasm config of the chain's fused filter, or nil.
func fusedFilter(filters []any) map[string]any {
	for _, f := range filters {
		fm, _ := f.(map[string]any)
		tc, _ := fm["typed_config"].(map[string]any)
		if cfg, _ := tc["config"].(map[string]any); cfg != nil && cfg["root_id"] == FusedRootID {
			return cfg
		}
	}
	return nil
}

// addSection adds a filter's configuration to the fused filter's; the
// fused filter runs its sections in its own fixed order.
func addSection(cfg map[string]any, name, config string) error {
	c, err := mapAt(cfg, "configuration")
	if err != nil {
		return err
	}
	v, _ := c["value"].(string)
	var sections map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v), &sections); err != nil {
		return fmt.Errorf("gateway config: fused configuration: %w", err)
	}
	if _, dup := sections[name]; dup {
		return fmt.Errorf("gateway config: the fused filter already has a %s section", name)
	}
	sections[name] = json.RawMessage(config)
	out, err := json.Marshal(sections)
	if err != nil {
		return fmt.Errorf("gateway config: fused configuration: %w", err)
	}
	c["value"] = string(out)
	return nil
}

// anyModel makes modelroute pass every model name through unchanged: the
// example's models (aliases, backend rewrites such as gemma ->
// /gcs/google/gemma-3-1b-it, weighted splits) belong to the demo backend,
// not to an external upstream with its own names. section names
// modelroute's section in a fused filter's configuration ("" for
// modelroute's own filter).
func anyModel(cfg map[string]any, section string) error {
	c, err := mapAt(cfg, "configuration")
	if err != nil {
		return err
	}
	v, _ := c["value"].(string)
	raw := []byte(v)
	var sections map[string]json.RawMessage
	if section != "" {
		if err := json.Unmarshal(raw, &sections); err != nil {
			return fmt.Errorf("gateway config: fused configuration: %w", err)
		}
		if raw = sections[section]; raw == nil {
			return fmt.Errorf("gateway config: the fused filter has no %s section", section)
		}
	}
	var conf map[string]any
	if err := json.Unmarshal(raw, &conf); err != nil {
		return fmt.Errorf("gateway config: modelroute configuration: %w", err)
	}
	conf["unknown_models"] = "passthrough"
	conf["models"] = []any{}
	out, err := json.Marshal(conf)
	if err != nil {
		return fmt.Errorf("gateway config: modelroute configuration: %w", err)
	}
	if section != "" {
		sections[section] = out
		if out, err = json.Marshal(sections); err != nil {
			return fmt.Errorf("gateway config: fused configuration: %w", err)
		}
	}
	c["value"] = string(out)
	return nil
}

// setAccessLog points every file access log at path.
func setAccessLog(hcm map[string]any, path string) error {
	logs, err := listAt(hcm, "access_log")
	if err != nil {
		return err
	}
	for _, l := range logs {
		lm, _ := l.(map[string]any)
		tc, err := mapAt(lm, "typed_config")
		if err != nil {
			return err
		}
		tc["path"] = path
	}
	return nil
}

// editRoutes adds what an external upstream needs: its own Host header for
// TLS upstreams and its API key.
func editRoutes(hcm map[string]any, up Upstream) error {
	if !up.TLS && up.APIKey == "" {
		return nil
	}
	rc, err := mapAt(hcm, "route_config")
	if err != nil {
		return err
	}
	vhosts, err := listAt(rc, "virtual_hosts")
	if err != nil {
		return err
	}
	for _, vh := range vhosts {
		vm, _ := vh.(map[string]any)
		if up.APIKey != "" {
			vm["request_headers_to_add"] = []any{map[string]any{
				"header":        map[string]any{"key": "authorization", "value": "Bearer " + up.APIKey},
				"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
			}}
		}
		if !up.TLS {
			continue
		}
		routes, err := listAt(vm, "routes")
		if err != nil {
			return err
		}
		for _, r := range routes {
			rm, _ := r.(map[string]any)
			if ra, ok := rm["route"].(map[string]any); ok {
				ra["auto_host_rewrite"] = true
			}
		}
	}
	return nil
}

// editClusters points the model clusters at the upstream and the keystore
// cluster at the keystore.
func editClusters(static map[string]any, o RenderOptions) error {
	clusters, err := listAt(static, "clusters")
	if err != nil {
		return err
	}
	found := map[string]bool{}
	models := map[string]bool{}
	for _, n := range ModelClusters() {
		models[n] = true
	}
	for _, c := range clusters {
		cm, _ := c.(map[string]any)
		name, _ := cm["name"].(string)
		found[name] = true
		switch {
		case models[name] && o.Picker:
			pickedCluster(cm)
		case name == KeystoreCluster && o.Keystore != "":
			if err := setEndpoint(cm, o.Keystore); err != nil {
				return err
			}
		case models[name] && o.Upstream.Host != "":
			if err := setEndpoint(cm, o.Upstream.Addr()); err != nil {
				return err
			}
			if net.ParseIP(o.Upstream.Host) == nil {
				cm["type"] = "LOGICAL_DNS"
				cm["dns_lookup_family"] = "V4_PREFERRED"
			}
			if o.Upstream.TLS {
				cm["transport_socket"] = map[string]any{
					"name": "envoy.transport_sockets.tls",
					"typed_config": map[string]any{
						"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
						"sni":   o.Upstream.Host,
					},
				}
			}
		}
	}
	for _, n := range append(ModelClusters(), KeystoreCluster) {
		if !found[n] {
			return fmt.Errorf("gateway config: cluster %q is missing", n)
		}
	}
	return nil
}

// setEndpoint replaces a cluster's endpoints with one address.
func setEndpoint(cluster map[string]any, hostport string) error {
	addr, err := socketAddress(hostport)
	if err != nil {
		return err
	}
	la, err := mapAt(cluster, "load_assignment")
	if err != nil {
		return err
	}
	la["endpoints"] = []any{map[string]any{"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{"address": addr}}}}}
	return nil
}
