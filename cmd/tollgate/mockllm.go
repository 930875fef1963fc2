package main

import (
	"context"
	"fmt"
	"net"
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
	readyFile := fs.String("ready-file", "", `write {"data":ADDR,...} here once listening (useful with port 0)`)
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
	var names []string
	for _, m := range strings.Split(*models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			names = append(names, m)
		}
	}
	if len(names) == 0 {
		return usagef("--models lists no model")
	}
	log, err := newLogger(e.stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	srv := mockllm.New(mockllm.Options{
		Models: names, TimeToFirstToken: *ttft, InterTokenDelay: *itl,
		EmbeddingDimensions: *dims, MaxBodyBytes: *maxBody, Logger: log,
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	addr := ln.Addr().String()
	warnIfPublic(log, "mock-llm", addr)
	if *readyFile != "" {
		if err := writeReadyFile(*readyFile, addr, ""); err != nil {
			ln.Close()
			return err
		}
	}
	log.Info("mock-llm serving", "addr", addr, "models", names, "ttft", *ttft, "itl", *itl)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("mock-llm stopped")
	return nil
}
