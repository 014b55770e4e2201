package traffic

import (
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
)

func TestSplitGivesTheCanaryItsRoundedShareAndAtLeastOnePod(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct{ replicas, weight, canary, stable int32 }{
		{5, 20, 1, 4},
		{5, 40, 2, 3},
		{5, 50, 3, 2}, // 2.5 rounds up
		{5, 80, 4, 1},
		{3, 20, 1, 2}, // 0.6 rounds to 1
		{10, 25, 3, 7},
		{10, 24, 2, 8},
		{100, 1, 1, 99},
		{1, 1, 1, 0}, // one replica: any weight moves the only pod
		{4, 0, 0, 4},
		{4, 100, 4, 0},
		{0, 50, 0, 0},
	} {
		c, s := Split(tc.replicas, tc.weight)
		g.Expect([]int32{c, s}).To(Equal([]int32{tc.canary, tc.stable}), "replicas %d weight %d", tc.replicas, tc.weight)
	}
	for replicas := int32(1); replicas <= 50; replicas++ {
		for weight := int32(1); weight < 100; weight++ {
			c, s := Split(replicas, weight)
			g.Expect(c + s).To(Equal(replicas))
			g.Expect(c).To(BeNumerically(">=", 1), "a non-zero weight gets a pod")
			// The share is the closest one: no other count is nearer.
			exact := float64(replicas) * float64(weight) / 100
			if c > 1 {
				g.Expect(float64(c) - exact).To(BeNumerically("<=", 0.5))
			}
			g.Expect(exact - float64(c)).To(BeNumerically("<", 0.5))
		}
	}
}

func TestCanaryReplicasCarryTheirShare(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct{ replicas, weight, want int32 }{
		{5, 20, 1}, {3, 20, 1}, {10, 25, 3}, {4, 0, 0}, {4, 100, 4}, {0, 60, 0}, {5, 60, 3},
	} {
		g.Expect(CanaryReplicas(tc.replicas, tc.weight)).To(Equal(tc.want), "replicas %d weight %d", tc.replicas, tc.weight)
	}
}

func TestStepTakesOneBoundedStep(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		replicas, surge, unav int32
		sets                  []Scale
		want                  []int32
	}{
		{"canary grows within surge first", 4, 1, 0,
			[]Scale{{Target: 2, Spec: 0}, {Target: 2, Spec: 4, Available: 4}}, []int32{1, 4}},
		{"stable shrinks as canary pods become available", 4, 1, 0,
			[]Scale{{Target: 2, Spec: 1, Available: 1}, {Target: 2, Spec: 4, Available: 4}}, []int32{1, 3}},
		{"no surge: shrink first within maxUnavailable", 4, 0, 1,
			[]Scale{{Target: 2, Spec: 0}, {Target: 2, Spec: 4, Available: 4}}, []int32{0, 3}},
		{"unavailable pods go without budget", 4, 1, 0,
			[]Scale{{Target: 0, Spec: 2, Available: 0}, {Target: 4, Spec: 4, Available: 4}}, []int32{0, 4}},
		{"nothing to do at target", 4, 1, 0,
			[]Scale{{Target: 1, Spec: 1, Available: 1}, {Target: 3, Spec: 3, Available: 3}}, []int32{1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(Step(tc.replicas, tc.surge, tc.unav, tc.sets)).To(Equal(tc.want))
		})
	}
}

// TestStepReachesEveryTargetWithinBounds steps every split of every small
// rollout to its end, making pods available in between as a kubelet would,
// and checks both bounds after every step.
func TestStepReachesEveryTargetWithinBounds(t *testing.T) {
	g := NewWithT(t)
	for replicas := int32(1); replicas <= 6; replicas++ {
		for _, bounds := range [][2]int32{{1, 0}, {0, 1}, {2, 1}, {1, 1}} {
			surge, unav := bounds[0], bounds[1]
			for from := int32(0); from <= 100; from += 20 {
				for to := int32(0); to <= 100; to += 20 {
					name := fmt.Sprintf("replicas %d surge %d unavailable %d weight %d->%d", replicas, surge, unav, from, to)
					c0, s0 := Split(replicas, from)
					c1, s1 := Split(replicas, to)
					sets := []Scale{{Target: c1, Spec: c0, Available: c0}, {Target: s1, Spec: s0, Available: s0}}
					for range 100 {
						next := Step(replicas, surge, unav, sets)
						g.Expect(next[0]+next[1]).To(BeNumerically("<=", max(replicas+surge, sets[0].Spec+sets[1].Spec)), name)
						avail := min(next[0], sets[0].Available) + min(next[1], sets[1].Available)
						g.Expect(avail).To(BeNumerically(">=", min(replicas-unav, sets[0].Available+sets[1].Available)), name)
						for i := range sets {
							sets[i].Spec, sets[i].Available = next[i], next[i] // the pods become available
						}
					}
					g.Expect([]int32{sets[0].Spec, sets[1].Spec}).To(Equal([]int32{c1, s1}), name)
				}
			}
		}
	}
}
