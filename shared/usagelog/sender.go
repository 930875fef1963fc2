package usagelog

import (
	"errors"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/shared/config"
)

// Defaults and limits of Config.
const (
	DefaultPath          = "/v1/usage"
	DefaultFlushInterval = time.Second
	DefaultMaxBatch      = 200
	DefaultMaxBacklog    = 10000
	// MaxBatch is the keystore's limit per ingest call.
	MaxBatch = 1000
	// MaxBacklogLimit bounds the records one VM may hold while the keystore is away.
	MaxBacklogLimit = 1_000_000
	// maxBatchBytes stays under the keystore's 1 MiB body limit.
	maxBatchBytes = 900 << 10
	// maxBackoff caps the wait between retries of a failed batch.
	maxBackoff = 30 * time.Second
)

// Config is the "usage" block of a filter configuration.
//
//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config
type Config struct {
	// Enabled turns reporting on.
	Enabled bool `json:"enabled"`
	// Path is the keystore's ingest endpoint (default /v1/usage).
	Path string `json:"path"`
	// FlushInterval is how often a batch is sent at most (default "1s").
	FlushInterval string `json:"flush_interval"`
	// MaxBatch caps the records per call (default 200, at most 1000).
	MaxBatch int `json:"max_batch"`
	// MaxBacklog caps the records one VM holds while the keystore does not
	// acknowledge; beyond it the oldest are dropped and counted (default 10000).
	MaxBacklog int `json:"max_backlog"`
}

// Settings is a checked Config.
type Settings struct {
	Enabled       bool
	Path          string
	FlushInterval time.Duration
	MaxBatch      int
	MaxBacklog    int
}

// Compile checks c and fills defaults.
func (c Config) Compile() (Settings, error) {
	s := Settings{Enabled: c.Enabled, Path: c.Path, FlushInterval: DefaultFlushInterval, MaxBatch: c.MaxBatch, MaxBacklog: c.MaxBacklog}
	if s.Path == "" {
		s.Path = DefaultPath
	}
	if s.Path[0] != '/' || len(s.Path) > 256 {
		return s, errors.New("usage.path " + strconv.Quote(s.Path) + " must start with '/' (at most 256 bytes)")
	}
	for i := 0; i < len(s.Path); i++ {
		if c := s.Path[i]; c <= ' ' || c >= 0x7f || c == '?' || c == '#' {
			return s, errors.New("usage.path " + strconv.Quote(s.Path) + " holds a character a path cannot")
		}
	}
	if c.FlushInterval != "" {
		d, err := time.ParseDuration(c.FlushInterval)
		if err != nil || d < 10*time.Millisecond || d > time.Minute {
			return s, errors.New("usage.flush_interval " + strconv.Quote(c.FlushInterval) + ": want a duration from \"10ms\" to \"1m\"")
		}
		s.FlushInterval = d
	}
	if s.MaxBatch == 0 {
		s.MaxBatch = DefaultMaxBatch
	}
	if s.MaxBatch < 1 || s.MaxBatch > MaxBatch {
		return s, errors.New("usage.max_batch " + strconv.Itoa(s.MaxBatch) + ": want 1 to " + strconv.Itoa(MaxBatch))
	}
	if s.MaxBacklog == 0 {
		s.MaxBacklog = DefaultMaxBacklog
	}
	if s.MaxBacklog < s.MaxBatch || s.MaxBacklog > MaxBacklogLimit {
		return s, errors.New("usage.max_backlog " + strconv.Itoa(s.MaxBacklog) + ": want max_batch (" + strconv.Itoa(s.MaxBatch) + ") to " + strconv.Itoa(MaxBacklogLimit))
	}
	return s, nil
}

// Host is what the sender needs from the proxy: an HTTP callout to the
// keystore. Records stay in the VM that served the request until a tick
// sends them: no host call and no callback per request.
type Host interface {
	// Post sends body to the keystore's ingest path; done runs later with
	// failed (no answer at all) and the HTTP status.
	Post(body []byte, done func(failed bool, status int)) error
}

// Stats count what a sender did, for the filter's metrics.
type Stats struct {
	// Queued records were taken into the backlog.
	Queued uint64
	// Sent records were acknowledged by the keystore.
	Sent uint64
	// Rejected records were in a batch the keystore refused as malformed (400/413): lost.
	Rejected uint64
	// Dropped records were the oldest of a full backlog: lost.
	Dropped uint64
	// Retries counts batches sent again after a failure.
	Retries uint64
}

