package envoytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// crashPatterns match Envoy log entries that mean a Wasm VM trapped, failed to
// start, or that Go's runtime died inside it. A panic our ABI layer recovers
// is not a crash and must not match: Go's runtime writes "panic: " (or "fatal
// error: ") at the start of a stderr write only when nothing recovered it.
var crashPatterns = []*regexp.Regexp{
	regexp.MustCompile(`Wasm VM failed`),
	regexp.MustCompile(`Function: proxy_on_\w+ failed`),
	regexp.MustCompile(`Function: _initialize failed`),
	regexp.MustCompile(`(?i)wasm trap`),
	regexp.MustCompile(`Uncaught RuntimeError`),
	regexp.MustCompile(`(?i)failed to load`),
	regexp.MustCompile(`\]\s*(wasm log[^:]*: )?panic: `),
	regexp.MustCompile(`\]\s*(wasm log[^:]*: )?fatal error: `),
	regexp.MustCompile(`goroutine \d+ \[running\]`),
	regexp.MustCompile(`poll_oneoff failed`),
	regexp.MustCompile(`(?i)out of memory`),
	regexp.MustCompile(`\]\[critical\]\[`),
}

// CrashLines returns the Envoy log entries that show a Wasm VM crash (a trap,
// a failed callback or _initialize, an unrecovered Go panic or fatal error, a
// plugin that failed to load, a critical log entry), each reassembled as
// LogEntries does. Extra regular expressions widen the search. Call SyncLog
// first to be sure the latest lines are on disk.
func (e *Envoy) CrashLines(extra ...string) []string {
	pats := crashPatterns
	for _, x := range extra {
		pats = append(pats[:len(pats):len(pats)], regexp.MustCompile(x))
	}
	return MatchLines(e.Log(), pats)
}

// MatchLines returns the log entries of text (see LogEntries) of which the
// whole text or any one physical line matches one of pats.
func MatchLines(text string, pats []*regexp.Regexp) []string {
	var out []string
	for _, entry := range LogEntries(text) {
		if matchEntry(entry, pats) {
			out = append(out, entry.Text)
		}
	}
	return out
}

func matchEntry(entry LogEntry, pats []*regexp.Regexp) bool {
	for _, p := range pats {
		if p.MatchString(entry.Text) {
			return true
		}
		for _, l := range entry.Lines {
			if p.MatchString(l) {
				return true
			}
		}
	}
	return false
}

// LogEntry is one logical entry of an Envoy log.
type LogEntry struct {
	// Text is the entry: its first line's header and the whole message.
	Text string
	// Lines are the physical log lines it was assembled from.
	Lines []string
}

// envoyLogLine splits "[time][thread][level][component] [source] message".
var envoyLogLine = regexp.MustCompile(`^\[[^\]]*\]\[(\d+)\]\[(\w+)\]\[[^\]]*\] \[([^\]]*)\] (wasm log [^:]*: )?(.*)$`)

// LogEntries groups an Envoy log into logical entries. Lines that do not start
// a new entry (a multi-line message such as a Wasm backtrace) join the entry
// before them. Envoy logs every write a Wasm module makes to stdout or stderr
// as its own line, and Go's runtime prints a crash in many small writes
// ("goroutine ", "1", " [", "running", ...), so consecutive "wasm log" lines
// from one thread, level and source are joined back into one entry; an empty
// fragment (a bare newline Envoy trimmed) becomes a newline.
func LogEntries(text string) []LogEntry {
	var (
		out    []LogEntry
		curKey string
		cur    *LogEntry
		msg    strings.Builder
	)
	flush := func() {
		if cur != nil {
			cur.Text += msg.String()
			out = append(out, *cur)
		}
		cur, curKey = nil, ""
		msg.Reset()
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		m := envoyLogLine.FindStringSubmatch(line)
		if m == nil {
			if cur == nil {
				cur = &LogEntry{}
			} else {
				msg.WriteByte('\n')
			}
			msg.WriteString(line)
			cur.Lines = append(cur.Lines, line)
			continue
		}
		thread, level, source, wasmPrefix, body := m[1], m[2], m[3], m[4], m[5]
		if wasmPrefix != "" {
			key := thread + "|" + level + "|" + source + "|" + wasmPrefix
			if key == curKey && cur != nil {
				if body == "" {
					body = "\n"
				}
				msg.WriteString(body)
				cur.Lines = append(cur.Lines, line)
				continue
			}
			flush()
			curKey = key
		} else {
			flush()
		}
		cur = &LogEntry{Text: strings.TrimSuffix(line, body), Lines: []string{line}}
		msg.WriteString(body)
	}
	flush()
	return out
}

