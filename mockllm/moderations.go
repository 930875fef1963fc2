package mockllm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// ModerationCategories are the categories of OpenAI's omni-moderation
// model, in the order the mock reports them.
func ModerationCategories() []string {
	return []string{"harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
		"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence", "violence/graphic"}
}

// moderationTriggers are the words that raise a category's score in the
// mock (0.9 plus a little per extra hit), so demos and tests can flag text
// deterministically. "[flag:<category>]" in a text scores that category
// 0.99, and "[score:<category>=0.NN]" sets an exact score.
func moderationTriggers() map[string][]string {
	return map[string][]string{
		"violence":   {"kill", "murder", "bomb", "shoot"},
		"harassment": {"idiot", "loser"},
		"self-harm":  {"hurt myself"},
		"illicit":    {"launder money", "counterfeit"},
	}
}

// moderationRequest is the part of a moderations request the mock reads.
type moderationRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
}

type moderationResult struct {
	Flagged                   bool                `json:"flagged"`
	Categories                map[string]bool     `json:"categories"`
	CategoryScores            map[string]float64  `json:"category_scores"`
	CategoryAppliedInputTypes map[string][]string `json:"category_applied_input_types"`
}

type moderationResponse struct {
	ID      string             `json:"id"`
	Model   string             `json:"model"`
	Results []moderationResult `json:"results"`
}

// moderationThreshold is the score at which the mock flags a category.
const moderationThreshold = 0.5

// Moderate scores one text the way the mock's /v1/moderations does.
func Moderate(text string) map[string]float64 {
	lower := strings.ToLower(text)
	scores := map[string]float64{}
	for _, c := range ModerationCategories() {
		// a small deterministic base score per text and category
		scores[c] = float64(seedOf(text, c)%1000) / 100000
		if strings.Contains(lower, "[flag:"+c+"]") {
			scores[c] = 0.99
		}
		if _, v, ok := strings.Cut(lower, "[score:"+c+"="); ok {
			var f float64
			if _, err := fmt.Sscanf(v, "%g]", &f); err == nil && f >= 0 && f <= 1 {
				scores[c] = f
			}
		}
	}
	for c, words := range moderationTriggers() {
		hits := 0
		for _, w := range words {
			hits += strings.Count(lower, w)
		}
		if hits > 0 && scores[c] < 0.9 {
			scores[c] = min(0.9+0.01*float64(hits-1), 0.98)
		}
	}
	return scores
}

// moderations answers POST /v1/moderations with deterministic scores.
func (s *Server) moderations(w http.ResponseWriter, _ *http.Request, body []byte) {
	var req moderationRequest
	if e := decode(body, &req); e != nil {
		writeError(w, e)
		return
	}
	if req.Model == "" {
		req.Model = "omni-moderation-latest"
	}
	if len(req.Input) == 0 {
		writeError(w, badRequest("input", "'input' is a required property"))
		return
	}
	var texts []string
	var one string
	if err := json.Unmarshal(req.Input, &one); err == nil {
		texts = []string{one}
	} else if err := json.Unmarshal(req.Input, &texts); err != nil {
		writeError(w, badRequest("input", "'input' must be a string or an array of strings"))
		return
	}
	if len(texts) == 0 || len(texts) > maxEmbeddingInputs {
		writeError(w, badRequest("input", "'input' must hold 1 to %d strings", maxEmbeddingInputs))
		return
	}
	resp := moderationResponse{Model: req.Model, ID: responseID("modr-", seedOf(append([]string{req.Model}, texts...)...))}
	for _, t := range texts {
		r := moderationResult{Categories: map[string]bool{}, CategoryScores: Moderate(t), CategoryAppliedInputTypes: map[string][]string{}}
		for c, v := range r.CategoryScores {
			r.Categories[c] = v >= moderationThreshold
			r.Flagged = r.Flagged || v >= moderationThreshold
			r.CategoryAppliedInputTypes[c] = []string{"text"}
		}
		resp.Results = append(resp.Results, r)
	}
	writeJSON(w, http.StatusOK, resp)
}
