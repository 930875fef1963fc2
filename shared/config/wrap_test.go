package config

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestWrapMatchesErrorf checks Wrap and Wrap2 word and unwrap errors as the
// fmt.Errorf calls they replace.
func TestWrapMatchesErrorf(t *testing.T) {
	inner := errors.New("inner")
	tests := []struct {
		name string
		got  error
		want string
		is   []error
	}{
		{"prefix", Wrap("read: ", io.EOF, ""), fmt.Errorf("read: %w", io.EOF).Error(), []error{io.EOF}},
		{"suffix", Wrap("", io.EOF, ": at byte 3"), fmt.Errorf("%w: at byte 3", io.EOF).Error(), []error{io.EOF}},
		{"both sides", Wrap("a ", io.EOF, " b"), fmt.Errorf("a %w b", io.EOF).Error(), []error{io.EOF}},
		{"nil", Wrap("x: ", nil, ""), "x: <nil>", nil},
		{"two", Wrap2(io.EOF, ": limit: ", inner), fmt.Errorf("%w: limit: %w", io.EOF, inner).Error(), []error{io.EOF, inner}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Helper()
			if tt.got.Error() != tt.want {
				t.Errorf("Error() = %q, want %q", tt.got.Error(), tt.want)
			}
			for _, target := range tt.is {
				if !errors.Is(tt.got, target) {
					t.Errorf("errors.Is(%q, %v) = false", tt.got, target)
				}
			}
			if errors.Is(tt.got, io.ErrUnexpectedEOF) {
				t.Errorf("errors.Is matched an error it does not wrap")
			}
		})
	}
}

// TestClipCutsRunes checks Clip counts runes as %.Ns does.
func TestClipCutsRunes(t *testing.T) {
	for _, s := range []string{"", "abc", "héllo wörld", strings.Repeat("€", 300), "a\xffb"} {
		for _, n := range []int{0, 1, 3, 200} {
			if got, want := Clip(s, n), fmt.Sprintf("%.*s", n, s); got != want {
				t.Errorf("Clip(%q, %d) = %q, want %q", s, n, got, want)
			}
		}
	}
}