// Sender is one VM's reporter. Methods run on the VM's single thread.
type Sender struct {
	set  Settings
	host Host

	backlog  [][]byte // drained from the queue, oldest first
	inflight [][]byte // the batch being sent (or waiting to be retried)
	sending  bool
	retryAt  time.Time
	backoff  time.Duration
	next     time.Time // earliest next flush
	stats    Stats
	exported Stats // stats at the last Export
}

// New returns a sender; it does nothing until the first Tick.
func New(set Settings, host Host) *Sender { return &Sender{set: set, host: host} }

// Stats returns the counters so far.
func (s *Sender) Stats() Stats { return s.stats }

// Pending is how many records this VM holds (backlog plus the batch in flight).
func (s *Sender) Pending() int { return len(s.backlog) + len(s.inflight) }

// ErrDisabled is returned by Report when reporting is off.
var ErrDisabled = errors.New("usage reporting is disabled")

// Report keeps one record for the next batch; call it from OnDone (or
// OnLog). It makes no host call (a shared queue cost a host call and, in
// Envoy, a proxy_on_queue_ready callback posted to a worker per record)
// and never waits for the keystore. Past MaxBacklog the oldest record is
// dropped and counted.
func (s *Sender) Report(r *Record) error {
	if !s.set.Enabled {
		return ErrDisabled
	}
	if len(s.backlog) > 0 && len(s.backlog)+len(s.inflight) >= s.set.MaxBacklog {
		s.backlog[0] = nil
		s.backlog = s.backlog[1:]
		s.stats.Dropped++
	}
	s.backlog = append(s.backlog, r.AppendJSON(make([]byte, 0, 384)))
	s.stats.Queued++
	return nil
}

// Tick sends the next batch unless one is in flight or waiting for its
// retry time. Call it from the plugin's OnTick. FlushInterval spaces
// partial batches; a full batch goes at once, and while full batches wait
// each acknowledgement sends the next (done), so a VM's records leave at
// the keystore's pace, not at MaxBatch per FlushInterval: a worker serving
// more requests than that would otherwise fill its backlog (MaxBacklog
// records of ~400 bytes in the VM's heap) and drop the oldest.
func (s *Sender) Tick(now time.Time) error {
	if !s.set.Enabled {
		return nil
	}
	if s.sending {
		return nil
	}
	if len(s.inflight) > 0 && now.Before(s.retryAt) {
		return nil
	}
	if len(s.inflight) == 0 && now.Before(s.next) && len(s.backlog) < s.set.MaxBatch {
		return nil
	}
	return s.send(now)
}

// send posts the batch in flight (a retry) or the next one from the backlog.
func (s *Sender) send(now time.Time) error {
	if len(s.inflight) > 0 {
		s.stats.Retries++
	}
	if len(s.inflight) == 0 {
		n, size := 0, 0
		for n < len(s.backlog) && n < s.set.MaxBatch && (n == 0 || size+len(s.backlog[n]) < maxBatchBytes) {
			size += len(s.backlog[n]) + 1
			n++
		}
		if n == 0 {
			return nil
		}
		s.inflight = append([][]byte(nil), s.backlog[:n]...)
		s.backlog = append(s.backlog[:0], s.backlog[n:]...)
	}
	s.next = now.Add(s.set.FlushInterval)
	body := make([]byte, 0, 16)
	body = append(body, `{"records":[`...)
	for i, rec := range s.inflight {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, rec...)
	}
	body = append(body, "]}"...)
	s.sending = true
	if perr := s.host.Post(body, func(failed bool, status int) { s.done(now, failed, status) }); perr != nil {
		s.sending = false
		s.fail(now)
		return config.Wrap("post usage batch: ", perr, "")
	}
	return nil
}

// done handles the keystore's answer to the batch in flight.
func (s *Sender) done(sentAt time.Time, failed bool, status int) {
	s.sending = false
	switch {
	case !failed && status == 200:
		s.stats.Sent += uint64(len(s.inflight))
		s.inflight = nil
		s.backoff = 0
	case !failed && (status == 400 || status == 413):
		// The keystore will never take this batch; keeping it would block the queue.
		s.stats.Rejected += uint64(len(s.inflight))
		s.inflight = nil
		s.backoff = 0
	default:
		s.fail(sentAt)
		return
	}
	if len(s.backlog) >= s.set.MaxBatch { // a full batch waits: send it now
		_ = s.send(sentAt) // a failed dispatch is kept for the next tick's retry
	}
}

func (s *Sender) fail(at time.Time) {
	if s.backoff == 0 {
		s.backoff = s.set.FlushInterval
	} else {
		s.backoff = min(2*s.backoff, maxBackoff)
	}
	s.retryAt = at.Add(s.backoff)
}
