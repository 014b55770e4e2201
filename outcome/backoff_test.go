package outcome_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/outcome"
)

func TestBackoffDoublesUpToItsCap(t *testing.T) {
	cases := []struct {
		b    outcome.Backoff
		want []time.Duration // after the 1st, 2nd, … Unknown in a row
	}{
		{outcome.Backoff{Initial: time.Second, Max: 10 * time.Second}, []time.Duration{1, 2, 4, 8, 10, 10}},
		{outcome.Backoff{Initial: 2 * time.Second, Max: 5 * time.Minute}, []time.Duration{2, 4, 8, 16, 32, 64, 128, 256, 300, 300}},
		// An Initial above the cap starts at the cap.
		{outcome.Backoff{Initial: time.Minute, Max: 30 * time.Second}, []time.Duration{30, 30}},
	}
	for _, c := range cases {
		for i, want := range c.want {
			NewWithT(t).Expect(c.b.Delay(i+1)).To(Equal(want*time.Second), "%+v after %d Unknown", c.b, i+1)
		}
	}
	NewWithT(t).Expect(outcome.Backoff{Initial: time.Second, Max: time.Hour}.Delay(1000)).To(Equal(time.Hour))
}

func TestBackoffBudget(t *testing.T) {
	g := NewWithT(t)
	b := outcome.Backoff{Initial: time.Second, Max: time.Minute, Budget: 2}
	g.Expect([]bool{b.Spent(0), b.Spent(1), b.Spent(2), b.Spent(3)}).To(Equal([]bool{false, false, false, true}))
	g.Expect(outcome.Backoff{Budget: 0}.Spent(1)).To(BeTrue())
	g.Expect(outcome.Backoff{Budget: -1}.Spent(1 << 30)).To(BeFalse())
}

func TestShortenNeverSplitsACharacter(t *testing.T) {
	g := NewWithT(t)
	g.Expect(outcome.Shorten("short", 10)).To(Equal("short"))
	g.Expect(outcome.Shorten("abcdefghij", 8)).To(Equal("abcde…"))
	s := strings.Repeat("é", 10) // 2 bytes each
	for n := 0; n <= len(s)+1; n++ {
		out := outcome.Shorten(s, n)
		g.Expect(len(out)).To(BeNumerically("<=", n), "n=%d", n)
		g.Expect(utf8.ValidString(out)).To(BeTrue(), "n=%d: %q", n, out)
		if n < len(s) && n >= 3 {
			g.Expect(out).To(HaveSuffix("…"))
		}
	}
}
