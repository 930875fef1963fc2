package bucket

import (
	"reflect"
	"testing"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/window"
)

// FuzzDecode: any bytes either fail with ErrCorrupt or decode to a State that
// encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	seed := State{FlexiStart: 1, FlexiEnd: 2, ExpireAt: 3, Buckets: []counter.Bucket{{Index: 1, Used: 2}},
		Reservations: []Reservation{{Token: "t", Bucket: 1, Amount: 2, Expires: 3}}}
	b, _ := seed.AppendBinary(nil)
	f.Add(b)
	f.Add([]byte{encodingVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Decode(b)
		if err != nil {
			return
		}
		again, err := st.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if len(b) > 0 && string(again) != string(b) {
			t.Fatalf("round trip changed %x into %x", b, again)
		}
	})
}

// FuzzOps runs a byte-driven sequence of consumes, reservations, settles and
// releases on one State and checks the contract's invariants after each: the
// reported usage is the sum of the counted buckets, an op that is not forced
// never takes usage past the limit, buckets stay ordered and positive, and
// the state survives an encode/decode round trip.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 3, 1, 5, 2, 0, 3, 1, 4, 9, 5, 2})
	f.Add([]byte{1, 9, 1, 9, 7, 200, 2, 1, 3, 1, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		const limit = 10
		var now int64
		st := &State{}
		kinds := []window.Kind{window.Calendar, window.Rolling, window.Flexi}
		kind := kinds[0]
		if len(prog) > 0 {
			kind = kinds[int(prog[0])%3]
			prog = prog[1:]
		}
		frame := func() counter.Frame {
			switch kind {
			case window.Rolling:
				return rollingAt(now)
			case window.Flexi:
				return flexiAt(now)
			}
			start := now / 1000 * 1000
			return counter.Frame{Kind: window.Calendar, Current: start, Oldest: start, Deadline: start + 1000}
		}
		var tokens []string
		for len(prog) >= 2 {
			code, arg := prog[0]%6, int64(prog[1])
			prog = prog[2:]
			var out counter.Outcome
			before := st.Prune(now, frame()).Used
			switch code {
			case 0, 1: // consume, forced on 1
				o := op(frame(), arg%8, limit)
				o.Force = code == 1
				out, _ = st.Apply(now, o)
				if !o.Force && before <= limit && out.Used > limit {
					t.Fatalf("consume of %d took usage %d past the limit", o.N, out.Used)
				}
			case 2: // reserve
				tok := string(rune('a' + len(tokens)%26))
				tokens = append(tokens, tok)
				out, _ = st.Apply(now, *reserve(frame(), arg%8, limit, tok, now+arg))
			case 3, 4: // settle, release
				if len(tokens) == 0 {
					continue
				}
				actual := arg % 8
				if code == 4 {
					actual = -1
				}
				var found bool
				if out, found = st.Adjust(now, *adjust(frame(), tokens[int(arg)%len(tokens)], actual)); !found {
					continue
				}
			case 5: // time passes
				now += arg * 3
				continue
			}
			var sum int64
			for _, b := range st.Buckets {
				if b.Used <= 0 {
					t.Fatalf("bucket %d kept with usage %d", b.Index, b.Used)
				}
				sum += b.Used
			}
			if c := st.Prune(now, frame()); out.Used != c.Used || c.Used > sum {
				t.Fatalf("reported %d, counted %d, buckets hold %d", out.Used, c.Used, sum)
			}
			b, err := st.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("decode own encoding: %v", err)
			}
			got.nextExpiry, st.nextExpiry = 0, 0
			if !reflect.DeepEqual(normal(got), normal(*st)) {
				t.Fatalf("round trip changed %+v into %+v", *st, got)
			}
		}
	})
}

// normal makes empty and nil slices compare equal.
func normal(st State) State {
	if len(st.Buckets) == 0 {
		st.Buckets = nil
	}
	if len(st.Reservations) == 0 {
		st.Reservations = nil
	}
	return st
}
