package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
)

// TestTheCacheIsBehindUntilItShowsTheControllersOwnWrite: a cached copy
// older than the resourceVersion a write was answered with is behind, and
// so is one that still shows a deleted object or any copy of an object
// whose write had an Unknown outcome; once met, the expectation is
// forgotten, and one never met is given up after expectationTimeout.
func TestTheCacheIsBehindUntilItShowsTheControllersOwnWrite(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	e := newExpectations(func() time.Time { return now })
	sets := group{"ReplicaSet", "shop", "web"}

	e.wrote(sets, "web-a", expectation{resourceVersion: "120"})
	g.Expect(e.behind(sets, "web-a", cached{true, "119"})).To(BeTrue(), "an older copy")
	g.Expect(e.behind(sets, "web-a", cached{false, ""})).To(BeTrue(), "no copy yet of what was created")
	g.Expect(e.pending(sets)).To(ConsistOf("web-a"))
	g.Expect(e.pending(group{"ReplicaSet", "shop", "other"})).To(BeEmpty(), "another Rollout's list expects nothing of it")
	g.Expect(e.behind(sets, "web-a", cached{true, "1000"})).To(BeFalse(), "a newer copy (compared as numbers, not strings)")
	g.Expect(e.pending(sets)).To(BeEmpty(), "met, and forgotten")
	g.Expect(e.behind(sets, "web-a", cached{true, "119"})).To(BeFalse(), "nothing expected any more")

	e.wrote(sets, "web-b", expectation{gone: true})
	g.Expect(e.behind(sets, "web-b", cached{true, "130"})).To(BeTrue(), "a deleted object still cached")
	g.Expect(e.behind(sets, "web-b", cached{false, ""})).To(BeFalse())

	e.wrote(sets, "web-c", expectation{unknown: true})
	g.Expect(e.behind(sets, "web-c", cached{true, "999999"})).To(BeTrue(), "an Unknown outcome: only a live read tells")
	now = now.Add(expectationTimeout)
	g.Expect(e.behind(sets, "web-c", cached{true, "1"})).To(BeFalse(), "given up after the timeout")

	ro := types.NamespacedName{Namespace: "shop", Name: "web"}
	g.Expect(e.mustObserveLive(ro, e.started.Add(-time.Hour))).To(BeTrue(), "a Rollout older than the process: its objects are read live once")
	g.Expect(e.mustObserveLive(ro, e.started.Add(2*startSkew))).To(BeFalse(), "one created since: the cache saw all its objects")
	e.observedLive(ro)
	g.Expect(e.mustObserveLive(ro, e.started.Add(-time.Hour))).To(BeFalse(), "read live once, then from the cache")
	g.Expect(e.wasReadLive(ro)).To(BeFalse(), "a Rollout this process has not read live")
	e.readLive(ro)
	g.Expect(e.wasReadLive(ro)).To(BeTrue())
	e.forget(ro)
	g.Expect(e.wasReadLive(ro)).To(BeFalse(), "a Rollout that is gone is forgotten")
	g.Expect(e.mustObserveLive(ro, e.started.Add(-time.Hour))).To(BeTrue())
}
