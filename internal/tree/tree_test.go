package tree

import "testing"

func TestDig(t *testing.T) {
	doc := map[string]any{"a": []any{map[string]any{"b": "x"}}}
	if got := Dig(t, doc, "a", 0, "b"); got != "x" {
		t.Fatalf("Dig = %v, want x", got)
	}
	if got := Dig(t, doc, "missing"); got != nil {
		t.Fatalf("missing key = %v, want nil", got)
	}
}
