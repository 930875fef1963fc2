// Package mockllm is a deterministic OpenAI-compatible model server. It
// stands in for vLLM or OpenAI in the demo gateway (`tollgate mock-llm`),
// in end-to-end tests and in benchmarks: equal requests get equal replies,
// usage is exact under a documented tokenizer (Tokens), and streams are
// paced like a real model (time to first token, then one token per
// interval), with stream_options.include_usage honoured as OpenAI does.
//
// Endpoints: POST /v1/chat/completions, POST /v1/completions,
// POST /v1/embeddings, POST /v1/moderations (deterministic scores: see
// Moderate), GET /v1/models, GET /v1/models/{id}, GET /healthz.
// Errors use OpenAI's shape, {"error":{"message","type","param","code"}}.
//
// Three request headers help tests: X-Mock-Status: <400-599> answers with an
// OpenAI-shaped error of that status, X-Mock-Abort-After: <n> drops the
// connection after n streamed tokens, and X-Mock-Usage: <mode> reports the
// usage of a usage mode (UsageWorst: the most the request permits; or
// absurd, negative, fractional or missing usage), as Options.Usage does for
// every request.
//
// With Options.Sim it is a simulated vLLM server under load (SimOptions):
// a bounded batch with a waiting queue, a prefix cache, LoRA slots and
// vLLM's metric names on GET /metrics, for the endpoint picker's tests.
package mockllm

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/apierror"
)

// DefaultModels returns the names the mock serves when Options.Models is
// empty: the demo chain's public and backend names plus an embedding model.
func DefaultModels() []string {
	return []string{"gemma-3-1b-it", "/gcs/google/gemma-3-1b-it", "llama-3.1-8b", "text-embedding-3-small"}
}

// Defaults of Options.
const (
	DefaultListen              = "127.0.0.1:8000"
	DefaultEmbeddingDimensions = 256
	DefaultMaxBodyBytes        = 8 << 20
	// DefaultCompletionsMaxTokens is OpenAI's default max_tokens for the
	// legacy /v1/completions endpoint.
	DefaultCompletionsMaxTokens = 16
	maxChoices                  = 8
	maxEmbeddingInputs          = 2048
	maxEmbeddingDimensions      = 4096
	// HeaderStatus makes the mock answer with an error of that status.
	HeaderStatus = "X-Mock-Status"
	// HeaderAbortAfter makes the mock drop a stream after that many tokens.
	HeaderAbortAfter = "X-Mock-Abort-After"
	// systemFingerprint marks every response as the mock's.
	systemFingerprint = "fp_tollgate_mock"
)

// Options configure a Server; the zero value serves DefaultModels() with no
// pacing delays.
type Options struct {
	// Models are the model names served. An entry ending in "*" accepts
	// every name with that prefix ("*" accepts any) and is not listed by
	// GET /v1/models. Empty means DefaultModels().
	Models []string
	// TimeToFirstToken is the delay before the first streamed token, and
	// the prefill part of a JSON response's delay.
	TimeToFirstToken time.Duration
	// InterTokenDelay is the delay between streamed tokens; a JSON response
	// waits TimeToFirstToken + (tokens-1) × InterTokenDelay, as a real model would.
	InterTokenDelay time.Duration
	// EmbeddingDimensions is the vector size when the request sets no
	// "dimensions" (default 256).
	EmbeddingDimensions int
	// MaxBodyBytes bounds request bodies; larger ones get 413 (default 8 MiB).
	MaxBodyBytes int64
	// Now gives the "created" timestamps (default time.Now).
	Now func() time.Time
	// Logger receives one debug line per request (default: discard).
	Logger *slog.Logger
	// Usage is the usage mode of every request (UsageExact when empty; see
	// ParseUsageMode); X-Mock-Usage overrides it per request.
	Usage string
	// Sim, when set, makes the server a simulated vLLM under load (see
	// SimOptions); TimeToFirstToken and InterTokenDelay are then unused for
	// chat and completions, and GET /metrics is served.
	Sim *SimOptions
}

// Server is the mock model server; it is an http.Handler.
type Server struct {
	opts    Options
	exact   map[string]bool
	listed  []string
	prefix  []string
	handler http.Handler
	sim     *sim   // nil unless Options.Sim
	usage   string // the default usage mode
}

// New returns a Server for opts.
func New(opts Options) *Server {
	if len(opts.Models) == 0 {
		opts.Models = DefaultModels()
	}
	if opts.EmbeddingDimensions <= 0 {
		opts.EmbeddingDimensions = DefaultEmbeddingDimensions
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, exact: map[string]bool{}}
	if m, err := ParseUsageMode(opts.Usage); err == nil {
		s.usage = m
	} else {
		s.usage = UsageExact
	}
	models := opts.Models
	if opts.Sim != nil {
		s.sim = newSim(*opts.Sim)
		models = append(slices.Clone(models), opts.Sim.Loras...)
	}
	for _, m := range models {
		if p, ok := strings.CutSuffix(m, "*"); ok {
			s.prefix = append(s.prefix, p)
			continue
		}
		if !s.exact[m] {
			s.exact[m] = true
			s.listed = append(s.listed, m)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", s.post(s.chat))
	mux.HandleFunc("/v1/completions", s.post(s.completions))
	mux.HandleFunc("/v1/embeddings", s.post(s.embeddings))
	mux.HandleFunc("/v1/moderations", s.post(s.moderations))
	mux.HandleFunc("/v1/models", s.get(s.models))
	mux.HandleFunc("/v1/models/{id...}", s.get(s.model))
	mux.HandleFunc("/healthz", s.get(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	}))
	if s.sim != nil {
		mux.HandleFunc("/metrics", s.get(s.sim.metrics))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apierror.Error{Status: http.StatusNotFound, Type: "invalid_request_error",
			Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)})
	})
	s.handler = mux
	return s
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.handler.ServeHTTP(w, r)
	s.opts.Logger.Debug("request", "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
}

