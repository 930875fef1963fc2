package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	neturl "net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/envoytest"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// lines collects a process's output and signals when a line matches.
type lines struct {
	mu   sync.Mutex
	all  []string
	seen chan struct{}
	want string
	once sync.Once
}

func (l *lines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		l.mu.Unlock()
		if strings.Contains(sc.Text(), l.want) {
			l.once.Do(func() { close(l.seen) })
		}
	}
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// The banner's key and curl command, as a user would copy them.
var (
	bannerKey  = regexp.MustCompile(`API key\s+(tg_[A-Za-z0-9]+)`)
	bannerURL  = regexp.MustCompile(`curl -s (http://\S+)`)
	bannerBody = regexp.MustCompile(`-d '(\{.*\})'`)
	// bannerPortal is the portal line: URL, the demo developer's e-mail and password.
	bannerPortal = regexp.MustCompile(`portal\s+(http://\S+)\s+developer (\S+) / (\S+),`)
)

// runningDemo is a started run-demo process and what it printed so far.
type runningDemo struct {
	cmd       *exec.Cmd
	out, errs *lines
	exited    chan error
	addrs     map[string]string // flag name → loopback address it was given
	dataDir   string
}

// startDemo runs run-demo (named name in failures) on the shipped
// gateway.yaml with a free loopback address for each of addrKeys, env added
// to its environment, and extra flags, and returns once it printed its
// banner; the test's cleanup kills it if it still runs.
func startDemo(t *testing.T, name string, addrKeys, env []string, extra ...string) *runningDemo {
	t.Helper()
	// A port freeAddr found free can be taken by another test's process
	// before run-demo's child binds it: that start is retried on new ports.
	for attempt := 1; ; attempt++ {
		d, ready := tryDemo(t, name, addrKeys, env, extra...)
		if ready {
			return d
		}
		if attempt == 3 || !strings.Contains(d.errs.text(), "Address already in use") {
			t.Fatalf("%s exited before it was ready:\n%s\n%s", name, d.out.text(), d.errs.text())
		}
		t.Logf("%s: a port was taken before it bound it; starting again on new ports", name)
	}
}

// tryDemo is one start of startDemo; ready is false when run-demo exited
// before printing its banner.
func tryDemo(t *testing.T, name string, addrKeys, env []string, extra ...string) (*runningDemo, bool) {
	t.Helper()
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	envoy := envoytest.RequireEnvoy(t)
	buildDir, err := envoytest.BuildDir()
	require.NoError(t, err)
	envoytest.WasmPath(t, "tollgate") // gateway.yaml loads the suite module only
	d := &runningDemo{addrs: map[string]string{}, dataDir: t.TempDir(), exited: make(chan error, 1),
		out:  &lines{seen: make(chan struct{}), want: "Press Ctrl-C to stop"},
		errs: &lines{seen: make(chan struct{}), want: "\x00never"}}
	for _, k := range addrKeys {
		d.addrs[k] = freeAddr(t)
	}
	args := append(append([]string{}, extra...), "--data-dir", d.dataDir, "--envoy", envoy, "--tollgate", built.tollgate, "--build-dir", buildDir,
		"--config", filepath.Join(root, "examples", "envoy", "gateway.yaml"))
	for k, v := range d.addrs {
		args = append(args, "--"+k, v)
	}
	d.cmd = exec.Command(built.runDemo, args...)
	d.cmd.Dir = root
	d.cmd.Env = append(append(d.cmd.Environ(), "UPSTREAM=", "PORT="), env...)
	stdout, err := d.cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := d.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, d.cmd.Start())
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); d.out.read(stdout) }()
	go func() { defer readers.Done(); d.errs.read(stderr) }()
	go func() {
		readers.Wait()
		d.exited <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
		}
	})
	select {
	case <-d.out.seen:
		return d, true
	case err := <-d.exited:
		t.Logf("%s exited before it was ready: %v", name, err)
		return d, false
	case <-time.After(3 * time.Minute):
		t.Fatalf("%s not ready after 3 minutes:\n%s\n%s", name, d.out.text(), d.errs.text())
		return nil, false
	}
}

