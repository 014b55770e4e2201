package gitsync

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
)

// heapPeak samples the live heap of this process (the controller runs in
// it) until stopped, and reports the highest sample.
type heapPeak struct {
	stop chan struct{}
	done sync.WaitGroup
	peak uint64
}

func watchHeap() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	h.done.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			h.peak = max(h.peak, sample[0].Value.Uint64())
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	})
	return h
}

func (h *heapPeak) Stop() uint64 {
	close(h.stop)
	h.done.Wait()
	return h.peak
}

func heapNow() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func aliasBomb() string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i := 1; i <= 9; i++ {
		b.WriteString(fmt.Sprintf("  a%d: &a%d [%s*a%d]\n", i, i, strings.Repeat(fmt.Sprintf("*a%d,", i-1), 9), i-1))
	}
	return b.String()
}

func TestHostileRepositoriesAreRefusedWithBoundedMemory(t *testing.T) {
	startManager(t, gitops.Limits{})
	ns := newNamespace(t)
	type hostile struct {
		name   string
		make   func(*gittest.Repo) string
		reason string
		says   string
	}
	cases := []hostile{
		{"a 200 MB file", func(r *gittest.Repo) string {
			return r.ImportFiles(configMapYAML("small", "x"), 1, func(int) string { return "deploy/cm.yaml" }, "deploy/big.yaml", 200<<20)
		}, gitops.ReasonLimitExceeded, "the repository exceeds the limit on bytes in one object: 209715200, at most 4194304"},
		{"100k files", func(r *gittest.Repo) string {
			return r.ImportFiles(configMapYAML("same", "x"), 100000, func(i int) string { return fmt.Sprintf("deploy/d%03d/f%05d.yaml", i/1000, i) }, "", 0)
		}, gitops.ReasonLimitExceeded, "the repository exceeds the limit on files: 10001, at most 10000"},
		{"a YAML alias bomb", func(r *gittest.Repo) string {
			r.Write("deploy/bomb.yaml", aliasBomb())
			return r.Commit("bomb")
		}, gitops.ReasonRenderFailed, "deploy/bomb.yaml:"},
		{"a symlink to /etc", func(r *gittest.Repo) string {
			r.Write("deploy/cm.yaml", configMapYAML("fine", "x"))
			r.Symlink("deploy/passwd.yaml", "/etc/passwd")
			return r.Commit("link")
		}, gitops.ReasonUnsafeContent, "symlink deploy/passwd.yaml points outside the repository (/etc/passwd)"},
	}
	base := heapNow()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			repo := gittest.NewRepo(t, "hostile.git")
			head := tc.make(repo)
			watch := watchHeap()
			gs := newGitSync(t, ns, fmt.Sprintf("hostile-%d", i), repo.Daemon(), nil)
			eventually(g, func(g Gomega) {
				got := get(g, gs)
				ready := condition(got, vigilv1.ConditionReady)
				g.Expect(ready.Reason).To(Equal(tc.reason))
				g.Expect(ready.Message).To(ContainSubstring(tc.says))
				g.Expect(condition(got, vigilv1.ConditionStalled).Status).To(BeEquivalentTo("True"))
				g.Expect(got.Status.LastAttemptedRevision).To(Equal(head), "status names the refused commit")
				g.Expect(got.Status.LastAppliedRevision).To(BeEmpty())
				g.Expect(got.Status.Resources).To(BeEmpty(), "nothing of a refused commit is applied")
			}).Should(Succeed())
			peak := watch.Stop()
			growth := int64(peak) - int64(base)
			t.Logf("%s (commit %s): refused; heap peak %d MiB, %+d MiB over the %d MiB before", tc.name, head[:12], peak>>20, growth>>20, base>>20)
			g.Expect(growth).To(BeNumerically("<", 128<<20), "the controller's heap stays far below the repository's size")
		})
	}
}