// Serve serves HTTP/1.1 (and unencrypted HTTP/2 with prior knowledge, as
// Envoy's http2 upstreams speak it) on ln until ctx ends, then shuts down
// gracefully, giving open streams up to five seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         &protocols,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("mock-llm serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("mock-llm serve: %w", err)
	}
	return nil
}

// serves reports whether model is one of the served names.
func (s *Server) serves(model string) bool {
	if s.exact[model] {
		return true
	}
	for _, p := range s.prefix {
		if strings.HasPrefix(model, p) {
			return true
		}
	}
	return false
}

// post wraps a POST endpoint: method check, the X-Mock-Status hook and a
// bounded body.
func (s *Server) post(h func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, &apierror.Error{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error",
				Message: fmt.Sprintf("Method %s is not allowed on %s; use POST", r.Method, r.URL.Path)})
			return
		}
		if injected(w, r) {
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, apierror.New(http.StatusRequestEntityTooLarge, "request_too_large",
					fmt.Sprintf("Request body exceeds %d bytes", s.opts.MaxBodyBytes)))
				return
			}
			writeError(w, apierror.New(http.StatusBadRequest, "invalid_body", "Could not read the request body: "+err.Error()))
			return
		}
		h(w, r, body)
	}
}

// get wraps a GET endpoint.
func (s *Server) get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, &apierror.Error{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error",
				Message: fmt.Sprintf("Method %s is not allowed on %s; use GET", r.Method, r.URL.Path)})
			return
		}
		if injected(w, r) {
			return
		}
		h(w, r)
	}
}

// injected answers the X-Mock-Status hook; it reports whether it did.
func injected(w http.ResponseWriter, r *http.Request) bool {
	v := r.Header.Get(HeaderStatus)
	if v == "" {
		return false
	}
	code, err := strconv.Atoi(v)
	if err != nil || code < 400 || code > 599 {
		writeError(w, &apierror.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_mock_status",
			Message: fmt.Sprintf("%s must be a status between 400 and 599, got %q", HeaderStatus, v)})
		return true
	}
	e := apierror.New(code, "mock_error", fmt.Sprintf("mock error %d requested by %s", code, HeaderStatus))
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, e)
	return true
}

// models answers GET /v1/models.
func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	type list struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}
	l := list{Object: "list", Data: make([]modelObject, 0, len(s.listed))}
	for _, m := range s.listed {
		l.Data = append(l.Data, s.modelObject(m))
	}
	writeJSON(w, http.StatusOK, l)
}

// model answers GET /v1/models/{id}.
func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.serves(id) {
		writeError(w, modelNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject(id))
}

// modelObject is one entry of the model list.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelsCreated is the fixed "created" time of every served model, so the
// listing is deterministic.
const modelsCreated = 1735689600 // 2025-01-01T00:00:00Z

func (s *Server) modelObject(id string) modelObject {
	return modelObject{ID: id, Object: "model", Created: modelsCreated, OwnedBy: "tollgate-mock"}
}

// modelNotFound is OpenAI's answer for a model it does not serve.
func modelNotFound(model string) *apierror.Error {
	return &apierror.Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model)}
}

// badRequest is a 400 invalid_request_error naming the offending parameter.
func badRequest(param, format string, args ...any) *apierror.Error {
	return &apierror.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_value", Param: param,
		Message: fmt.Sprintf(format, args...)}
}

// decode unmarshals a JSON request body into v and turns every failure into
// a 400 that names the problem.
// decodeRequest decodes a request body into req and checks the model it
// names (read through model once decoded), answering the OpenAI error itself;
// false means the request was answered.
func (s *Server) decodeRequest(w http.ResponseWriter, body []byte, req any, model *string) bool {
	if e := decode(body, req); e != nil {
		writeError(w, e)
		return false
	}
	if *model == "" {
		writeError(w, badRequest("model", "you must provide a model parameter"))
		return false
	}
	if !s.serves(*model) {
		writeError(w, modelNotFound(*model))
		return false
	}
	return true
}

func decode(body []byte, v any) *apierror.Error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return &apierror.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_json",
			Message: "The request body is empty; send a JSON object."}
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return &apierror.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_type", Param: typeErr.Field,
			Message: fmt.Sprintf("Invalid type for '%s': expected %s, got %s.", typeErr.Field, typeErr.Type, typeErr.Value)}
	}
	return &apierror.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_json",
		Message: "We could not parse the JSON body of your request: " + err.Error()}
}

// writeJSON sends v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		writeError(w, apierror.New(http.StatusInternalServerError, "internal_error", "could not encode the response"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(status)
	w.Write(raw)
}

// writeError sends an OpenAI-shaped error.
func writeError(w http.ResponseWriter, e *apierror.Error) {
	raw := e.Body(apierror.StyleOpenAI)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(e.Status)
	w.Write(raw)
}

// responseID is a deterministic id for a response with the given seed.
func responseID(prefix string, seed uint64) string {
	var b [12]byte
	g := rng{s: seed}
	for i := 0; i < len(b); i += 8 {
		v := g.next()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return prefix + hex.EncodeToString(b[:])
}

// wait sleeps for d unless ctx ends first; it reports whether the full
// delay passed.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// generation is how long a JSON response of n tokens takes.
func (p *pacing) generation(n int) time.Duration {
	if n <= 0 {
		return p.ttft
	}
	return p.ttft + time.Duration(n-1)*p.itl
}
