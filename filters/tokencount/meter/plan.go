package meter

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/tollgate/tollgate/filters/tokencount/usage"
	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/reqview"
)

// Error codes the filter answers with.
const (
	CodeBodyRequired       = "body_required"
	CodeTooLarge           = "request_too_large"
	CodeQuotaExceeded      = "token_quota_exceeded"
	CodeRequestOverLimit   = "token_request_over_limit"
	CodeKeystoreError      = "token_quota_unavailable"
	CodeInvalidIdentity    = "invalid_identity"
	CodeInternal           = "internal_error"
	codeInvalidRequestBody = "invalid_request_body"
)

var errTooLong = errors.New("a counter key part is longer than 256 bytes")

// Plan is the request-side decision for one metered request.
type Plan struct {
	// API is the endpoint dialect.
	API usage.API
	// Model is the requested model ("" when the body names none): the
	// public model a trusted filter named, else the body's model. Metric
	// labels, the access-log model and prices use it.
	Model string
	// BodyModel is the model the request body names (the backend name
	// after modelroute rewrote it).
	BodyModel string
	// Stream is true for a streamed (SSE) response.
	Stream bool
	// PromptEstimate is the estimated prompt tokens.
	PromptEstimate int64
	// OutputReserve is the completion tokens reserved (all choices).
	OutputReserve int64
	// Amount is the reservation in the quota's unit (tokens or cost).
	Amount int64
	// Body is the rewritten request body (include_usage injected), nil
	// when the body goes upstream unchanged.
	Body []byte
	// StripUsage is true when the upstream's usage-only chunk must be
	// removed because the client had not asked for it.
	StripUsage bool
	// Quota is the quota the request is metered against (nil: none).
	Quota *Quota
	// Price is the model's price (cost quotas).
	Price usage.Price

	// Strict is true when the plan reserves the prompt bound
	// (PromptEstimate == PromptBound) and charges its reservation when the
	// upstream reports no usage.
	Strict bool
	// OutputPerChoice is the output reserved per choice; Choices the number
	// of choices generated (n × prompts; 0 for embeddings).
	OutputPerChoice, Choices int64
	// OutputEnforced is true when the forwarded body caps every choice's
	// output at OutputPerChoice, so the upstream cannot generate more.
	OutputEnforced bool
	// PromptBound and CompletionBound are the most the request can
	// legitimately use (see Check).
	PromptBound, CompletionBound int64
	// Sent is the body as forwarded, kept only when a later clamp may need
	// to rewrite it again.
	Sent []byte
}

// Reserved is the reservation as usage (prompt estimate + output reserve).
func (pl *Plan) Reserved() usage.Usage {
	return usage.Usage{
		PromptTokens:     pl.PromptEstimate,
		CompletionTokens: pl.OutputReserve,
		TotalTokens:      pl.PromptEstimate + pl.OutputReserve,
		Estimated:        true,
	}
}

// Charge is what a usage costs against the plan's quota (0 without one).
func (pl *Plan) Charge(u usage.Usage) int64 {
	if pl.Quota == nil {
		return 0
	}
	return usage.Charge(pl.Quota.Metric, u, pl.Price)
}

// PlanRequest parses a complete request body and decides the reservation.
// A malformed body is a 400 naming the parameter (and no plan); a
// reservation that can never fit the quota's limit is a 429 before the
// upstream is touched (returned with its plan, for metric labels).
func (p *Policy) PlanRequest(api usage.API, body []byte, q *Quota) (*Plan, *apierror.Error) {
	return p.PlanRequestAs(api, body, q, "")
}

// PlanRequestAs is PlanRequest for a request whose public model name
// (from PublicModel) may differ from the model its body names: the plan is
// labelled and priced as publicModel ("" keeps the body's model). A price
// configured only for the body's (backend) name still applies, so pricing
// keyed by backend names keeps working. The token arithmetic is the same.
func (p *Policy) PlanRequestAs(api usage.API, body []byte, q *Quota, publicModel string) (*Plan, *apierror.Error) {
	return p.PlanRequestMemo(nil, api, body, q, publicModel)
}

