package analytics

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// csvSafe defuses spreadsheet formulas in user-chosen names (app names are
// picked by developers): a cell starting with = + - @ or a tab/CR gets a
// leading apostrophe.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func dimValue(d Dims, name string) string {
	switch name {
	case DimApp:
		return d.App
	case DimProduct:
		return d.Product
	case DimDeveloper:
		return d.Developer
	}
	return d.Model
}

// WriteCSV writes one row per series and bucket: start, the group-by
// columns, then the counters, cost and mean latency.
func WriteCSV(w io.Writer, res Result) error {
	cw := csv.NewWriter(w)
	header := append([]string{"start"}, res.GroupBy...)
	header = append(header, "requests", "ok", "refused", "aborted", "prompt_tokens", "completion_tokens", "total_tokens",
		"cost", "latency_ms_avg", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "status_none")
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, s := range res.Series {
		for _, p := range s.Points {
			row := []string{p.Start.UTC().Format(time.RFC3339)}
			for _, g := range res.GroupBy {
				row = append(row, csvSafe(dimValue(s.Group, g)))
			}
			t := p.Totals
			row = append(row, i64(t.Requests), i64(t.OK), i64(t.Refused), i64(t.Aborted), i64(t.PromptTokens),
				i64(t.CompletionTokens), i64(t.TotalTokens), strconv.FormatFloat(t.Cost(), 'f', 6, 64),
				strconv.FormatFloat(t.LatencyMSAvg(), 'f', 1, 64), i64(t.Status2xx), i64(t.Status3xx), i64(t.Status4xx),
				i64(t.Status5xx), i64(t.StatusNone))
			if err := cw.Write(row); err != nil {
				return fmt.Errorf("write csv: %w", err)
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