// logSyncMarker is what Envoy logs when the admin component's level is set.
const logSyncMarker = "change log level: name='admin'"

// SyncLog makes sure every line Envoy logged before the call is in the log
// file: it has Envoy log a marker line through the admin interface and waits
// for it (the file is flushed every 50ms, in order).
func (e *Envoy) SyncLog(t testing.TB) {
	t.Helper()
	before := strings.Count(e.Log(), logSyncMarker)
	if _, err := e.AdminPost("/logging?admin=info"); err != nil {
		t.Fatalf("envoytest: sync log: %v", err)
	}
	Eventually(t, 5*time.Second, func() bool { return strings.Count(e.Log(), logSyncMarker) > before },
		"the log sync marker never reached %s", e.LogPath)
}

// RequireNoCrash fails the test when Envoy has exited or its log shows a Wasm
// VM crash; it is the zero-crash assertion for load and robustness tests.
func (e *Envoy) RequireNoCrash(t testing.TB) {
	t.Helper()
	if !e.Running() {
		t.Fatalf("envoytest: envoy is no longer running")
	}
	e.SyncLog(t)
	if lines := e.CrashLines(); len(lines) > 0 {
		t.Fatalf("envoytest: %d crash line(s) in the Envoy log:\n%s", len(lines), strings.Join(firstN(lines, 20), "\n"))
	}
}

// AccessEntry is one line of the generated listener's JSON access log.
type AccessEntry struct {
	StartTime      string `json:"start_time"`
	Method         string `json:"method"`
	Path           string `json:"path"`
	Protocol       string `json:"protocol"`
	Status         int    `json:"status"`
	Flags          string `json:"flags"`
	Details        string `json:"details"`
	Upstream       string `json:"upstream"`
	UpstreamHost   string `json:"upstream_host"`
	BytesReceived  int64  `json:"bytes_received"`
	BytesSent      int64  `json:"bytes_sent"`
	DurationMS     int64  `json:"duration_ms"`
	RequestID      string `json:"request_id"`
	ConnectionID   int64  `json:"connection_id"`
	DownstreamPeer string `json:"downstream_peer"`
}

// AccessLog returns the access-log entries written so far (the file is
// flushed every 50ms; use WaitAccessLog when a test needs a given count).
func (e *Envoy) AccessLog() ([]AccessEntry, error) {
	b, err := os.ReadFile(e.AccessLogPath)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("envoytest: read access log: %w", err)
	}
	var out []AccessEntry
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var a AccessEntry
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			// The last line may be half-flushed.
			if i == len(lines)-1 {
				break
			}
			return nil, fmt.Errorf("envoytest: access log line %d: %w", i+1, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// WaitAccessLog polls until the access log holds at least n entries and
// returns them.
func (e *Envoy) WaitAccessLog(t testing.TB, n int, timeout time.Duration) []AccessEntry {
	t.Helper()
	var got []AccessEntry
	Eventually(t, timeout, func() bool {
		entries, err := e.AccessLog()
		if err != nil {
			t.Fatalf("%v", err)
		}
		got = entries
		return len(entries) >= n
	}, "access log never reached %d entries", n)
	return got
}
