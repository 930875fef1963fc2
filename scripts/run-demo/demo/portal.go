package demo

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PortalLoginsFile keeps the demo's portal passwords in the data dir, so
// every run prints the ones the accounts were created with.
const PortalLoginsFile = "portal-logins.json"

// Environment variables `tollgate serve` reads the seeded accounts' passwords from.
const (
	PortalAdminPasswordEnv = "TOLLGATE_PORTAL_ADMIN_PASSWORD"
	PortalDemoPasswordEnv  = "TOLLGATE_PORTAL_DEMO_PASSWORD"
)

// Login is one portal account.
type Login struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// PortalLogins are the accounts `make run` seeds: an admin and the demo
// developer (who owns the demo app, so its usage shows in the portal).
type PortalLogins struct {
	Admin Login `json:"admin"`
	Demo  Login `json:"demo"`
}

// Env passes the passwords to `tollgate serve --portal-admin/--portal-demo-developer`.
func (l PortalLogins) Env() []string {
	return []string{PortalAdminPasswordEnv + "=" + l.Admin.Password, PortalDemoPasswordEnv + "=" + l.Demo.Password}
}

// PortalAccounts reads the demo's portal logins from dataDir, creating them
// (random passwords, file mode 0600) on the first run.
func PortalAccounts(dataDir string) (PortalLogins, error) {
	path := filepath.Join(dataDir, PortalLoginsFile)
	raw, err := os.ReadFile(path)
	if err == nil {
		var l PortalLogins
		if err := json.Unmarshal(raw, &l); err != nil || l.Admin.Password == "" || l.Demo.Password == "" {
			return PortalLogins{}, fmt.Errorf("%s is damaged; delete it (and %s) to start afresh", path, dataDir)
		}
		return l, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return PortalLogins{}, fmt.Errorf("read portal logins: %w", err)
	}
	l := PortalLogins{Admin: Login{Email: "admin@tollgate.local"}, Demo: Login{Email: "demo@tollgate.local"}}
	for _, lg := range []*Login{&l.Admin, &l.Demo} {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return PortalLogins{}, fmt.Errorf("portal password: %w", err)
		}
		lg.Password = base64.RawURLEncoding.EncodeToString(b[:])
	}
	raw, err = json.Marshal(l)
	if err != nil {
		return PortalLogins{}, fmt.Errorf("encode portal logins: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return PortalLogins{}, fmt.Errorf("create %s: %w", dataDir, err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return PortalLogins{}, fmt.Errorf("write portal logins: %w", err)
	}
	return l, nil
}
