package meter

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
)

// fakeAccountHost records what the accounting asks of the proxy; answer,
// when set, answers a dispatched callout at once, and refuse fails Dispatch.
type fakeAccountHost struct {
	counts  map[string]int64
	records map[string][]uint64
	warns   []string
	state   [][2]string
	sent    []Callout
	queued  []string
	answer  func() (failed bool, status int, body []byte)
	refuse  error
	pending []func(bool, int, []byte)
}

func newFakeAccountHost() *fakeAccountHost {
	return &fakeAccountHost{counts: map[string]int64{}, records: map[string][]uint64{}}
}

func (h *fakeAccountHost) Add(name string, n int64) {
	if n > 0 {
		h.counts[name] += n
	}
}
func (h *fakeAccountHost) Record(name string, v uint64)     { h.records[name] = append(h.records[name], v) }
func (h *fakeAccountHost) Warn(msg string)                  { h.warns = append(h.warns, msg) }
func (h *fakeAccountHost) SetFilterState(pairs [][2]string) { h.state = append(h.state, pairs...) }
func (h *fakeAccountHost) Enqueue(op string, _ Callout)     { h.queued = append(h.queued, op) }
func (h *fakeAccountHost) Dispatch(c Callout, done func(bool, int, []byte)) error {
	if h.refuse != nil {
		return h.refuse
	}
	h.sent = append(h.sent, c)
	if h.answer != nil {
		done(h.answer())
	} else {
		h.pending = append(h.pending, done)
	}
	return nil
}

func TestCharge(t *testing.T) {
	q := quota(1000, usage.MetricTotal)
	pl := &Plan{Quota: q, Model: "m", PromptEstimate: 40, Amount: 300}
	l := Labels{Model: "m", App: "a"}
	u := usage.Usage{PromptTokens: 43, CompletionTokens: 28, TotalTokens: 71}
	tests := []struct {
		name    string
		c       Charging
		want    Settlement
		outcome Outcome
	}{
		{"settled", Charging{Ending: Ending{Quota: q, Open: true, ReservationID: "r", Source: SourceUpstream}},
			Settlement{Outcome: OutcomeSettled, Op: OpSettle, Callout: Settle("r", 71)}, OutcomeSettled},
		{"aborted", Charging{Ending: Ending{Quota: q, Open: true, ReservationID: "r", Source: SourceEstimated, Aborted: true}},
			Settlement{Outcome: OutcomeAborted, Op: OpSettle, Callout: Settle("r", 71)}, OutcomeAborted},
		{"unmetered", Charging{Ending: Ending{Source: SourceUpstream}}, Settlement{Outcome: OutcomeUnmetered}, OutcomeUnmetered},
		{"ended: no filter state", Charging{Ended: true, Ending: Ending{Quota: q, Open: true, ReservationID: "r", Source: SourceUpstream}},
			Settlement{Outcome: OutcomeSettled, Op: OpSettle, Callout: Settle("r", 71)}, OutcomeSettled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeAccountHost()
			tt.c.Plan, tt.c.Labels, tt.c.Usage = pl, l, u
			got := Charge(h, tt.c)
			assert.Equal(t, tt.want, got)
			assert.EqualValues(t, 1, h.counts[RequestsMetric(l, tt.outcome)])
			assert.EqualValues(t, 43, h.counts[TokenMetrics(l)[0]])
			assert.EqualValues(t, 28, h.counts[TokenMetrics(l)[1]])
			assert.Equal(t, tt.c.Ended, h.state == nil, "filter state only while the stream lives")
			assert.Empty(t, h.sent, "Charge decides; Send sends")
		})
	}
}

func TestChargeBrokenBound(t *testing.T) {
	h := newFakeAccountHost()
	q := quota(1000, usage.MetricTotal)
	resp := &Response{reported: usage.Usage{PromptTokens: 5, CompletionTokens: 9999}, violation: ViolationCompletion}
	l := Labels{Model: "m", App: "a"}
	d := Charge(h, Charging{Plan: &Plan{Quota: q, Model: "m"}, Labels: l, Usage: usage.Usage{PromptTokens: 5, CompletionTokens: 16, TotalTokens: 21},
		Response: resp, Ending: Ending{Quota: q, Open: true, ReservationID: "r", Source: SourceBound}})
	assert.Equal(t, Settle("r", 21), d.Callout, "the bound is charged, not the reported usage")
	assert.EqualValues(t, 1, h.counts[ViolationsMetric("m", ViolationCompletion)])
	require.Len(t, h.warns, 1)
	assert.Contains(t, h.warns[0], "completion 9999")
}

func TestSend(t *testing.T) {
	settle := Settlement{Outcome: OutcomeSettled, Op: OpSettle, Callout: Settle("r", 71)}
	ok := func() (bool, int, []byte) {
		return false, 200, []byte(`{"results":[{"allowed":true,"limit":1000,"remaining":929}]}`)
	}
	tests := []struct {
		name     string
		answer   func() (bool, int, []byte)
		refuse   error
		queued   []string
		errCount int64
		thenErr  bool
	}{
		{"answered", ok, nil, nil, 0, false},
		{"not found means already counted", func() (bool, int, []byte) {
			return false, 200, []byte(`{"results":[{"error":{"code":"reservation_not_found"}}]}`)
		}, nil, nil, 0, true},
		{"keystore down: counted, queued for retry", func() (bool, int, []byte) { return false, 503, nil }, nil, []string{OpSettle}, 1, true},
		{"no answer: counted, queued", func() (bool, int, []byte) { return true, 0, nil }, nil, []string{OpSettle}, 1, true},
		{"refused synchronously: counted, queued", nil, errors.New("bad cluster"), []string{OpSettle}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeAccountHost()
			h.answer, h.refuse = tt.answer, tt.refuse
			var thenRan bool
			var thenErr error
			waits := Send(h, settle, func(err error, _ State) { thenRan, thenErr = true, err })
			assert.Equal(t, tt.refuse == nil, waits)
			assert.Equal(t, tt.refuse == nil, thenRan)
			assert.Equal(t, tt.thenErr, thenErr != nil)
			assert.Equal(t, tt.queued, h.queued)
			assert.Equal(t, tt.errCount, h.counts[KeystoreErrorsMetric(OpSettle)])
		})
	}
	h := newFakeAccountHost()
	assert.False(t, Send(h, Settlement{Outcome: OutcomeUnmetered}, nil), "nothing to send")
	assert.Empty(t, h.sent)
	h.answer = func() (bool, int, []byte) { return false, 503, nil }
	assert.False(t, Send(h, Settlement{Outcome: OutcomeFailOpen, Op: OpConsume, Callout: Record(quota(10, usage.MetricTotal), 5)}, nil))
	assert.Empty(t, h.queued, "a consume carries no reservation id: never retried")
}
