package gitsync

import (
	"fmt"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
)

// BenchmarkCommitToApplied measures the time from pushing a commit to the
// GitSync reporting it applied: after a signed webhook delivery, and by
// polling alone with the shortest interval (10 s), for which the expected
// wait is half an interval. It runs a fixed number of commits whatever b.N
// is (`make bench` runs it with -benchtime 1x) and reports the median and
// the worst.
func BenchmarkCommitToApplied(b *testing.B) {
	for _, tc := range []struct {
		name    string
		commits int
		webhook bool
	}{{"webhook", 20, true}, {"poll", 6, false}} {
		b.Run(tc.name, func(b *testing.B) {
			g := NewWithT(b)
			h := startManager(b, gitops.Limits{})
			ns := newNamespace(b)
			repo := gittest.NewRepo(b, "bench.git")
			repo.Write("deploy/cm.yaml", configMapYAML("bench", "0"))
			first := repo.Commit("0")
			url := repo.Daemon()
			gs := newGitSync(b, ns, "bench", url, func(gs *vigilv1.GitSync) {
				if tc.webhook {
					gs.Spec.Interval = "1h"
				}
			})
			eventually(g, func(g Gomega) { g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(first)) }).Should(Succeed())
			var took []time.Duration
			for i := 1; i <= tc.commits; i++ {
				repo.Write("deploy/cm.yaml", configMapYAML("bench", fmt.Sprint(i)))
				rev := repo.Commit(fmt.Sprint(i))
				start := time.Now()
				if tc.webhook {
					g.Expect(h.push(b, url, rev, hookSecret)).To(Equal(202))
				}
				g.Eventually(func(g Gomega) {
					g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(rev))
				}).WithTimeout(time.Minute).WithPolling(10 * time.Millisecond).Should(Succeed())
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
			b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
			b.Logf("%s: %d commits, median %s, max %s", tc.name, len(took), took[len(took)/2], took[len(took)-1])
		})
	}
}

// BenchmarkSync500 measures a GitSync of 500 manifests (ConfigMaps): the
// first sync (fetch, render, 500 creates) and a commit that changes all of
// them (500 server-side applies), with the heap's peak during each.
func BenchmarkSync500(b *testing.B) {
	g := NewWithT(b)
	h := startManager(b, gitops.Limits{})
	ns := newNamespace(b)
	repo := gittest.NewRepo(b, "many.git")
	write := func(v string) {
		for i := range 500 {
			repo.Write(fmt.Sprintf("deploy/cm-%03d.yaml", i), configMapYAML(fmt.Sprintf("cm-%03d", i), v))
		}
	}
	write("a")
	first := repo.Commit("500 objects")
	url := repo.Daemon()
	base := heapNow()
	watch := watchHeap()
	start := time.Now()
	gs := newGitSync(b, ns, "many", url, func(gs *vigilv1.GitSync) { gs.Spec.Interval = "1h" })
	g.Eventually(func(g Gomega) {
		got := get(g, gs)
		g.Expect(got.Status.LastAppliedRevision).To(Equal(first))
		g.Expect(got.Status.Resources).To(HaveLen(500))
	}).WithTimeout(5 * time.Minute).WithPolling(20 * time.Millisecond).Should(Succeed())
	created := time.Since(start)
	peak := watch.Stop()

	write("b")
	second := repo.Commit("500 changed")
	watch = watchHeap()
	start = time.Now()
	g.Expect(h.push(b, url, second, hookSecret)).To(Equal(202))
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, gs).Status.LastAppliedRevision).To(Equal(second))
	}).WithTimeout(5 * time.Minute).WithPolling(20 * time.Millisecond).Should(Succeed())
	changed := time.Since(start)
	peak2 := watch.Stop()
	b.ReportMetric(float64(created.Milliseconds()), "first-sync-ms")
	b.ReportMetric(float64(changed.Milliseconds()), "change-sync-ms")
	b.ReportMetric(float64(max(peak, peak2)-base)/(1<<20), "heap-growth-MiB")
	b.Logf("500 manifests: first sync %s (heap peak %d MiB), all changed %s (heap peak %d MiB), base heap %d MiB",
		created, peak>>20, changed, peak2>>20, base>>20)
}
