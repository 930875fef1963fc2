package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/mockllm"
)

// runMockLLM serves the deterministic OpenAI-compatible demo backend.
func runMockLLM(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "mock-llm")
	listen := fs.String("listen", mockllm.DefaultListen, "address to serve on; keep it on loopback")
	models := fs.String("models", strings.Join(mockllm.DefaultModels(), ","), `comma-separated model names; "prefix*" accepts any name with that prefix, "*" any model`)
	ttft := fs.Duration("ttft", 50*time.Millisecond, "time to first token (and the prefill part of JSON responses)")
	itl := fs.Duration("itl", 10*time.Millisecond, "delay between streamed tokens")
	dims := fs.Int("embedding-dimensions", mockllm.DefaultEmbeddingDimensions, "embedding size when the request sets no dimensions")
	maxBody := fs.Int64("max-body-bytes", mockllm.DefaultMaxBodyBytes, "largest request body")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	readyFile := fs.String("ready-file", "", `write {"data":ADDR,...} here once listening (useful with port 0); with --replicas, ADDR lists every address, comma-separated`)
	usageMode := fs.String("usage", mockllm.UsageExact, "usage reported: exact, worst (each choice generates its whole output cap; prompt_tokens = tokencount's default prompt bound), absurd, negative, fraction or missing; X-Mock-Usage overrides it per request")
	simulate := fs.Bool("sim", false, "simulate a vLLM server under load: max-num-seqs, a waiting queue, a prefix cache, LoRA slots and vLLM's /metrics (the --sim-* flags)")
	replicas := fs.Int("replicas", 1, "serve this many independent servers (each its own state), on consecutive ports from --listen's, or each on a free port with port 0")
	var so mockllm.SimOptions
	fs.IntVar(&so.MaxNumSeqs, "sim-max-num-seqs", 4, "sequences running at once")
	fs.IntVar(&so.MaxQueue, "sim-max-queue", 1000, "waiting requests before 429")
	fs.DurationVar(&so.Overhead, "sim-overhead", 20*time.Millisecond, "fixed part of the time to first token")
	fs.DurationVar(&so.PrefillPerToken, "sim-prefill-per-token", 500*time.Microsecond, "prefill time of one uncached prompt token")
	fs.DurationVar(&so.ITL, "sim-itl", 10*time.Millisecond, "time between output tokens")
	fs.Float64Var(&so.LoadFactor, "sim-load-factor", 1, "slowdown of prefill and decode with a full batch (≥1)")
	fs.IntVar(&so.BlockSize, "sim-block-size", 16, "KV-cache block size in tokens")
	fs.IntVar(&so.NumBlocks, "sim-num-blocks", 512, "KV-cache blocks (prefix cache size)")
	loras := fs.String("sim-loras", "", "comma-separated LoRA adapter names served as models")
	preloaded := fs.String("sim-preloaded-loras", "", "comma-separated adapters resident from the start")
	fs.IntVar(&so.MaxLoras, "sim-max-loras", 2, "adapters resident at once")
	fs.DurationVar(&so.LoraLoadTime, "sim-lora-load-time", 50*time.Millisecond, "added to the prefill when an adapter must be loaded")
	fs.Float64Var(&so.TimeScale, "sim-time-scale", 1, "multiplies every simulated delay (0.1 runs ten times faster)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *ttft < 0 || *itl < 0 {
		return usagef("--ttft and --itl must not be negative")
	}
	if _, err := mockllm.ParseUsageMode(*usageMode); err != nil {
		return usagef("--usage: %v", err)
	}
	var names []string
	for _, m := range strings.Split(*models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			names = append(names, m)
		}
	}
	if len(names) == 0 {
		return usagef("--models lists no model")
	}
	if *replicas < 1 || *replicas > 64 {
		return usagef("--replicas must be between 1 and 64")
	}
	var sim *mockllm.SimOptions
	if *simulate {
		so.Loras, so.PreloadedLoras = splitList(*loras), splitList(*preloaded)
		if so.MaxNumSeqs < 1 || so.MaxQueue < 1 || so.BlockSize < 1 || so.NumBlocks < 1 || so.MaxLoras < 1 || so.TimeScale <= 0 || so.LoadFactor < 1 {
			return usagef("--sim-max-num-seqs, --sim-max-queue, --sim-block-size, --sim-num-blocks and --sim-max-loras must be positive, --sim-time-scale above 0 and --sim-load-factor at least 1")
		}
		if err := so.Validate(); err != nil {
			return usagef("%v", err)
		}
		sim = &so
	}
	log, err := newLogger(e.stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return usagef("--listen %q: %v", *listen, err)
	}
	first, err := strconv.Atoi(port)
	if err != nil || first < 0 || first+*replicas-1 > 65535 {
		return fmt.Errorf("listen on %s: bad port %q", *listen, port)
	}
	var lns []net.Listener
	var addrs []string
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	var lc net.ListenConfig
	for i := 0; i < *replicas; i++ {
		p := 0
		if first > 0 {
			p = first + i
		}
		a := net.JoinHostPort(host, strconv.Itoa(p))
		ln, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen on %s: %w", a, err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
		warnIfPublic(log, "mock-llm", ln.Addr().String())
	}
	if *readyFile != "" {
		if err := writeReadyFile(*readyFile, strings.Join(addrs, ","), ""); err != nil {
			closeAll()
			return err
		}
	}
	log.Info("mock-llm serving", "addrs", addrs, "models", names, "ttft", *ttft, "itl", *itl, "sim", *simulate)
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		srv := mockllm.New(mockllm.Options{
			Models: names, TimeToFirstToken: *ttft, InterTokenDelay: *itl,
			EmbeddingDimensions: *dims, MaxBodyBytes: *maxBody, Logger: log, Sim: sim, Usage: *usageMode,
		})
		go func() { errc <- srv.Serve(ctx, ln) }()
	}
	var errs []error
	for range lns {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("mock-llm stopped")
	return nil
}
