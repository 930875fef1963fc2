package keystore

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/tollgate/tollgate/keystore/model"
)

// AdminTokenFile is the file in the data dir holding a generated admin token.
const AdminTokenFile = "admin-token"

// AdminTokenEnv is the environment variable both `serve` and the CLI read the token from.
const AdminTokenEnv = "TOLLGATE_ADMIN_TOKEN"

// TokenSource says where ResolveAdminToken found the token (for logs).
type TokenSource string

// Token sources, in order of precedence.
const (
	TokenFromFlag      TokenSource = "flag"
	TokenFromEnv       TokenSource = "environment"
	TokenFromFile      TokenSource = "file"
	TokenFromGenerated TokenSource = "generated"
)

// ResolveAdminToken picks the admin token: the flag, else the environment,
// else the token file in dataDir, else a newly generated token written to
// that file with mode 0600. The token itself is never logged.
func ResolveAdminToken(flagVal, envVal, dataDir string) (string, TokenSource, error) {
	check := func(tok string, src TokenSource) (string, TokenSource, error) {
		tok = strings.TrimSpace(tok)
		if len(tok) < MinAdminTokenLen {
			return "", src, fmt.Errorf("admin token from %s is shorter than %d characters", src, MinAdminTokenLen)
		}
		if strings.ContainsAny(tok, " \t\r\n") {
			return "", src, fmt.Errorf("admin token from %s contains whitespace", src)
		}
		return tok, src, nil
	}
	switch {
	case flagVal != "":
		return check(flagVal, TokenFromFlag)
	case envVal != "":
		return check(envVal, TokenFromEnv)
	case dataDir == "":
		return "", "", errors.New("no admin token: pass --admin-token, set " + AdminTokenEnv + " or give a --data-dir to keep a generated one")
	}
	path := filepath.Join(dataDir, AdminTokenFile)
	if raw, err := os.ReadFile(path); err == nil {
		return check(string(raw), TokenFromFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("read admin token: %w", err)
	}
	tok, err := model.GenerateKey(nil)
	if err != nil {
		return "", "", fmt.Errorf("generate admin token: %w", err)
	}
	tok = "tgadmin_" + strings.TrimPrefix(tok, model.KeyPrefix)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", fmt.Errorf("create data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("write admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", "", fmt.Errorf("write admin token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", "", fmt.Errorf("sync admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("close admin token file: %w", err)
	}
	return tok, TokenFromGenerated, nil
}

// ReadAdminTokenFile reads the token `serve` generated, for the CLI.
func ReadAdminTokenFile(dataDir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, AdminTokenFile))
	if err != nil {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// DataTokenEnv is the environment variable `serve` reads the data-plane
// token from; the demo's Envoy passes the same variable to the filters.
const DataTokenEnv = "TOLLGATE_DATA_TOKEN"

// ResolveDataToken picks the data-plane token: the flag, else the file,
// else the environment; "" (with source "") when none is given. Like the
// admin token it must be at least MinAdminTokenLen characters without
// white space, and it is never logged.
func ResolveDataToken(flagVal, file, envVal string) (string, TokenSource, error) {
	var tok string
	var src TokenSource
	switch {
	case flagVal != "" && file != "":
		return "", "", errors.New("give the data-plane token by flag or by file, not both")
	case flagVal != "":
		tok, src = flagVal, TokenFromFlag
	case file != "":
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", TokenFromFile, fmt.Errorf("read data-plane token: %w", err)
		}
		tok, src = string(raw), TokenFromFile
	case envVal != "":
		tok, src = envVal, TokenFromEnv
	default:
		return "", "", nil
	}
	tok = strings.TrimSpace(tok)
	if len(tok) < MinAdminTokenLen {
		return "", src, fmt.Errorf("data-plane token from %s is shorter than %d characters", src, MinAdminTokenLen)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", src, fmt.Errorf("data-plane token from %s contains whitespace", src)
	}
	return tok, src, nil
}

// IsLoopback reports whether a listen address (host:port) only accepts
// connections from this machine: localhost or a loopback IP. An empty host
// ("":8420) listens everywhere.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
