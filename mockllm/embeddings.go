package mockllm

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
)

// embeddingRequest is the part of an embeddings request the mock reads.
type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

// embeddingObject is one vector of the response; Embedding is a []float32
// or, for encoding_format "base64", the little-endian float32 bytes in base64.
type embeddingObject struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// embeddingUsage is the usage of an embeddings response.
type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// embeddingResponse is the embeddings answer.
type embeddingResponse struct {
	Object string            `json:"object"`
	Data   []embeddingObject `json:"data"`
	Model  string            `json:"model"`
	Usage  embeddingUsage    `json:"usage"`
}

// embeddings answers POST /v1/embeddings.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, body []byte) {
	var req embeddingRequest
	if !s.decodeRequest(w, body, &req, &req.Model) {
		return
	}
	in, e := parsePrompts(req.Input, "input")
	if e != nil {
		writeError(w, e)
		return
	}
	if in.count() > maxEmbeddingInputs {
		writeError(w, badRequest("input", "'input' has %d items; at most %d are allowed.", in.count(), maxEmbeddingInputs))
		return
	}
	for i, t := range in.texts {
		if t == "" {
			writeError(w, badRequest("input", "'$.input[%d]' is invalid: empty strings cannot be embedded.", i))
			return
		}
	}
	dim := s.opts.EmbeddingDimensions
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > maxEmbeddingDimensions {
			writeError(w, badRequest("dimensions", "Invalid 'dimensions': expected a value between 1 and %d, but got %d instead.", maxEmbeddingDimensions, *req.Dimensions))
			return
		}
		dim = *req.Dimensions
	}
	b64 := false
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		b64 = true
	default:
		writeError(w, badRequest("encoding_format", "Invalid value: '%s'. Supported values are: 'float' and 'base64'.", req.EncodingFormat))
		return
	}
	resp := embeddingResponse{Object: "list", Model: req.Model, Data: make([]embeddingObject, in.count())}
	for i := range resp.Data {
		key, t := in.at(i)
		resp.Usage.PromptTokens += t
		v := embed(req.Model, key, dim)
		var enc any = v
		if b64 {
			raw := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			enc = base64.StdEncoding.EncodeToString(raw)
		}
		resp.Data[i] = embeddingObject{Object: "embedding", Index: i, Embedding: enc}
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	if !wait(r.Context(), s.opts.TimeToFirstToken) {
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