// TestRunDemo runs `make run`'s program on free ports with a fresh data
// dir, follows the printed curl, and stops it the way Ctrl-C does.
func TestRunDemo(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	d := startDemo(t, "run-demo", []string{"listen", "admin", "keystore", "keystore-admin", "mock", "portal"}, nil,
		"--products", filepath.Join(root, "examples", "demo-products.yaml"))
	out, errs, exited, cmd, addrs := d.out, d.errs, d.exited, d.cmd, d.addrs
	banner := out.text()
	key := bannerKey.FindStringSubmatch(banner)
	url := bannerURL.FindStringSubmatch(banner)
	body := bannerBody.FindStringSubmatch(banner)
	require.NotNil(t, key, banner)
	require.NotNil(t, url, banner)
	require.NotNil(t, body, banner)
	assert.Equal(t, "http://"+addrs["listen"]+"/v1/chat/completions", url[1])
	assert.Regexp(t, `Tollgate is ready in \d+\.\ds`, banner)

	// The printed curl, as a user would paste it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url[1], strings.NewReader(body[1]))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
	var completion struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(raw, &completion))
	require.Len(t, completion.Choices, 1)
	assert.NotEmpty(t, completion.Choices[0].Message.Content)
	assert.Positive(t, completion.Usage.TotalTokens)
	demoSeesUsage(t, banner, int64(completion.Usage.TotalTokens))

	// The keystore dies: the gateway goes on serving the key it cached, and
	// run-demo restarts the keystore (logged) instead of stopping the demo.
	m := regexp.MustCompile(`msg=started process=keystore pid=(\d+)`).FindStringSubmatch(errs.text())
	require.NotNil(t, m, errs.text())
	pid, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	models := func() int {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrs["listen"]+"/v1/models", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key[1])
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, models(), "a cached key keeps working while the keystore is away")
	require.Eventually(t, func() bool { return strings.Contains(errs.text(), "msg=restarted process=keystore") },
		30*time.Second, 50*time.Millisecond, "the keystore is restarted:\n%s", errs.text())
	assert.Contains(t, errs.text(), `msg="process exited; restarting" process=keystore error="signal: killed"`)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addrs["keystore"] + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "the restarted keystore answers")
	assert.Equal(t, http.StatusOK, models(), "the gateway still serves after the restart")
	select {
	case err := <-exited:
		t.Fatalf("run-demo stopped when the keystore died (%v):\n%s", err, errs.text())
	default:
	}

	// Ctrl-C: everything stops, and every port is free again.
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-exited:
		require.NoError(t, err, "run-demo exit status:\n%s\n%s", out.text(), errs.text())
	case <-time.After(60 * time.Second):
		t.Fatalf("run-demo did not stop within 60s of SIGINT:\n%s", errs.text())
	}
	assert.Contains(t, out.text(), "stopped everything")
	for k, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if assert.NoError(t, err, "%s (%s) still in use after Ctrl-C", k, a) {
			ln.Close()
		}
	}
	for _, p := range []string{"envoy", "keystore", "mock-llm"} {
		assert.Contains(t, errs.text(), "msg=stopped process="+p)
	}
}

// demoSeesUsage signs in to the printed portal as the demo developer and
// waits until its usage page counts the printed curl's tokens.
func demoSeesUsage(t *testing.T, banner string, tokens int64) {
	t.Helper()
	m := bannerPortal.FindStringSubmatch(banner)
	require.NotNil(t, m, banner)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(m[1] + "/signin")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	require.NotNil(t, csrf, "%s", page)
	resp, err = c.PostForm(m[1]+"/signin", neturl.Values{"csrf": {string(csrf[1])}, "email": {m[2]}, "password": {m[3]}})
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "/apps", resp.Request.URL.Path, "the demo developer signs in: %s", page)
	assert.Contains(t, string(page), `href="/apps/demo"`, "the demo app is the demo developer's")
	// run-demo's own readiness probe used the key too, so the page counts
	// at least the printed curl's tokens.
	total := regexp.MustCompile(`<strong id="total-tokens">(\d+)</strong>`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get(m[1] + "/usage")
		require.NoError(t, err)
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := total.FindSubmatch(page); n != nil {
			if got, _ := strconv.ParseInt(string(n[1]), 10, 64); got >= tokens {
				assert.Contains(t, string(page), "<td>demo</td><td>gemma-3-1b-it</td>")
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "the portal's usage page never counted the curl's %d tokens:\n%s", tokens, page)
		time.Sleep(250 * time.Millisecond) // polling the page, with a deadline
	}
}

