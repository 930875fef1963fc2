// Command run-demo is `make run`: it starts the demo gateway on loopback —
// the keystore on its embedded store, the mock model server (or an external
// one named by UPSTREAM), and Envoy with the full filter chain of
// examples/envoy/gateway.yaml — applies the demo products, issues a key,
// checks that a completion gets through and prints a ready banner. Ctrl-C
// (or SIGTERM) stops everything it started, in reverse order.
//
// It supervises the keystore and the mock model server: one that dies is
// logged and restarted with backoff (250 ms doubling to 10 s), so the
// gateway's documented behaviour without a keystore (cached keys keep
// working) can be watched instead of the demo ending. Only Envoy's death
// ends the demo. A fresh data-plane token is made for every run and given to
// the keystore and to Envoy (TOLLGATE_DATA_TOKEN), never written to a file.
//
// Everything it writes lives under the data dir (.tollgate/): the keystore's
// database and admin token, and run/ with the rendered Envoy configuration,
// each process's log and the access log.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/keystore"
	"github.com/tollgate/tollgate/keystore/client"
	"github.com/tollgate/tollgate/keystore/portal"
	"github.com/tollgate/tollgate/scripts/run-demo/demo"
)

// options are the flags, with defaults from the environment.
type options struct {
	dataDir, envoy, tollgate, config, products, buildDir string
	listen, admin, keystoreData, keystoreAdmin, mock     string
	portal                                               string
	upstream, upstreamKey                                string
	picker                                               bool
	concurrency                                          int
	readyTimeout                                         time.Duration
	t0                                                   time.Time
}

// envOr returns the environment variable's value, or def.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("run-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dataDir, "data-dir", envOr("TOLLGATE_DATA_DIR", ".tollgate"), "keystore data and run files (env TOLLGATE_DATA_DIR)")
	fs.StringVar(&o.envoy, "envoy", envOr("ENVOY", ".venv/bin/envoy"), "Envoy binary (env ENVOY)")
	fs.StringVar(&o.tollgate, "tollgate", "build/tollgate", "tollgate CLI binary")
	fs.StringVar(&o.buildDir, "build-dir", "build", "directory holding the filters' .wasm files")
	fs.StringVar(&o.config, "config", "examples/envoy/gateway.yaml", "the gateway's Envoy configuration")
	fs.StringVar(&o.products, "products", "examples/demo-products.yaml", "API products to apply")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:"+envOr("PORT", "8080"), "gateway listener (env PORT sets the port)")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9901", "Envoy admin interface")
	fs.StringVar(&o.keystoreData, "keystore", keystore.DefaultListen, "keystore data plane")
	fs.StringVar(&o.keystoreAdmin, "keystore-admin", keystore.DefaultAdminListen, "keystore admin API")
	fs.StringVar(&o.portal, "portal", portal.DefaultListen, "developer portal")
	fs.StringVar(&o.mock, "mock", "127.0.0.1:8000", "mock-llm address (unused with --upstream)")
	fs.StringVar(&o.upstream, "upstream", os.Getenv("UPSTREAM"), "external OpenAI-compatible server, e.g. http://127.0.0.1:8000 (env UPSTREAM)")
	fs.StringVar(&o.upstreamKey, "upstream-api-key", "", "API key sent to the upstream as a bearer token (env UPSTREAM_API_KEY)")
	fs.BoolVar(&o.picker, "picker", os.Getenv("PICKER") == "1", fmt.Sprintf("start %d simulated vLLM servers (mock-llm --sim, from --mock's port up) behind the endpoint picker, their pool applied to the keystore (env PICKER=1)", pickerServers))
	fs.IntVar(&o.concurrency, "concurrency", 2, "Envoy worker threads")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "give up when the gateway is not serving after this long")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.upstreamKey == "" {
		o.upstreamKey = os.Getenv("UPSTREAM_API_KEY")
	}
	if o.picker && o.upstream != "" {
		return o, errors.New("--picker (PICKER=1) runs its own simulated servers; it cannot be combined with --upstream (UPSTREAM)")
	}
	o.t0 = time.Now()
	if ns := os.Getenv("TOLLGATE_RUN_T0"); ns != "" { // set by make when the command started
		if n, err := strconv.ParseInt(ns, 10, 64); err == nil && n > 0 {
			o.t0 = time.Unix(0, n)
		}
	}
	return o, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "run-demo:", err)
		os.Exit(2)
	}
	if err := run(ctx, o, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "run-demo:", err)
		os.Exit(1)
	}
}

