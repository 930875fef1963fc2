package policy

import (
	"net"
	"strings"
	"testing"
)

// TestHostOnlyMatchesSplitHostPort checks hostOnly keeps the address part
// net.SplitHostPort would, for the forms Envoy reports and for junk.
func TestHostOnlyMatchesSplitHostPort(t *testing.T) {
	for _, addr := range []string{"10.0.0.1:5555", "[::1]:80", "[fe80::1%eth0]:443", "::1", "[::1]", "10.0.0.1", "", ":80", "[]:1", "a:b:c", "[a]b:80", "[[a]]:80", "1.2.3.4:"} {
		checkHostOnly(t, addr)
	}
}

// FuzzHostOnly differentially checks hostOnly against net.SplitHostPort.
func FuzzHostOnly(f *testing.F) {
	for _, s := range []string{"10.0.0.1:5555", "[::1]:80", "::1", "[a]b:80"} {
		f.Add(s)
	}
	f.Fuzz(checkHostOnly)
}

func checkHostOnly(t *testing.T, addr string) {
	t.Helper()
	want := strings.Trim(addr, "[]")
	if host, _, err := net.SplitHostPort(addr); err == nil {
		want = host
	}
	if got := hostOnly(addr); got != want {
		t.Errorf("hostOnly(%q) = %q, want %q", addr, got, want)
	}
}
