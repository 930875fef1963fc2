package demo

import (
	"context"
	"errors"
	"fmt"

	"github.com/tollgate/tollgate/filters/picker/pick"
	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/keystore/model"
)

// Picker demo: `make run PICKER=1` puts the endpoint picker behind
// modelroute, in front of simulated vLLM servers whose pool lives in the
// keystore.
const (
	// PickerPool is the pool the demo applies to the keystore.
	PickerPool = "demo"
	// pickerDestination is the EPP header the picker writes and the
	// ORIGINAL_DST model clusters route by.
	pickerDestination = "x-gateway-destination-endpoint"
)

// PickerConfig is the demo picker's configuration: pools from the keystore
// (polled every second, with the data-plane token the other filters use),
// metrics scraped through the first model cluster, one address per pick.
func PickerConfig() string {
	return `{"scrape_cluster": "pool_a", "fallbacks": 0, "default_pool": "` + PickerPool + `",
 "pools_source": {"cluster": "` + KeystoreCluster + `", "token_env": "` + DataTokenEnv + `", "interval": "1s"}}`
}

// addPicker inserts the picker after modelroute, sharing modelroute's VM
// (the suite module: same vm_id, same code, so no extra VM per worker), and
// logs its pick in the access log.
func addPicker(hcm map[string]any) error {
	filters, err := listAt(hcm, "http_filters")
	if err != nil {
		return err
	}
	if fused := fusedFilter(filters); fused != nil {
		// The fused filter runs the picker as its last section.
		if err := addSection(fused, "picker", PickerConfig()); err != nil {
			return err
		}
		logPick(hcm)
		return nil
	}
	at := -1
	for i, f := range filters {
		if fm, _ := f.(map[string]any); fm["name"] == "modelroute" {
			at = i
		}
	}
	if at < 0 {
		return errors.New("gateway config: the picker goes after modelroute, which is missing")
	}
	mr, _ := filters[at].(map[string]any)
	tc, _ := mr["typed_config"].(map[string]any)
	cfg, _ := tc["config"].(map[string]any)
	vm, err := mapAt(cfg, "vm_config")
	if err != nil {
		return err
	}
	picker := map[string]any{
		"name": "picker",
		"typed_config": map[string]any{
			"@type": tc["@type"],
			"config": map[string]any{
				"name": "picker", "root_id": "picker",
				"failure_policy":                  cfg["failure_policy"],
				"reload_config":                   cfg["reload_config"],
				"allow_on_headers_stop_iteration": true,
				"vm_config":                       vm, // shared: same map, same VM
				"configuration": map[string]any{
					"@type": "type.googleapis.com/google.protobuf.StringValue",
					"value": PickerConfig(),
				},
			},
		},
	}
	out := append(append(append([]any{}, filters[:at+1]...), picker), filters[at+1:]...)
	hcm["http_filters"] = out
	logPick(hcm)
	return nil
}

// logPick adds the picker's pick to the JSON access log.
func logPick(hcm map[string]any) {
	if logs, err := listAt(hcm, "access_log"); err == nil {
		for _, l := range logs {
			lm, _ := l.(map[string]any)
			tc, _ := lm["typed_config"].(map[string]any)
			lf, _ := tc["log_format"].(map[string]any)
			if jf, _ := lf["json_format"].(map[string]any); jf != nil {
				jf["pick"] = "%FILTER_STATE(wasm.tollgate.picker.pick:PLAIN)%"
			}
		}
	}
}

// pickedCluster makes a model cluster send each request to the address the
// picker wrote (ORIGINAL_DST reading the EPP header).
func pickedCluster(c map[string]any) {
	delete(c, "load_assignment")
	c["type"] = "ORIGINAL_DST"
	c["lb_policy"] = "CLUSTER_PROVIDED"
	c["original_dst_lb_config"] = map[string]any{"use_http_header": true, "http_header_name": pickerDestination}
}

// ApplyPickerPool stores the demo pool (the simulated servers at addrs) in
// the keystore, where every picker's pools_source finds it.
func ApplyPickerPool(ctx context.Context, c *client.Client, addrs []string) error {
	p := model.Pool{Name: PickerPool}
	for i, a := range addrs {
		p.Endpoints = append(p.Endpoints, model.PoolEndpoint{Address: a, Engine: model.EngineVLLM,
			Labels: map[string]string{"server": fmt.Sprintf("sim-%d", i+1)}})
	}
	p.Normalize()
	if errs := p.Validate(); len(errs) > 0 {
		return fmt.Errorf("demo pool: %w", errs)
	}
	if _, _, err := c.PutPool(ctx, p); err != nil {
		return fmt.Errorf("apply the demo pool: %w", err)
	}
	return nil
}

// pickerStatsTags adds the picker's metric labels (endpoint, reason, part)
// to the bootstrap's stats tags, as the example does for the other filters.
func pickerStatsTags(doc map[string]any) error {
	sc, err := mapAt(doc, "stats_config")
	if err != nil {
		return err
	}
	tags, _ := sc["stats_tags"].([]any)
	for _, st := range pick.StatsTags() {
		tags = append(tags, map[string]any{"tag_name": st.Name, "regex": st.Regex})
	}
	sc["stats_tags"] = tags
	return nil
}