// run starts everything, waits for Ctrl-C or a process dying, and stops
// everything it started.
func run(ctx context.Context, o options, out io.Writer, log *slog.Logger) (err error) {
	runDir, err := filepath.Abs(filepath.Join(o.dataDir, "run"))
	if err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", runDir, err)
	}
	var up demo.Upstream
	if o.upstream != "" {
		if up, err = demo.ParseUpstream(o.upstream); err != nil {
			return err
		}
		up.APIKey = o.upstreamKey
	}
	for _, bin := range []string{o.envoy, o.tollgate} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s is missing (run `make build envoy cli`, or `make run`): %w", bin, err)
		}
	}
	addrs := map[string]string{"gateway listener (--listen, PORT)": o.listen, "Envoy admin (--admin)": o.admin,
		"keystore data plane (--keystore)": o.keystoreData, "keystore admin (--keystore-admin)": o.keystoreAdmin,
		"developer portal (--portal)": o.portal}
	if o.upstream == "" {
		addrs["mock-llm (--mock)"] = o.mock
	}
	if host, port, err := net.SplitHostPort(o.mock); o.picker && err == nil && port != "0" {
		n, _ := strconv.Atoi(port)
		for i := 1; i < pickerServers; i++ {
			addrs[fmt.Sprintf("simulated server %d (--mock + %d)", i+1, i)] = net.JoinHostPort(host, strconv.Itoa(n+i))
		}
	}
	for what, a := range addrs {
		if err := portFree(a); err != nil {
			return fmt.Errorf("%s %s: %w (is another demo running?)", what, a, err)
		}
	}

	// stops end what was started, in reverse order: Envoy first, the
	// keystore last.
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		if err == nil {
			fmt.Fprintln(out, "tollgate: stopped everything; data kept in "+o.dataDir)
		}
	}()
	died := make(chan *proc, 4)
	superr := make(chan error, 4)
	// The keystore's data plane requires this token; Envoy hands it to the
	// filters (host_env_keys in the example), so it never sits in a file.
	dataToken, err := demo.NewDataToken()
	if err != nil {
		return err
	}
	accounts, err := demo.PortalAccounts(o.dataDir)
	if err != nil {
		return err
	}
	procEnv := append(os.Environ(), demo.DataTokenEnv+"="+dataToken)
	procEnv = append(procEnv, accounts.Env()...)
	launch := func(name string, restart bool, report chan<- *proc, args ...string) (*proc, error) {
		p, err := startProc(name, filepath.Join(runDir, name+".log"), report, restart, procEnv, args...)
		if err != nil {
			return nil, err
		}
		p.log = log
		log.Info("started", "process", name, "pid", p.cmd.Process.Pid, "log", p.logPath)
		return p, nil
	}
	// start runs a process whose death ends the demo (Envoy).
	start := func(name string, args ...string) (*proc, error) {
		p, err := launch(name, false, died, args...)
		if err != nil {
			return nil, err
		}
		stops = append(stops, func() { p.stop(log) })
		return p, nil
	}
	// supervise keeps a started process running: a keystore or mock-llm
	// that dies is logged and restarted with backoff, and the gateway goes
	// on meanwhile (cached keys keep working).
	supervise := func(p *proc, args ...string) {
		sctx, scancel := context.WithCancel(context.WithoutCancel(ctx))
		s := &demo.Supervisor{Name: p.name, Backoff: demo.DefaultBackoff, Log: log,
			Start: func() (demo.Process, error) {
				np, err := launch(p.name, true, nil, args...)
				if err != nil {
					return nil, err
				}
				return np, nil
			}}
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			if err := s.Run(sctx, p); err != nil {
				superr <- fmt.Errorf("%s could not be restarted: %w", p.name, err)
			}
		}()
		stops = append(stops, func() { scancel(); <-finished })
	}
	waitCtx, cancel := context.WithTimeout(ctx, o.readyTimeout)
	defer cancel()

	// 1. The keystore, on its embedded store in the data dir.
	ksReady := filepath.Join(runDir, "keystore.ready")
	_ = os.Remove(ksReady)
	ksArgs := []string{o.tollgate, "serve", "--data-dir", o.dataDir, "--listen", o.keystoreData,
		"--admin-listen", o.keystoreAdmin, "--ready-file", ksReady,
		"--portal", o.portal, "--portal-gateway-url", "http://" + o.listen,
		"--portal-admin", accounts.Admin.Email, "--portal-demo-developer", accounts.Demo.Email}
	ks, err := launch("keystore", false, nil, ksArgs...)
	if err != nil {
		return err
	}
	if err := waitFile(waitCtx, ks, ksReady); err != nil {
		ks.stop(log)
		return err
	}
	supervise(ks, ksArgs...)

	// 2. The model server: the mock, or with --picker simulated servers.
	var sims []string
	if o.picker {
		if sims, err = startSims(waitCtx, o, runDir, launch, supervise); err != nil {
			return err
		}
		host, port, _ := net.SplitHostPort(sims[0])
		up.Host = host
		up.Port, _ = strconv.Atoi(port)
	} else if o.upstream == "" {
		mockReady := filepath.Join(runDir, "mock-llm.ready")
		_ = os.Remove(mockReady)
		mockArgs := []string{o.tollgate, "mock-llm", "--listen", o.mock, "--ready-file", mockReady}
		m, err := launch("mock-llm", false, nil, mockArgs...)
		if err != nil {
			return err
		}
		if err := waitFile(waitCtx, m, mockReady); err != nil {
			m.stop(log)
			return err
		}
		supervise(m, mockArgs...)
		host, port, _ := net.SplitHostPort(o.mock)
		up.Host = host
		up.Port, _ = strconv.Atoi(port)
	}

	// 3. Products, the demo app and a fresh key.
	token, err := keystore.ReadAdminTokenFile(o.dataDir)
	if err != nil {
		return fmt.Errorf("read the keystore admin token: %w", err)
	}
	admin, err := client.New("http://"+o.keystoreAdmin, token)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(o.products)
	if err != nil {
		return fmt.Errorf("read products: %w", err)
	}
	if err := demo.ApplyProducts(waitCtx, admin, o.products, raw); err != nil {
		return err
	}
	if o.picker {
		if err := demo.ApplyPickerPool(waitCtx, admin, sims); err != nil {
			return err
		}
	}
	acct := demo.Account{Developer: accounts.Demo.Email, App: "demo", Products: []string{"demo"}, KeyLifetime: "720h"}
	if o.upstream != "" {
		acct.App, acct.Products = "demo-upstream", []string{"demo-open"}
	}
	key, err := demo.IssueKey(waitCtx, admin, acct)
	if err != nil {
		return err
	}

	// 4. Envoy with the full chain.
	src, err := os.ReadFile(o.config)
	if err != nil {
		return fmt.Errorf("read gateway config: %w", err)
	}
	buildDir, err := filepath.Abs(o.buildDir)
	if err != nil {
		return fmt.Errorf("build dir: %w", err)
	}
	cfg, err := demo.Render(src, demo.RenderOptions{
		Listen: o.listen, Admin: o.admin, Keystore: o.keystoreData, Upstream: up,
		BuildDir: buildDir, AccessLog: filepath.Join(runDir, "access.log"), AnyModel: o.upstream != "",
		Picker: o.picker,
	})
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(runDir, "envoy.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("write envoy config: %w", err)
	}
	env, err := start("envoy", o.envoy, "-c", cfgPath, "--concurrency", strconv.Itoa(o.concurrency),
		"--disable-hot-restart", "-l", "info", "--log-path", filepath.Join(runDir, "envoy.log"))
	if err != nil {
		return err
	}
	model := "gemma-3-1b-it"
	if o.upstream != "" {
		model = ""
	}
	probe, err := waitGateway(waitCtx, env, "http://"+o.admin, "http://"+o.listen, key.Secret, model)
	if err != nil {
		return err
	}
	if model == "" {
		model = firstModel(probe) // the upstream's own list, through the chain
	}

	printBanner(out, o, accounts, key.Secret, key.ID, model, up, sims, runDir, time.Since(o.t0))

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "\ntollgate: stopping…")
		return nil
	case p := <-died:
		return fmt.Errorf("%s exited unexpectedly (%v); last lines of %s:\n%s", p.name, p.err, p.logPath, tailFile(p.logPath, 20))
	case err := <-superr:
		return err
	}
}

