package mockllm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	tcusage "github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
)

// Usage modes: what the mock reports as usage (Options.Usage for every
// request, or X-Mock-Usage for one). They let metering gateways be tested
// against upstreams that report the most a request permits, or nonsense.
const (
	// UsageExact (the default) reports the reply's exact usage under Tokens.
	UsageExact = "exact"
	// UsageWorst makes every choice generate exactly its output cap
	// (max_completion_tokens / max_tokens; a request without a cap keeps
	// its natural length) and reports as prompt_tokens the tokencount
	// filter's prompt bound of the body under the default constants: the
	// highest usage the request permits.
	UsageWorst = "worst"
	// UsageAbsurd reports 10^18 prompt tokens.
	UsageAbsurd = "absurd"
	// UsageNegative reports a negative prompt count.
	UsageNegative = "negative"
	// UsageFraction reports a fractional prompt count.
	UsageFraction = "fraction"
	// UsageMissing reports no usage at all, not even in a stream that asked
	// for it.
	UsageMissing = "missing"
)

// HeaderUsage picks the usage mode of one request.
const HeaderUsage = "X-Mock-Usage"

// ParseUsageMode validates a usage mode name ("" is UsageExact).
func ParseUsageMode(m string) (string, error) {
	switch m {
	case "":
		return UsageExact, nil
	case UsageExact, UsageWorst, UsageAbsurd, UsageNegative, UsageFraction, UsageMissing:
		return m, nil
	}
	return "", fmt.Errorf("usage mode %q: want exact, worst, absurd, negative, fraction or missing", m)
}

// usageMode is the request's mode: its header, else the server's.
func (s *Server) usageMode(r *http.Request) (string, *apierror.Error) {
	h := r.Header.Get(HeaderUsage)
	if h == "" {
		return s.usage, nil
	}
	m, err := ParseUsageMode(h)
	if err != nil {
		return "", badRequest("", "%s: %v.", HeaderUsage, err)
	}
	return m, nil
}

// worstPrompt is the prompt count of UsageWorst: the tokencount filter's
// default prompt bound of body, or exact when the filter could not read it.
func worstPrompt(api tcusage.API, body []byte, exact int) int {
	req, err := tcusage.ParseRequest(api, body)
	if err != nil {
		return exact
	}
	return int(tcusage.Bounds{}.Prompt(req, tcusage.Estimator{}))
}

// worstReplies makes every choice exactly limit tokens long.
func worstReplies(seed uint64, n, limit int) []reply {
	replies := make([]reply, n)
	for i := range replies {
		replies[i] = generateExactly(seedWith(seed, int64(i)), limit)
	}
	return replies
}

// reportedUsage is the usage a mode reports (nil: none, which a JSON
// answer renders as "usage": null and a stream leaves out).
func reportedUsage(mode string, u *usage) *usage {
	c := *u
	switch mode {
	case UsageMissing:
		return nil
	case UsageAbsurd:
		c.PromptTokens = 1_000_000_000_000_000_000
	case UsageNegative:
		c.PromptTokens = -max(u.PromptTokens, 1)
	case UsageFraction:
		c.fraction = true
	default:
		return u
	}
	c.TotalTokens = c.PromptTokens + c.CompletionTokens
	return &c
}

// MarshalJSON writes the usage, with half a token more in prompt_tokens
// and total_tokens under UsageFraction.
func (u usage) MarshalJSON() ([]byte, error) {
	type plain usage
	b, err := json.Marshal(plain(u))
	if err != nil || !u.fraction {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["prompt_tokens"] = json.RawMessage(strconv.Itoa(u.PromptTokens) + ".5")
	m["total_tokens"] = json.RawMessage(strconv.Itoa(u.TotalTokens) + ".5")
	return json.Marshal(m)
}
