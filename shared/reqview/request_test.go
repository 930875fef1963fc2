package reqview

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	r, err := ParseRequest([]byte(`{"model":"gemma","stream":true,"stream_options":{"include_usage":true},
		"max_tokens":10,"max_completion_tokens":20,"n":2,
		"messages":[{"role":"system","content":"be brief"},{"role":"user","name":"bob","content":[{"type":"text","text":"h\u00e9llo"},{"type":"image_url","image_url":{"url":"data:x"}}]},
		{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}]}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "gemma" || !r.Stream || !r.IncludeUsage || !r.StreamOptions.Exists() {
		t.Errorf("fields: %+v", r)
	}
	if Count(r.MaxTokens) != 10 || Count(r.MaxCompletionTokens) != 20 || Count(r.N) != 2 || r.BestOf.Exists() {
		t.Errorf("counts: %d %d %d", Count(r.MaxTokens), Count(r.MaxCompletionTokens), Count(r.N))
	}
	var got []string
	r.Texts(func(p string, v Value) bool { got = append(got, p+"="+v.Str()); return true })
	want := []string{
		"messages[0].content=be brief",
		"messages[1].name=bob",
		"messages[1].content[0].text=héllo",
		"messages[2].tool_calls[0].function.name=f",
		`messages[2].tool_calls[0].function.arguments={"a":1}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Texts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n, w := r.TextBytes(), int64(len("be brief")+len("bob")+len("héllo")+len("f")+len(`{"a":1}`)); n != w {
		t.Errorf("TextBytes = %d, want %d", n, w)
	}
}

func TestParseRequestRefuses(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000)
	deepArr := strings.Repeat(`[`, 5000) + strings.Repeat(`]`, 5000)
	cases := []struct {
		name, body, param, msg string
	}{
		{"not an object", `[1]`, "", "must be a JSON object"},
		{"model case variant", `{"model":"gemma","Model":"llama"}`, "", "differ only in case"},
		{"lone case variant", `{"Model":"llama"}`, "model", "only in case"},
		{"escaped model", `{"mod\u0065l":"llama"}`, "model", "escapes"},
		{"max tokens variant", `{"max_tokens":1,"Max_tokens":40}`, "", "differ only in case"},
		{"lone max tokens variant", `{"Max_tokens":40}`, "max_tokens", "only in case"},
		{"kelvin", `{"max_to\u212aens":40}`, "max_tokens", "only in case"},
		{"stream_options variant", `{"stream_options":{"Include_usage":true}}`, "stream_options.include_usage", "only in case"},
		{"message role variant", `{"messages":[{"Role":"user","content":"x"}]}`, "messages[0].role", "only in case"},
		{"message content variant", `{"messages":[{"role":"user","Content":"x"}]}`, "messages[0].content", "only in case"},
		{"part text variant", `{"messages":[{"role":"user","content":[{"type":"text","Text":"x"}]}]}`, "messages[0].content[0].text", "only in case"},
		{"image url variant", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"URL":"x"}}]}]}`, "messages[0].content[0].image_url.url", "only in case"},
		{"tool call variant", `{"messages":[{"role":"assistant","tool_calls":[{"function":{"Arguments":"x"}}]}]}`, "messages[0].tool_calls[0].function.arguments", "only in case"},
		{"model not string", `{"model":1}`, "model", "must be a string"},
		{"stream not bool", `{"stream":"yes"}`, "stream", "must be a boolean"},
		{"include_usage not bool", `{"stream_options":{"include_usage":1}}`, "stream_options.include_usage", "must be a boolean"},
		{"stream_options not object", `{"stream_options":[]}`, "stream_options", "must be an object"},
		{"max_tokens float", `{"max_tokens":1.5}`, "max_tokens", "positive integer"},
		{"max_tokens exponent", `{"max_tokens":1e2}`, "max_tokens", "positive integer"},
		{"max_tokens zero", `{"max_tokens":0}`, "max_tokens", "positive integer"},
		{"max_tokens negative", `{"max_tokens":-5}`, "max_tokens", "positive integer"},
		{"max_tokens huge", `{"max_tokens":99999999999999999999}`, "max_tokens", "positive integer"},
		{"max_tokens string", `{"max_tokens":"40"}`, "max_tokens", "positive integer"},
		{"n too large", `{"n":5000}`, "n", "at most 1024"},
		{"deep content", `{"model":"x","messages":[{"role":"user","content":` + deep + `}]}`, "", "nesting"},
		{"deep top", deep, "", "nesting"},
		{"deep model", `{"model":` + deepArr + `}`, "", "nesting"},
		{"deep tools", `{"tools":` + deepArr + `}`, "", "nesting"},
		{"deep stream_options", `{"stream_options":` + deep + `}`, "", "nesting"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(c.body), Limits{})
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want *Error", err)
			}
			if re.Status != 400 || re.Param != c.param || !strings.Contains(re.Msg, c.msg) {
				t.Fatalf("got %d param %q msg %q; want param %q msg containing %q", re.Status, re.Param, re.Msg, c.param, c.msg)
			}
		})
	}
}

func TestTextsShapes(t *testing.T) {
	cases := []struct {
		body string
		want []string
	}{
		{`{"prompt":"p1","suffix":"s"}`, []string{"prompt=p1", "suffix=s"}},
		{`{"prompt":["a","b",[1,2]]}`, []string{"prompt[0]=a", "prompt[1]=b"}},
		{`{"input":"e"}`, []string{"input=e"}},
		{`{"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"1","content":[{"type":"text","text":"res"}]},{"type":"thinking","thinking":"hm"}]}]}`,
			[]string{"system[0].text=sys", "messages[0].content[0].content[0].text=res", "messages[0].content[1].thinking=hm"}},
		{`{"system":"s","messages":[{"role":"user","content":[{"type":"tool_result","content":"flat"}]}]}`,
			[]string{"system=s", "messages[0].content[0].content=flat"}},
	}
	for _, c := range cases {
		r, err := ParseRequest([]byte(c.body), Limits{})
		if err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		var got []string
		r.Texts(func(p string, v Value) bool { got = append(got, p+"="+v.Str()); return true })
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: Texts = %v, want %v", c.body, got, c.want)
		}
	}
}

func TestTextsStops(t *testing.T) {
	r, err := ParseRequest([]byte(`{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"prompt":"c"}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	r.Texts(func(string, Value) bool { n++; return false })
	if n != 1 {
		t.Fatalf("visited %d texts after stop", n)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"model":"x","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":3}`))
	f.Add([]byte(`{"prompt":["a",[1]],"n":2,"stream":true,"stream_options":{"include_usage":false}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body, Limits{MaxDepth: 16})
		if err != nil {
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not *Error", err)
			}
			return
		}
		var sum int64
		r.Texts(func(_ string, v Value) bool {
			if v.StrLen() != len(v.Str()) {
				t.Fatalf("StrLen %d != len(Str) %d for %q", v.StrLen(), len(v.Str()), v.Raw())
			}
			sum += int64(v.StrLen())
			return true
		})
		if sum != r.TextBytes() || sum > int64(len(body)) {
			t.Fatalf("TextBytes %d, sum %d, body %d", r.TextBytes(), sum, len(body))
		}
	})
}