// printBanner shows how to use the running gateway.
func printBanner(w io.Writer, o options, accounts demo.PortalLogins, secret, keyID, model string, up demo.Upstream, sims []string, runDir string, took time.Duration) {
	backend := "tollgate mock-llm (deterministic demo model server) on " + up.Addr()
	chain := "apikey → quota → modelroute → tokencount"
	logs := "{envoy,keystore,mock-llm}.log"
	switch {
	case o.upstream != "":
		backend = up.URL()
	case len(sims) > 0:
		backend = fmt.Sprintf("%d simulated vLLM servers (mock-llm --sim) on %s,\n              pool %q in the keystore (tollgate pools list)", len(sims), strings.Join(sims, ", "), demo.PickerPool)
		chain = "apikey → quota → modelroute → picker → tokencount"
		logs = "{envoy,keystore,sim-1,…}.log"
	}
	if model == "" {
		model = "YOUR-MODEL"
	}
	var b strings.Builder
	line := strings.Repeat("─", 72)
	fmt.Fprintf(&b, "\n%s\n  Tollgate is ready in %.1fs\n%s\n", line, took.Seconds(), line)
	fmt.Fprintf(&b, "  gateway     http://%s   (%s)\n", o.listen, chain)
	fmt.Fprintf(&b, "  backend     %s\n", backend)
	fmt.Fprintf(&b, "  keystore    http://%s (admin http://%s, token in %s)\n", o.keystoreData, o.keystoreAdmin, filepath.Join(o.dataDir, keystore.AdminTokenFile))
	fmt.Fprintf(&b, "  metrics     http://%s/stats/prometheus\n", o.admin)
	fmt.Fprintf(&b, "  portal      http://%s   developer %s / %s, admin %s / %s\n", o.portal,
		accounts.Demo.Email, accounts.Demo.Password, accounts.Admin.Email, accounts.Admin.Password)
	fmt.Fprintf(&b, "  logs        %s/%s, access.log\n\n", runDir, logs)
	fmt.Fprintf(&b, "  API key     %s   (%s; shown once, replaced on the next run)\n\n", secret, keyID)
	fmt.Fprintf(&b, "  Try it:\n\n")
	fmt.Fprintf(&b, "  curl -s http://%s/v1/chat/completions \\\n", o.listen)
	fmt.Fprintf(&b, "    -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n", secret)
	fmt.Fprintf(&b, "    -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'\n\n", model)
	fmt.Fprintf(&b, "  Streaming: add \"stream\": true (and curl -N). Without the key: 401.\n")
	fmt.Fprintf(&b, "  A keystore or mock-llm that dies is restarted; cached keys keep working meanwhile.\n")
	if len(sims) > 0 {
		fmt.Fprintf(&b, "  Picks: the access log's \"pick\" field; per-server metrics: tollgate_picker_* on /stats/prometheus.\n")
	}
	fmt.Fprintf(&b, "  Press Ctrl-C to stop.\n%s\n", line)
	fmt.Fprint(w, b.String())
}

