package meter

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/table"
)

// SettleQueue keeps the settles and releases that failed (keystore down,
// timed out, 5xx) in proxy shared data, so that every worker of the
// Envoy, and a VM that replaced a crashed one, can retry them on its tick
// until the keystore answers. Entries are keyed by reservation id: a
// settle is queued at most once, and a retry whose first attempt did
// reach the keystore gets "reservation not found" (the counter forgets a
// reservation once settled), which ends the entry without charging twice.
//
// The queue is bounded (a table of MaxEntries); a full set drops the entry
// closest to its expiry, and every entry expires with its reservation (the
// counter releases unsettled reservations after their TTL): both count as
// dropped in the settle queue metric.
type SettleQueue struct {
	t        *table.Table
	ttl      time.Duration
	base     time.Duration
	maxDelay time.Duration
}

// Pending is one queued callout, claimed for a retry.
type Pending struct {
	// ID is the reservation id the entry is keyed by.
	ID string
	// Op is the keystore operation (OpSettle or OpRelease).
	Op string
	// Callout is the request to send again.
	Callout Callout
	// Attempts counts the retries that failed so far.
	Attempts int
}

// settleQueueNamespace names the shared-data keys of the queue.
const settleQueueNamespace = "tollgate.tokencount.settleq.v1"

// maxRetryDelay caps the backoff between retries of one entry.
const maxRetryDelay = 8 * time.Second

// NewSettleQueue returns a handle on the shared queue of a policy: entries
// live as long as a reservation (ttl) and are retried every interval at
// first, backing off to 8 s.
func NewSettleQueue(store table.Store, entries int, ttl, interval time.Duration) (*SettleQueue, error) {
	t, err := table.New(store, table.Options{Namespace: settleQueueNamespace, MaxEntries: entries, Ways: 8})
	if err != nil {
		return nil, config.Wrap("settle queue: ", err, "")
	}
	return &SettleQueue{t: t, ttl: ttl, base: max(interval, time.Millisecond), maxDelay: max(maxRetryDelay, interval)}, nil
}

// Init creates the queue's shared-data keys (once per VM, before serving).
func (q *SettleQueue) Init() error { return q.t.Init() }

// Sets is the number of shared-data keys a full sweep reads.
func (q *SettleQueue) Sets() int { return q.t.Sets() }

// entry layout: op(1) attempts(2) next(8) claim(8) path-len(2) path body.
const entryHeader = 1 + 2 + 8 + 8 + 2

func opCode(op string) byte {
	if op == OpRelease {
		return 2
	}
	return 1
}

func opName(b byte) string {
	if b == 2 {
		return OpRelease
	}
	return OpSettle
}

type entry struct {
	op          byte
	attempts    uint16
	next, claim int64 // Unix ms
	path        string
	body        []byte
}

func (e *entry) encode() []byte {
	b := make([]byte, 0, entryHeader+len(e.path)+len(e.body))
	b = append(b, e.op)
	b = binary.LittleEndian.AppendUint16(b, e.attempts)
	b = binary.LittleEndian.AppendUint64(b, uint64(e.next))
	b = binary.LittleEndian.AppendUint64(b, uint64(e.claim))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.path)))
	b = append(b, e.path...)
	return append(b, e.body...)
}

var errBadEntry = errors.New("settle queue: corrupt entry")

func decodeEntry(b []byte) (entry, error) {
	if len(b) < entryHeader {
		return entry{}, errBadEntry
	}
	e := entry{
		op:       b[0],
		attempts: binary.LittleEndian.Uint16(b[1:]),
		next:     int64(binary.LittleEndian.Uint64(b[3:])),
		claim:    int64(binary.LittleEndian.Uint64(b[11:])),
	}
	pl := int(binary.LittleEndian.Uint16(b[19:]))
	if len(b) < entryHeader+pl {
		return entry{}, errBadEntry
	}
	e.path = string(b[entryHeader : entryHeader+pl])
	e.body = append([]byte(nil), b[entryHeader+pl:]...)
	return e, nil
}

// Push queues a failed settle or release, due at once. A reservation
// already queued keeps its entry (the first outcome is the one to
// deliver). evicted reports that another live entry was dropped to make
// room.
func (q *SettleQueue) Push(op string, c Callout, now time.Time) (evicted bool, err error) {
	if c.ID == "" || len(c.Path) > 1<<10 {
		return false, errors.New("settle queue: only settles and releases of a reservation are queued")
	}
	ms := now.UnixMilli()
	val := (&entry{op: opCode(op), next: ms, path: c.Path, body: c.Body}).encode()
	return q.t.Update(c.ID, ms, func(old []byte, oldExp int64) ([]byte, int64, bool) {
		if old != nil {
			return nil, 0, false
		}
		return val, ms + q.ttl.Milliseconds(), true
	})
}

// Claim takes up to limit entries that are due and not claimed by another
// worker, marking them claimed for claimFor (the callout's timeout plus a
// margin), so that workers sweeping at once do not send one twice. live is
// the number of entries seen (claimed, claimed elsewhere or not yet due):
// 0 means the queue is empty.
func (q *SettleQueue) Claim(now time.Time, claimFor time.Duration, limit int) (out []Pending, live int, err error) {
	ms := now.UnixMilli()
	var firstErr error
	for i := 0; i < q.t.Sets() && len(out) < limit; i++ {
		var ids []string
		err := q.t.Scan(i, ms, func(id string, v []byte, _ int64) {
			live++
			if e, err := decodeEntry(v); err == nil && e.next <= ms && e.claim <= ms {
				ids = append(ids, id)
			}
		})
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		for _, id := range ids {
			if len(out) >= limit {
				break
			}
			var got entry
			claimed := false
			_, err := q.t.Update(id, ms, func(old []byte, exp int64) ([]byte, int64, bool) {
				claimed = false
				e, err := decodeEntry(old)
				if old == nil || err != nil || e.next > ms || e.claim > ms {
					return nil, 0, false
				}
				e.claim = ms + claimFor.Milliseconds()
				got, claimed = e, true
				return e.encode(), exp, true
			})
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				continue
			}
			if claimed {
				out = append(out, Pending{ID: id, Op: opName(got.op), Callout: Callout{Path: got.path, Body: got.body, ID: id}, Attempts: int(got.attempts)})
			}
		}
	}
	return out, live, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Delivered removes an entry the keystore answered.
func (q *SettleQueue) Delivered(id string, now time.Time) error {
	_, err := q.t.Update(id, now.UnixMilli(), func(old []byte, _ int64) ([]byte, int64, bool) {
		return nil, 0, old != nil
	})
	return err
}

// Retry puts a claimed entry back after a failed attempt, due after a
// backoff that doubles per attempt up to 8 s.
func (q *SettleQueue) Retry(id string, now time.Time) error {
	ms := now.UnixMilli()
	_, err := q.t.Update(id, ms, func(old []byte, exp int64) ([]byte, int64, bool) {
		e, err := decodeEntry(old)
		if old == nil || err != nil {
			return nil, 0, false
		}
		e.attempts = min(e.attempts+1, 1<<15)
		delay := q.base << min(e.attempts-1, 16)
		e.next, e.claim = ms+min(delay, q.maxDelay).Milliseconds(), 0
		return e.encode(), exp, true
	})
	return err
}

// Retryable reports whether a failed keystore answer may succeed later:
// no answer at all (timeout, connection refused, keystore restarting), or
// a 5xx, 408 or 429. Other answers (4xx) would fail forever.
func Retryable(failed bool, status int) bool {
	return failed || status >= 500 || status == 408 || status == 429
}
