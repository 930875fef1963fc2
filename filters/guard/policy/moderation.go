package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/jsonenc"
	"github.com/tollgate/tollgate/shared/reqview"
)

// Moderation is the compiled moderation service settings.
type Moderation struct {
	Cluster, Authority, Path, Model, Bearer string
	Timeout                                 time.Duration
	FailOpen                                bool
	CacheTTL                                time.Duration // 0: no cache
	CacheEntries                            int
}

func compileModeration(c *ModerationConfig) (*Moderation, error) {
	m := &Moderation{Cluster: c.Cluster, Authority: c.Authority, Path: c.Path, Model: c.Model, Bearer: c.BearerToken}
	if m.Cluster == "" {
		return nil, errors.New("cluster is required")
	}
	if m.Authority == "" {
		m.Authority = m.Cluster
	}
	if m.Path == "" {
		m.Path = DefaultModerationPath
	}
	if !strings.HasPrefix(m.Path, "/") {
		return nil, errors.New("path " + strconv.Quote(m.Path) + " must start with /")
	}
	if m.Model == "" {
		m.Model = DefaultModerationModel
	}
	var err error
	if m.Timeout, err = c.Timeout.Within("timeout", DefaultModerationTimeout, time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	switch c.Fail {
	case "open":
		m.FailOpen = true
	case "closed":
	default:
		return nil, errors.New("fail " + strconv.Quote(c.Fail) + ": say \"open\" or \"closed\"")
	}
	switch {
	case c.CacheTTL == nil:
		m.CacheTTL = DefaultCacheTTL
	case *c.CacheTTL == 0: // "0s": no cache
	default:
		if m.CacheTTL, err = c.CacheTTL.Within("cache_ttl", 0, time.Second, 24*time.Hour); err != nil {
			return nil, err
		}
	}
	m.CacheEntries = c.CacheEntries
	switch {
	case m.CacheEntries == 0:
		m.CacheEntries = DefaultCacheEntries
	case m.CacheEntries < 16 || m.CacheEntries > 1<<20:
		return nil, errors.New("cache_entries " + strconv.Itoa(m.CacheEntries) + " outside 16.." + strconv.Itoa(1<<20))
	}
	return m, nil
}

// ModerationCall is one callout: its body and the cache key of its texts.
type ModerationCall struct {
	Body []byte
	Key  string // hex SHA-256 of the model and texts
}

// NewCall builds the /v1/moderations request for texts.
func (m *Moderation) NewCall(texts []string) ModerationCall {
	body := jsonenc.AppendString(append(make([]byte, 0, 64), `{"model":`...), m.Model)
	body = append(body, `,"input":[`...)
	for i, t := range texts {
		if i > 0 {
			body = append(body, ',')
		}
		body = jsonenc.AppendString(body, t)
	}
	body = append(body, "]}"...)
	h := sha256.New()
	h.Write([]byte(m.Model))
	for _, t := range texts {
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(len(t))))
		h.Write([]byte{0})
		h.Write([]byte(t))
	}
	return ModerationCall{Body: body, Key: hex.EncodeToString(h.Sum(nil))}
}

// Headers are the callout's request headers.
func (m *Moderation) Headers(body []byte) [][2]string {
	h := [][2]string{{":method", "POST"}, {":path", m.Path}, {":authority", m.Authority},
		{"content-type", "application/json"}, {"content-length", strconv.Itoa(len(body))}}
	if m.Bearer != "" {
		h = append(h, [2]string{"authorization", "Bearer " + m.Bearer})
	}
	return h
}

// Verdict is the moderation outcome for a text.
type Verdict struct {
	// Category is the blocking category ("" when allowed).
	Category string
	// Score is its score.
	Score float64
}

// Encode is the verdict's cache value.
func (v Verdict) Encode() []byte {
	if v.Category == "" {
		return []byte("ok")
	}
	return []byte("flag " + strconv.FormatFloat(v.Score, 'g', -1, 64) + " " + v.Category)
}

// DecodeVerdict reads a cached value.
func DecodeVerdict(b []byte) (Verdict, bool) {
	s := string(b)
	if s == "ok" {
		return Verdict{}, true
	}
	rest, ok := strings.CutPrefix(s, "flag ")
	if !ok {
		return Verdict{}, false
	}
	sc, cat, ok := strings.Cut(rest, " ")
	f, err := strconv.ParseFloat(sc, 64)
	if !ok || err != nil || cat == "" {
		return Verdict{}, false
	}
	return Verdict{Category: cat, Score: f}, true
}

// ParseVerdict reads a /v1/moderations answer and applies the thresholds:
// the highest-scoring category at or over its threshold blocks; without
// thresholds the categories the service flagged block.
func ParseVerdict(status int, body []byte, use *ModerationUse) (Verdict, error) {
	if status != 200 {
		return Verdict{}, errors.New("moderation service answered " + strconv.Itoa(status))
	}
	d, err := reqview.Parse(body, reqview.Limits{MaxBytes: 1 << 20, MaxDepth: 16})
	if err != nil {
		return Verdict{}, config.Wrap("moderation answer: ", err, "")
	}
	results := d.Root().Get("results")
	if results.Kind() != reqview.Array || results.Len() == 0 {
		return Verdict{}, errors.New("moderation answer has no results")
	}
	var best Verdict
	var bad error
	results.Elems(func(_ int, r reqview.Value) bool {
		scores := r.Get("category_scores")
		flags := r.Get("categories")
		if scores.Kind() != reqview.Object && flags.Kind() != reqview.Object {
			bad = errors.New("moderation result has neither categories nor category_scores")
			return false
		}
		type cs struct {
			name  string
			score float64
		}
		var list []cs
		scores.Members(func(k string, v reqview.Value) bool {
			f, _ := v.Num()
			list = append(list, cs{k, f})
			return true
		})
		sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
		if len(use.Thresholds) == 0 {
			flags.Members(func(k string, v reqview.Value) bool {
				if b, _ := v.Bool(); b {
					f, _ := scores.Get(k).Num()
					if best.Category == "" || f > best.Score || f == best.Score && k < best.Category {
						best = Verdict{k, f}
					}
				}
				return true
			})
			return true
		}
		for _, c := range list {
			th, ok := use.Thresholds[c.name]
			if !ok {
				th, ok = use.Thresholds["*"]
			}
			if ok && c.score >= th && (best.Category == "" || c.score > best.Score) {
				best = Verdict{c.name, c.score}
			}
		}
		return true
	})
	return best, bad
}

// CodeFor is the error code of a blocking verdict: guard_moderation_<category>.
func CodeFor(category string) string {
	return "guard_moderation_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '_'
	}, category)
}
