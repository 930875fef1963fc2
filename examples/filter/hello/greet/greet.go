// Package greet is the hello filter's policy: its configuration and its
// decisions, in plain Go with no proxy-wasm calls, so every rule is a native
// table test. (A policy that needs the host, such as the clock, a callout or
// shared data, takes a small Host interface instead; see filters/apikey/gate.)
package greet

import (
	"errors"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/shared/apierror"
	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/identity"
)

// Header is the header the filter adds to the request and the response.
const Header = "x-hello"

// Metric names: one counter per outcome, defined at start so both show at zero.
const (
	MetricGreeted = "tollgate_hello_greeted_total"
	MetricDenied  = "tollgate_hello_denied_total"
)

// CodeDenied is the error code of a refused path.
const CodeDenied = "path_denied"

// maxGreeting bounds the configured greeting, which ends up in headers.
const maxGreeting = 64

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config

// Config is the plugin configuration, decoded strictly (unknown fields are
// errors) by the DecodeConfig that go generate writes into config_decode.go.
type Config struct {
	// Greeting starts the x-hello header; default "hello".
	Greeting string `json:"greeting"`
	// DenyPrefixes are path prefixes answered 403.
	DenyPrefixes []string `json:"deny_prefixes"`
	// ErrorStyle is "openai" (default) or "apigee".
	ErrorStyle string `json:"error_style"`
}

// Policy is a parsed configuration.
type Policy struct {
	greeting string
	deny     []string
	// Style is the shape of error bodies.
	Style apierror.Style
}

// Parse reads and checks the plugin configuration; a blank one means the defaults.
func Parse(raw []byte) (*Policy, error) {
	var c Config
	if strings.TrimSpace(string(raw)) != "" {
		if err := config.Decode(raw, &c); err != nil {
			return nil, config.Wrap("hello config: ", err, "")
		}
	}
	p := &Policy{greeting: c.Greeting}
	if p.greeting == "" {
		p.greeting = "hello"
	}
	if len(p.greeting) > maxGreeting || strings.ContainsAny(p.greeting, "\r\n\x00") {
		return nil, errors.New("hello config: greeting must be at most 64 bytes on one line")
	}
	for _, d := range c.DenyPrefixes {
		if !strings.HasPrefix(d, "/") {
			return nil, errors.New("hello config: deny prefix " + strconv.Quote(d) + " must start with /")
		}
		p.deny = append(p.deny, d)
	}
	style, ok := apierror.ParseStyle(c.ErrorStyle)
	if !ok {
		return nil, errors.New("hello config: error_style " + strconv.Quote(c.ErrorStyle) + " must be \"openai\" or \"apigee\"")
	}
	p.Style = style
	return p, nil
}

// Decision is what to do with one request.
type Decision struct {
	// Err, when set, is the local reply; the request never reaches the upstream.
	Err *apierror.Error
	// Greeting is the x-hello value for the upstream request.
	Greeting string
}

// Decide greets the caller named by the apikey filter's identity header
// (app), or a stranger, unless the path is denied.
func (p *Policy) Decide(path, app string) Decision {
	for _, d := range p.deny {
		if strings.HasPrefix(path, d) {
			return Decision{Err: apierror.New(403, CodeDenied, "this path is not open to callers")}
		}
	}
	if app == "" {
		app = "stranger"
	}
	return Decision{Greeting: p.greeting + ", " + app}
}

// ResponseGreeting is the x-hello value for the response.
func (p *Policy) ResponseGreeting() string { return p.greeting }

// AppHeader is the identity header the greeting reads.
const AppHeader = identity.HeaderApp
