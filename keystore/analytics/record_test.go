package analytics

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeBatch(t *testing.T) {
	good, err := os.ReadFile("testdata/batch.json")
	require.NoError(t, err)
	tests := []struct {
		name    string
		body    string
		records int
		wantErr string
	}{
		{name: "fixture", body: string(good), records: 3},
		{name: "empty records", body: `{"records":[]}`, records: 0},
		{name: "empty body", body: "  ", wantErr: "empty body"},
		{name: "missing records", body: `{}`, wantErr: `missing "records"`},
		{name: "unknown field", body: `{"records":[],"x":1}`, wantErr: "unknown field"},
		{name: "unknown record field", body: `{"records":[{"request_id":"a","bogus":1}]}`, wantErr: "unknown field"},
		{name: "trailing", body: `{"records":[]} {}`, wantErr: "data after"},
		{name: "bad time", body: `{"records":[{"request_id":"a","time":"yesterday"}]}`, wantErr: "cannot parse"},
		{name: "too many", body: `{"records":[` + strings.Repeat(`{},`, MaxBatchRecords) + `{}]}`, wantErr: "at most 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := DecodeBatch([]byte(tt.body))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrBatch)
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Len(t, b.Records, tt.records)
		})
	}
}

func TestValidate(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ok := Record{RequestID: "req-1", Time: now, App: "app", Model: "m", PromptTokens: 3, CompletionTokens: 4, Outcome: OutcomeOK, Status: 200}
	tests := []struct {
		name  string
		edit  func(*Record)
		param string
	}{
		{name: "ok", edit: func(*Record) {}},
		{name: "no id", edit: func(r *Record) { r.RequestID = "" }, param: "request_id"},
		{name: "space in id", edit: func(r *Record) { r.RequestID = "a b" }, param: "request_id"},
		{name: "long id", edit: func(r *Record) { r.RequestID = strings.Repeat("a", 129) }, param: "request_id"},
		{name: "no time", edit: func(r *Record) { r.Time = time.Time{} }, param: "time"},
		{name: "future", edit: func(r *Record) { r.Time = now.Add(time.Hour) }, param: "time"},
		{name: "control char", edit: func(r *Record) { r.App = "a\x1fb" }, param: "app"},
		{name: "bad utf8", edit: func(r *Record) { r.Model = "\xff" }, param: "model"},
		{name: "long product", edit: func(r *Record) { r.Product = strings.Repeat("p", 257) }, param: "product"},
		{name: "negative", edit: func(r *Record) { r.CompletionTokens = -1 }, param: "completion_tokens"},
		{name: "cost", edit: func(r *Record) { r.Cost = -0.5 }, param: "cost"},
		{name: "status", edit: func(r *Record) { r.Status = 42 }, param: "status"},
		{name: "outcome", edit: func(r *Record) { r.Outcome = "maybe" }, param: "outcome"},
		{name: "latency", edit: func(r *Record) { r.LatencyMS = -3 }, param: "latency_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.edit(&r)
			err := r.Validate(7, now, DefaultMaxSkew)
			if tt.param == "" {
				require.NoError(t, err)
				assert.Equal(t, int64(7), r.TotalTokens, "total defaults to prompt + completion")
				return
			}
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, 7, fe.Index)
			assert.Equal(t, tt.param, fe.Param)
		})
	}
}

func TestWriteCSV(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	res := Result{GroupBy: []string{DimApp}, Series: []Series{{
		Group:  Dims{App: "=HYPERLINK(\"x\")"},
		Points: []Point{{Start: at, Totals: Totals{Requests: 2, OK: 2, TotalTokens: 30, CostMicros: 1500, LatencyMSSum: 300, Status2xx: 2}}},
	}}}
	var buf bytes.Buffer
	require.NoError(t, WriteCSV(&buf, res))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	assert.Equal(t, "start,app,requests,ok,refused,aborted,prompt_tokens,completion_tokens,total_tokens,cost,latency_ms_avg,status_2xx,status_3xx,status_4xx,status_5xx,status_none", lines[0])
	assert.Equal(t, `2026-03-01T12:00:00Z,"'=HYPERLINK(""x"")",2,2,0,0,0,0,30,0.001500,150.0,2,0,0,0,0`, lines[1])
}

// FuzzDecodeBatch: any body either fails with ErrBatch or yields records that
// validate or fail with a FieldError, without panicking.
func FuzzDecodeBatch(f *testing.F) {
	good, err := os.ReadFile("testdata/batch.json")
	require.NoError(f, err)
	f.Add(good)
	f.Add([]byte(`{"records":[{"request_id":"a","time":"2026-03-01T12:00:00Z","outcome":"ok","total_tokens":-1}]}`))
	f.Add([]byte(`{"records":null}`))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := DecodeBatch(body)
		if err != nil {
			require.ErrorIs(t, err, ErrBatch)
			return
		}
		for i := range b.Records {
			if err := b.Records[i].Validate(i, now, DefaultMaxSkew); err != nil {
				var fe *FieldError
				require.ErrorAs(t, err, &fe)
				continue
			}
			tot := totalsOf(&b.Records[i])
			require.Equal(t, int64(1), tot.Requests)
			require.GreaterOrEqual(t, tot.CostMicros, int64(0))
		}
	})
}