// portFree reports an error when something already listens on addr.
func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}
	return ln.Close()
}

// proc is one child process.
type proc struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
	err           error
	stopping      atomic.Bool
	log           *slog.Logger
}

// startProc starts a child in its own process group (so the terminal's
// Ctrl-C reaches only run-demo, which stops children in order), killed by
// the kernel should run-demo itself die, with output in logPath.
func startProc(name, logPath string, died chan<- *proc, restart bool, env []string, args ...string) (*proc, error) {
	mode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if restart {
		mode = os.O_CREATE | os.O_WRONLY | os.O_APPEND // keep the log of the run that died
	}
	f, err := os.OpenFile(logPath, mode, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
		if died != nil && !p.stopping.Load() {
			select {
			case died <- p:
			default:
			}
		}
	}()
	return p, nil
}

// Done is closed once the process has exited.
func (p *proc) Done() <-chan struct{} { return p.done }

// Err is how the process exited.
func (p *proc) Err() error { return p.err }

// Stop is stop with the process's logger (for demo.Supervisor).
func (p *proc) Stop() { p.stop(p.log) }

// stop asks the process to exit (SIGTERM) and kills it after ten seconds.
func (p *proc) stop(log *slog.Logger) {
	select {
	case <-p.done:
		return
	default:
	}
	p.stopping.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		log.Info("stopped", "process", p.name)
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		log.Warn("killed after 10s", "process", p.name)
	}
}