// TestRunDemoPicker runs `make run PICKER=1`'s program: three simulated
// vLLM servers behind the endpoint picker, their pool applied to the
// keystore. The printed curl works, a burst spreads over the servers by the
// picker's choice, `tollgate pools list` shows the pool, and Ctrl-C stops
// all of it.
func TestRunDemoPicker(t *testing.T) {
	root, err := envoytest.RepoRoot()
	require.NoError(t, err)
	d := startDemo(t, "run-demo --picker", []string{"listen", "admin", "keystore", "keystore-admin", "portal"}, []string{"PICKER="},
		"--picker", "--mock", "127.0.0.1:0", "--products", filepath.Join(root, "examples", "demo-products.yaml"))
	out, errs, exited, cmd, addrs, dataDir := d.out, d.errs, d.exited, d.cmd, d.addrs, d.dataDir
	banner := out.text()
	assert.Contains(t, banner, "apikey → quota → modelroute → picker → tokencount")
	sims := regexp.MustCompile(`3 simulated vLLM servers \(mock-llm --sim\) on (\S+), (\S+), (\S+),`).FindStringSubmatch(banner)
	require.NotNil(t, sims, banner)
	key := bannerKey.FindStringSubmatch(banner)
	url := bannerURL.FindStringSubmatch(banner)
	body := bannerBody.FindStringSubmatch(banner)
	require.NotNil(t, key, banner)
	require.NotNil(t, url, banner)
	require.NotNil(t, body, banner)

	// A burst of the printed curl, four at a time.
	const n = 12
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url[1], strings.NewReader(body[1]))
				if err != nil {
					statuses <- 0
					continue
				}
				req.Header.Set("Authorization", "Bearer "+key[1])
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					statuses <- 0
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses <- resp.StatusCode
			}
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		assert.Equal(t, http.StatusOK, s)
	}
	// The picker's per-endpoint counters: every pick went to one of the
	// three servers, and the burst was spread over more than one.
	stats := func() string {
		resp, err := http.Get("http://" + addrs["admin"] + "/stats/prometheus")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}()
	picked, total := 0, 0
	for _, s := range sims[1:] {
		ep := strings.NewReplacer(".", "_", ":", "_").Replace(s)
		m := regexp.MustCompile(`(?m)^tollgate_picker_picks\{endpoint="` + ep + `"\} (\d+)$`).FindStringSubmatch(stats)
		require.NotNil(t, m, "no pick counter for %s:\n%s", s, stats)
		c, _ := strconv.Atoi(m[1])
		total += c
		if c > 0 {
			picked++
		}
	}
	assert.GreaterOrEqual(t, total, n, "every request of the burst was picked for (the readiness probe too)")
	assert.GreaterOrEqual(t, picked, 2, "the burst went to one server only:\n%s", stats)

	// The pool is the keystore's, as the CLI shows it.
	list := exec.Command(built.tollgate, "pools", "list", "--admin-url", "http://"+addrs["keystore-admin"], "--data-dir", dataDir)
	listed, err := list.CombinedOutput()
	require.NoError(t, err, "%s", listed)
	assert.Contains(t, string(listed), sims[1]+","+sims[2]+","+sims[3])

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-exited:
		require.NoError(t, err, "run-demo exit status:\n%s\n%s", out.text(), errs.text())
	case <-time.After(60 * time.Second):
		t.Fatalf("run-demo --picker did not stop within 60s of SIGINT:\n%s", errs.text())
	}
	for _, p := range []string{"envoy", "keystore", "sim-1", "sim-2", "sim-3"} {
		assert.Contains(t, errs.text(), "msg=stopped process="+p)
	}
}
