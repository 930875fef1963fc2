package masker_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/filters/guard/masker"
)

const benchProse = "The quarterly report shows revenue grew 12% to 4.5 million while costs fell. " +
	"Our team shipped version 2.3 of the app, fixed 17 bugs and answered 340 tickets. " +
	"Next steps: hire two engineers, review the roadmap on Monday, and plan the launch. "

const benchPII = "Contact jane.doe@example.com or +1 415 555 0100 about card 4111 1111 1111 1111. "

// BenchmarkMask is the scanning cost per KB of text (bytes/op = text size)
// with every built-in detector masking, in word mode (built-ins only) and
// in line mode (a custom pattern too).
func BenchmarkMask(b *testing.B) {
	word := scanner(b, allMask(), nil)
	line := scanner(b, allMask(), [][3]string{{"codename", "block", `(?i)project\s+falcon`}})
	for _, s := range []struct {
		name string
		sc   *masker.Scanner
	}{{"word", word}, {"line", line}} {
		for _, in := range []struct{ name, text string }{{"prose", benchProse}, {"pii", benchPII}} {
			text := strings.Repeat(in.text, 1024/len(in.text)+1)[:1024]
			b.Run(s.name+"/"+in.name+"-1KB", func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				for b.Loop() {
					rep := s.sc.NewReport()
					s.sc.Mask(text, &rep)
				}
			})
		}
	}
}