// waitFile waits for a ready file the process writes once it listens.
func waitFile(ctx context.Context, p *proc, path string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if raw, err := os.ReadFile(path); err == nil && json.Valid(raw) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.err, tailFile(p.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", p.name, ctx.Err())
		case <-tick.C:
		}
	}
}

// firstModel returns the first id of a /v1/models answer, or "".
func firstModel(body []byte) string {
	var l struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &l) != nil || len(l.Data) == 0 {
		return ""
	}
	return l.Data[0].ID
}

// waitGateway waits for Envoy's admin /ready, then for a request through
// the whole chain to succeed: a chat completion of model, or with an
// external upstream (model "") GET /v1/models, whose answer it returns.
func waitGateway(ctx context.Context, p *proc, adminURL, gatewayURL, key, model string) ([]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "Envoy admin not answering"
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("envoy exited before it was ready (%v):\n%s", p.err, tailFile(p.logPath, 30))
		case <-ctx.Done():
			return nil, fmt.Errorf("gateway not ready (%s): %w; see %s", last, ctx.Err(), p.logPath)
		case <-tick.C:
		}
		if body, err := get(ctx, c, adminURL+"/ready", nil); err != nil || strings.TrimSpace(body) != "LIVE" {
			continue
		}
		var req *http.Request
		var err error
		if model != "" {
			body := `{"model":"` + model + `","messages":[{"role":"user","content":"ready?"}],"max_tokens":4}`
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/chat/completions", strings.NewReader(body))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
			}
		} else {
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, gatewayURL+"/v1/models", nil)
		}
		if err != nil {
			return nil, fmt.Errorf("probe request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := c.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		last = fmt.Sprintf("probe answered %d: %.300s", resp.StatusCode, bytes.TrimSpace(raw))
		switch {
		case resp.StatusCode == http.StatusOK:
			return raw, nil
		case resp.StatusCode >= 500:
			continue // not connected yet
		case model == "" && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden:
			return nil, nil // the chain let it through; the upstream answered its own way
		default:
			// The chain answers but refuses: waiting will not help.
			return nil, fmt.Errorf("gateway is up but the probe failed: %s", last)
		}
	}
}

// get fetches url and returns the body.
func get(ctx context.Context, c *http.Client, url string, hdr http.Header) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// tailFile returns the last n lines of a log.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
