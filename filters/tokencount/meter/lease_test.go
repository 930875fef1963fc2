package meter

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/shared/lease"
)

// fakeLeaser is a lease with a fixed amount available.
type fakeLeaser struct {
	avail    int64
	takes    []int64
	settles  [][2]int64
	lost     bool
	takeErr  error
	counters map[string]bool
}

func (l *fakeLeaser) Take(counter string, n int64) (lease.Grant, bool, error) {
	if l.counters == nil {
		l.counters = map[string]bool{}
	}
	l.counters[counter] = true
	if l.takeErr != nil {
		return lease.Grant{}, false, l.takeErr
	}
	l.takes = append(l.takes, n)
	if n > l.avail {
		return lease.Grant{Limit: 100000, Remaining: 5000}, false, nil
	}
	l.avail -= n
	return lease.Grant{Limit: 100000, Remaining: 50000 + l.avail}, true, nil
}

func (l *fakeLeaser) Settle(_ string, taken, actual int64) error {
	if l.lost {
		return lease.ErrLost
	}
	l.settles = append(l.settles, [2]int64{taken, actual})
	l.avail += taken - actual
	return nil
}

// TestStreamLeases: a request the lease covers makes no callout at all, its
// held JSON answer is settled locally before the headers go on; one the
// lease cannot cover is reserved at the keystore as before.
func TestStreamLeases(t *testing.T) {
	const cfg = `{"static_quota": {"header": "x-team", "limit": 100000, "time_unit": "hour"}, "strict": {"enabled": true}, "lease": {"enabled": true}}`
	tests := []struct {
		name    string
		avail   int64
		lost    bool
		takeErr error
		drive   func(t *testing.T, s *Stream, h *fakeStreamHost)
		paths   []string
		settles int
		outcome Outcome
	}{
		{name: "JSON settled locally before headers", avail: 1 << 20,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				require.Equal(t, Gather, s.OnRequestHeaders(false))
				require.Equal(t, Continue, s.OnRequestBody([]byte(streamChat)), "no reservation callout")
				h.resp["content-length"] = "300"
				a, b := respond(s, h, "200", "application/json", jsonAnswer)
				assert.Equal(t, Pause, a, "headers held for the settlement")
				assert.Equal(t, Continue, b, "settled locally: no wait")
				assert.NotEmpty(t, h.resp["x-ratelimit-remaining-tokens"])
				s.OnDone()
			}, settles: 1, outcome: OutcomeSettled},
		{name: "stream settled locally", avail: 1 << 20,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				s.OnRequestHeaders(false)
				require.Equal(t, Continue, s.OnRequestBody([]byte(streamChat)))
				respond(s, h, "200", "text/event-stream", sseUsage)
				s.OnDone()
			}, settles: 1, outcome: OutcomeSettled},
		{name: "upstream error releases to the lease", avail: 1 << 20,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				s.OnRequestHeaders(false)
				s.OnRequestBody([]byte(streamChat))
				respond(s, h, "503", "application/json", `{"error":{"message":"x"}}`)
				s.OnDone()
			}, settles: 1, outcome: OutcomeReleased},
		{name: "abandoned before the response releases to the lease", avail: 1 << 20,
			drive: func(t *testing.T, s *Stream, _ *fakeStreamHost) {
				s.OnRequestHeaders(false)
				s.OnRequestBody([]byte(streamChat))
				s.OnDone()
			}, settles: 1, outcome: OutcomeReleased},
		{name: "lease short: reserved at the keystore", avail: 10,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				reserved(t, s, h)
				respond(s, h, "200", "text/event-stream", sseUsage)
				s.OnDone()
			}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled},
		{name: "lease broken: reserved at the keystore", avail: 1 << 20, takeErr: errors.New("contention"),
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				reserved(t, s, h)
				respond(s, h, "200", "text/event-stream", sseUsage)
				s.OnDone()
			}, paths: []string{PathReserve, PathSettle}, outcome: OutcomeSettled},
		{name: "record gone at settle: consumption recorded directly", avail: 1 << 20, lost: true,
			drive: func(t *testing.T, s *Stream, h *fakeStreamHost) {
				s.OnRequestHeaders(false)
				s.OnRequestBody([]byte(streamChat))
				respond(s, h, "200", "text/event-stream", sseUsage)
				s.OnDone()
			}, paths: []string{PathConsume}, outcome: OutcomeSettled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeStreamHost(nil)
			l := &fakeLeaser{avail: tc.avail, lost: tc.lost, takeErr: tc.takeErr}
			s := NewStream(h, mustParse(t, cfg), NewLabelSet(nil, 10), NewLabelSet(nil, 10), false).WithLeases(l)
			tc.drive(t, s, h)
			for len(h.pending) > 0 {
				h.answer(t, false, 200, settled)
			}
			assert.Equal(t, tc.paths, h.paths())
			assert.Len(t, l.settles, tc.settles)
			for _, st := range l.settles {
				assert.LessOrEqual(t, st[1], st[0], "never charges above what was taken")
			}
			if tc.settles > 0 {
				assert.Equal(t, int64(1<<20), l.avail+sumActual(l.settles), "the unused part went back")
			}
			assert.EqualValues(t, 1, h.counts[RequestsMetric(s.labels("gpt-4o-mini"), tc.outcome)])
			assert.Len(t, l.counters, 1)
			for c := range l.counters {
				assert.Equal(t, `"key":{"app":"t1","product":"tokencount","kind":"tokens"},"spec":{"limit":100000,"interval":1,"timeUnit":"hour","window":"calendar"}`, c)
			}
		})
	}
}

func sumActual(s [][2]int64) int64 {
	n := int64(0)
	for _, st := range s {
		n += st[1]
	}
	return n
}

func TestLeaseConfig(t *testing.T) {
	p := mustParse(t, `{"lease": {"enabled": true, "ttl": "10s", "max": 5000}}`)
	assert.True(t, p.Lease.Enabled)
	assert.EqualValues(t, 5000, p.Lease.Max)
	assert.False(t, mustParse(t, `{}`).Lease.Enabled)
	assert.EqualValues(t, DefaultLeaseMax, mustParse(t, `{}`).Lease.Max)
	_, err := Parse([]byte(`{"lease": {"enabled": true, "ttl": "1h"}}`))
	assert.ErrorContains(t, err, "lease.ttl")
	_, err = Parse([]byte(`{"lease": {"enable": true}}`))
	assert.Error(t, err)
	_, err = Parse([]byte(`{"lease": {"enabled": true}, "strict": {"enabled": true, "clamp_max_tokens": true}}`))
	assert.ErrorContains(t, err, "cannot be combined")
}
