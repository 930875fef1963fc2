package policy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckPath(t *testing.T) {
	tests := []struct {
		path, want string
	}{
		{"/v1/models", ""},
		{"/v1/models/gemma-3-1b-it?x=%2f..%2f&y=..", ""},
		{"/v1/models/google%3Agemma", ""},
		{"/v1/models/a.b/c..d/...", ""},
		{"/v1/models//x", ""},
		{"/v1/models/x;v=1", ""},
		{"", PathNotAbsolute},
		{"*", PathNotAbsolute},
		{"v1/models", PathNotAbsolute},
		{"/v1/models/..%2f..%2fadmin", PathEncodedSep},
		{"/v1/models/..%2F..%2Fadmin", PathEncodedSep},
		{"/v1/models/%2e%2e/admin", PathEncodedSep},
		{"/v1/models/%2E./admin", PathEncodedSep},
		{"/v1/models/x%5cadmin", PathEncodedSep},
		{"/v1/models/x%5Cadmin", PathEncodedSep},
		{"/v1/models/x%00", PathEncodedSep},
		{"/v1/models/x%0a", PathEncodedSep},
		{"/v1/models/%252e%252e/admin", PathEncodedSep},
		{"/v1/models/x%2", PathBadEscape},
		{"/v1/models/x%zz", PathBadEscape},
		{"/v1/models/x%", PathBadEscape},
		{"/v1/models/x\\..\\admin", PathBackslash},
		{"/v1/models/x\x00", PathControl},
		{"/v1/models/x\t", PathControl},
		{"/v1/models/../admin", PathDotSegment},
		{"/v1/models/./x", PathDotSegment},
		{"/v1/models/..", PathDotSegment},
		{"/v1/models/..;/admin", PathDotSegment},
		{"/..", PathDotSegment},
		{"/.", PathDotSegment},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			assert.Equal(t, tt.want, CheckPath(tt.path))
		})
	}
}

func TestBadPathDecision(t *testing.T) {
	p := mustParse(t, ``)
	d := p.BadPath(PathEncodedSep)
	assert.False(t, d.Pass)
	assert.Equal(t, BadRequest, d.Outcome)
	assert.Equal(t, "bad_request", d.Outcome.String())
	require.NotNil(t, d.Error)
	assert.Equal(t, http.StatusBadRequest, d.Error.Status)
	assert.Equal(t, "invalid_request_error", d.Error.Type)
	assert.Equal(t, "invalid_path", d.Error.Code)
	assert.Contains(t, d.Error.Message, PathEncodedSep)
}

// FuzzCheckPath: a path CheckPath accepts decodes (as an upstream would) to
// a path with the same segments and no dot segment, so matching the raw
// path and serving the decoded one agree.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/v1/models/x", "/v1/models/..%2f..%2fadmin", "/a/%2e%2e/b", "/a/..;/b", "/a\\b", "/a%41b?q=%2f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if CheckPath(path) != "" {
			return
		}
		raw := path
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		dec, err := url.PathUnescape(raw)
		require.NoError(t, err, "accepted %q", path)
		require.Equal(t, strings.Count(raw, "/"), strings.Count(dec, "/"), "accepted %q decodes to other segments", path)
		require.NotContains(t, dec, "\\")
		for seg := range strings.SplitSeq(dec, "/") {
			name, _, _ := strings.Cut(seg, ";")
			require.NotContains(t, []string{".", ".."}, name, "accepted %q decodes to a dot segment", path)
		}
	})
}