// PlanRequestMemo is PlanRequestAs reading the body through a stream's
// request-view memo, so the filters of one stream parse one body once.
func (p *Policy) PlanRequestMemo(m *reqview.Memo, api usage.API, body []byte, q *Quota, publicModel string) (*Plan, *apierror.Error) {
	if int64(len(body)) > p.MaxRequestBytes {
		return nil, p.TooLarge()
	}
	rv, err := m.ParseRequest(body, reqview.Limits{MaxBytes: int(p.MaxRequestBytes), MaxDepth: p.MaxJSONDepth})
	if err != nil {
		return nil, badRequest(usage.ViewError(err))
	}
	req, err := usage.FromView(api, rv)
	if err != nil {
		return nil, badRequest(err)
	}
	if p.Strict && req.Prompt.Template {
		// A client-supplied template can expand a prompt without bound.
		return nil, Unbounded([]string{"chat_template"})
	}
	if p.Strict && p.RefuseUnbounded {
		if kinds := req.Prompt.Unbounded(); kinds != nil {
			return nil, Unbounded(kinds)
		}
	}
	prompt, output := p.Estimator.Reservation(req)
	model := req.Model
	if publicModel != "" {
		model = publicModel
	}
	pl := &Plan{
		API:             api,
		Model:           model,
		BodyModel:       req.Model,
		Stream:          req.Stream,
		PromptEstimate:  prompt,
		OutputReserve:   output,
		Quota:           q,
		Price:           p.price(model, req.Model),
		Strict:          p.Strict,
		OutputPerChoice: p.Estimator.MaxOutput(req),
	}
	if api != usage.APIEmbeddings {
		pl.Choices = max(req.N, 1)
		if api == usage.APICompletions {
			pl.Choices *= int64(max(req.Prompt.Inputs, 1))
		}
	}
	pl.OutputEnforced = api == usage.APIEmbeddings || (req.MaxOutputSet && req.MaxOutput == pl.OutputPerChoice)
	sent := body
	if p.Strict && !pl.OutputEnforced {
		// The upstream must not generate more than is reserved: forward
		// the output cap the reservation assumes.
		out := usage.SetMaxOutputView(api, rv, pl.OutputPerChoice)
		sent, pl.Body, pl.OutputEnforced = out, out, true
	}
	p.setBounds(pl, req)
	if p.Strict {
		prompt = pl.PromptBound
		pl.PromptEstimate = prompt
	}
	if p.InjectIncludeUsage && req.Stream && !req.IncludeUsage &&
		(api == usage.APIChatCompletions || api == usage.APICompletions) {
		out, err := injectIncludeUsage(api, sent, req.StreamOptions)
		if err != nil {
			return nil, badRequest(err)
		}
		sent, pl.Body, pl.StripUsage = out, out, true
	}
	if q != nil {
		pl.Amount = pl.Charge(usage.Usage{PromptTokens: prompt, CompletionTokens: output, TotalTokens: prompt + output})
		if pl.Amount > q.Spec.Limit {
			if per, ok := p.ClampOutput(pl, q.Spec.Limit); ok {
				out, err := p.Clamp(pl, sent, per)
				if err != nil {
					return nil, badRequest(err)
				}
				sent, pl.Body = out, out
			}
		}
		if p.Strict && p.ClampMaxTokens {
			pl.Sent = sent
		}
		if pl.Amount > q.Spec.Limit {
			prompt, output = pl.PromptEstimate, pl.OutputReserve
			e := apierror.New(429, CodeRequestOverLimit, "this request may use up to "+strconv.FormatInt(pl.Amount, 10)+" "+unitName(q.Metric)+" (prompt estimate "+strconv.FormatInt(prompt, 10)+" tokens, up to "+strconv.FormatInt(output, 10)+" output tokens), more than the quota of "+strconv.FormatInt(q.Spec.Limit, 10)+" per "+windowName(q)+"; lower max_tokens or shorten the prompt")
			e.Apigee = "policies.ratelimit.QuotaViolation"
			return pl, e
		}
	}
	return pl, nil
}

// price is the price of the public model, falling back to an entry for
// the body's model when only that one is priced.
func (p *Policy) price(model, bodyModel string) usage.Price {
	pr, ok := p.Pricing.Lookup(model)
	if ok || bodyModel == model {
		return pr
	}
	if bpr, ok := p.Pricing.Lookup(bodyModel); ok {
		return bpr
	}
	return pr
}

// maxPublicModelLen bounds the public model header's value.
const maxPublicModelLen = 256

// PublicModel is the public model name a trusted filter in front (modelroute)
// set in the public model header, or "" to use the body's model: when
// identity headers are not trusted (a client could send any value), the
// header is absent or empty, or its value is not a plain model name
// (visible ASCII, at most 256 bytes).
func (p *Policy) PublicModel(get func(name string) string) string {
	if !p.TrustIdentity {
		return ""
	}
	v := get(p.PublicModelHeader)
	if v == "" || len(v) > maxPublicModelLen {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return ""
		}
	}
	return v
}

// includeUsageMember is the member added to a request without stream_options.
const includeUsageMember = `"stream_options":{"include_usage":true},`

// injectIncludeUsage asks the upstream for a usage chunk. A body without
// stream_options (the common case) only needs the member inserted after
// its opening brace, without a second parse; otherwise usage.IncludeUsage
// edits the existing object.
func injectIncludeUsage(api usage.API, body []byte, hasStreamOptions bool) ([]byte, error) {
	if hasStreamOptions {
		out, _, err := usage.IncludeUsage(api, body)
		return out, err
	}
	// ParseRequest accepted the body: a JSON object with members, so the
	// first '{' opens it and the inserted member needs a trailing comma.
	i := bytes.IndexByte(body, '{')
	out := make([]byte, 0, len(body)+len(includeUsageMember))
	out = append(out, body[:i+1]...)
	out = append(out, includeUsageMember...)
	return append(out, body[i+1:]...), nil
}

// TooLarge is the 413 for a request body above MaxRequestBytes.
func (p *Policy) TooLarge() *apierror.Error {
	return apierror.New(413, CodeTooLarge, "the request body is larger than "+strconv.FormatInt(p.MaxRequestBytes, 10)+" bytes")
}

// BodyRequired is the 400 for a metered endpoint called without a body.
func BodyRequired() *apierror.Error {
	return apierror.New(400, CodeBodyRequired, "this endpoint needs a JSON request body")
}

func badRequest(err error) *apierror.Error {
	e := apierror.New(400, codeInvalidRequestBody, err.Error())
	var re *usage.RequestError
	if errors.As(err, &re) {
		e.Param = re.Param
		if re.Code != "" {
			// The canonical view's refusal: the same code and status in
			// every filter.
			e = apierror.New(re.Status, re.Code, err.Error())
			e.Param = re.Param
		}
	}
	return e
}

func unitName(m usage.Metric) string {
	switch m {
	case usage.MetricPrompt:
		return "prompt tokens"
	case usage.MetricCompletion:
		return "completion tokens"
	case usage.MetricCost:
		return "cost units"
	}
	return "tokens"
}

func windowName(q *Quota) string {
	if q.Spec.Interval == 1 {
		return q.Spec.Unit.String()
	}
	return strconv.Itoa(q.Spec.Interval) + " " + q.Spec.Unit.String() + "s"
}
