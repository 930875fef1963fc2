// Package keystoreconf is the one "keystore" block of the filters' plugin
// configurations: which Envoy cluster and :authority reach the keystore's
// data plane, how long one callout may take, and the data-plane token the
// callouts carry. apikey, quota and tokencount embed Config in their own
// keystore block (adding only what is theirs, such as a path), so the three
// accept the same fields with the same syntax and refuse the same mistakes.
package keystoreconf

import (
	"errors"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/reqview"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Config

// Limits of the block.
const (
	// MinTimeout and MaxTimeout bound keystore.timeout.
	MinTimeout = time.Millisecond
	MaxTimeout = time.Minute
	// MaxTokenLen bounds the token (it travels in a request header).
	MaxTokenLen = 4096
	// DefaultCluster is the cluster (and default :authority) of the keystore.
	DefaultCluster = "keystore"
	// DefaultTimeout bounds one callout when keystore.timeout is not set.
	DefaultTimeout = 500 * time.Millisecond
	// AuthorizationHeader carries the token as "Bearer <token>".
	AuthorizationHeader = "authorization"
)

// Secret is a token that never prints: fmt, logs and JSON see "[redacted]".
type Secret string

// String hides the value from fmt's %s, %v and %q and from log lines.
func (Secret) String() string { return "[redacted]" }

// GoString hides the value from %#v.
func (Secret) GoString() string { return `"[redacted]"` }

// MarshalText hides the value from encoding/json and slog; UnmarshalText
// still reads it, so a configuration decodes normally.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the token from its JSON string.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = Secret(b)
	return nil
}

// DecodeConfig reads the token from its JSON string (shared/config).
func (s *Secret) DecodeConfig(v reqview.Value, path string) error {
	return config.String(s, v, path)
}

// Reveal returns the token itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// Config is the block as an operator writes it (embedded in each filter's
// keystore block; unknown fields stay errors through shared/config).
type Config struct {
	// Cluster is the Envoy cluster of the keystore data plane (default "keystore").
	Cluster string `json:"cluster"`
	// Authority is the :authority of callouts (default: the cluster name).
	Authority string `json:"authority"`
	// Timeout bounds one callout, as a Go duration string such as "500ms"
	// (1ms to 1m; default: the filter's, normally DefaultTimeout).
	Timeout string `json:"timeout"`
	// Token is the keystore's data-plane token, sent as
	// "Authorization: Bearer <token>". Prefer TokenEnv, which keeps it out
	// of the configuration.
	Token Secret `json:"token"`
	// TokenEnv names an environment variable of the Wasm VM holding the
	// token (Envoy's vm_config.environment_variables: host_env_keys passes
	// the proxy's own variable through; Istio: vmConfig.env). An unset or
	// empty variable is a configuration error, never a silent "no token".
	TokenEnv string `json:"token_env"`
}

// Keystore is a validated block with every default applied.
type Keystore struct {
	Cluster   string
	Authority string
	Timeout   time.Duration
	// Token is "" when none is configured.
	Token Secret
}

// Compile validates c; defTimeout is the filter's default timeout (0:
// DefaultTimeout). getenv reads the VM's environment (nil: syscall.Getenv, what os.Getenv reads).
func (c Config) Compile(defTimeout time.Duration, getenv func(string) string) (Keystore, error) {
	k := Keystore{Cluster: c.Cluster, Authority: c.Authority, Timeout: defTimeout}
	if k.Cluster == "" {
		k.Cluster = DefaultCluster
	}
	if k.Authority == "" {
		k.Authority = k.Cluster
	}
	if k.Timeout == 0 {
		k.Timeout = DefaultTimeout
	}
	if strings.ContainsAny(k.Cluster, "\x00\r\n") {
		return k, errors.New("keystore.cluster holds a control character")
	}
	if !validAuthority(k.Authority) {
		return k, errors.New("keystore.authority " + strconv.Quote(k.Authority) + " is not a host[:port]")
	}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return k, errors.New("keystore.timeout " + strconv.Quote(c.Timeout) + ": want a duration such as \"500ms\" or \"2s\"")
		}
		if d < MinTimeout || d > MaxTimeout {
			return k, errors.New("keystore.timeout " + d.String() + ": want " + MinTimeout.String() + " to " + MaxTimeout.String())
		}
		k.Timeout = d
	}
	tok := string(c.Token)
	switch {
	case tok != "" && c.TokenEnv != "":
		return k, errors.New("keystore: set token or token_env, not both")
	case c.TokenEnv != "":
		if !validEnvName(c.TokenEnv) {
			return k, errors.New("keystore.token_env " + strconv.Quote(c.TokenEnv) + " is not an environment variable name")
		}
		if getenv == nil {
			getenv = func(name string) string { v, _ := syscall.Getenv(name); return v }
		}
		if tok = getenv(c.TokenEnv); tok == "" {
			return k, errors.New("keystore.token_env: " + c.TokenEnv + " is unset or empty in the Wasm VM (pass it with vm_config.environment_variables)")
		}
	}
	tok = strings.TrimSpace(tok)
	if len(tok) > MaxTokenLen {
		return k, errors.New("keystore token is " + strconv.Itoa(len(tok)) + " bytes; the limit is " + strconv.Itoa(MaxTokenLen))
	}
	for i := 0; i < len(tok); i++ {
		if b := tok[i]; b <= ' ' || b >= 0x7f {
			return k, errors.New("keystore token must be printable ASCII without spaces")
		}
	}
	k.Token = Secret(tok)
	return k, nil
}

// AppendAuth appends the Authorization header that carries the token to a
// callout's headers; without a token it returns h unchanged.
func (k Keystore) AppendAuth(h [][2]string) [][2]string {
	if k.Token == "" {
		return h
	}
	return append(h, [2]string{AuthorizationHeader, "Bearer " + k.Token.Reveal()})
}

// String describes the keystore for logs; the token is only said to be set.
func (k Keystore) String() string {
	tok := "none"
	if k.Token != "" {
		tok = "set"
	}
	return "cluster " + k.Cluster + ", authority " + k.Authority + ", timeout " + k.Timeout.String() + ", token " + tok
}

// validAuthority accepts a host name, an IPv4 or bracketed IPv6 address,
// optionally with a port: nothing that could split or smuggle a header.
func validAuthority(a string) bool {
	if a == "" || len(a) > 255 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._:[]|", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validEnvName accepts POSIX-style variable names.
func validEnvName(n string) bool {
	if n == "" || len(n) > 128 || (n[0] >= '0' && n[0] <= '9') {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
