package rollout

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// expectations let a reconcile read from the cache without acting on a
// copy older than what the controller itself wrote, the way the
// ReplicaSet controller tracks the pods it created: each write the
// controller makes remembers the resourceVersion the API server answered
// with, and a cached copy older than that (or still there after a
// deletion) is behind; the reconcile then reads that kind live. A write
// whose outcome is Unknown (it may or may not have happened) makes the
// object unknown, read live until a live read says what it is. A Rollout
// this process has not read live yet (after a start, or a leader's
// takeover) is read live once, and so are its objects when the Rollout
// is older than the process: the cache's first list may be behind the
// last writes of the process before.
//
// An expectation is forgotten once the cache shows it met, or after
// expectationTimeout (the ReplicaSet controller's five minutes: by then
// a watch has long delivered the write, or been relisted), and a
// Rollout's mark when the Rollout is gone, so the maps hold only writes
// in flight and the Rollouts of this process.
type expectations struct {
	mu sync.Mutex
	// objects holds the expectations of a Rollout's objects of one kind
	// (what one list read shows), by name.
	objects map[group]map[string]expectation
	// seen holds the Rollouts read live since this process started, and
	// observed those whose objects were all read live once.
	seen, observed map[types.NamespacedName]struct{}
	now            func() time.Time
	// started is when this process began: a Rollout created before it
	// (or about then: clocks differ) may have objects an earlier process
	// wrote that the cache, listed at its start, does not show yet.
	started time.Time
	// writes counts writes, to sweep expired expectations now and then.
	writes int
}

// expectationTimeout is how long an expectation is kept unmet.
const expectationTimeout = 5 * time.Minute

// group is the objects of one kind in a namespace that belong to one
// Rollout (by its label, its rolloutRef, or being it); rollout is empty
// for objects read by name, which Rollouts share (Services, HTTPRoutes).
type group struct{ kind, namespace, rollout string }

// expectation is what the controller knows of an object it wrote.
type expectation struct {
	// resourceVersion answered by the last write; empty with gone or
	// unknown.
	resourceVersion string
	// gone: the object was deleted.
	gone bool
	// unknown: a write's outcome is Unknown; only a live read tells.
	unknown bool
	at      time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{objects: map[group]map[string]expectation{}, now: now, started: now(),
		seen: map[types.NamespacedName]struct{}{}, observed: map[types.NamespacedName]struct{}{}}
}

// startSkew is how far a Rollout's creation time (the API server's
// clock) may be after this process's start and still be from before it:
// the clocks of one cluster differ by far less.
const startSkew = 10 * time.Second

// mustObserveLive tells whether a Rollout's objects are to be read live
// in this reconcile: it was created before this process started, and its
// objects were not read live since.
func (e *expectations) mustObserveLive(ro types.NamespacedName, created time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.observed[ro]
	return !ok && created.Before(e.started.Add(startSkew))
}

// observedLive notes that a Rollout's objects were read live.
func (e *expectations) observedLive(ro types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observed[ro] = struct{}{}
}

// readLive notes that a Rollout was read live.
func (e *expectations) readLive(ro types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen[ro] = struct{}{}
}

// wasReadLive tells whether a Rollout was read live since the start.
func (e *expectations) wasReadLive(ro types.NamespacedName) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.seen[ro]
	return ok
}

// forget drops the mark of a Rollout that is gone.
func (e *expectations) forget(ro types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.seen, ro)
	delete(e.observed, ro)
}

// wrote notes what the controller knows of an object after writing (or
// reading live) it.
func (e *expectations) wrote(g group, name string, x expectation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x.at = e.now()
	if e.writes++; e.writes%1024 == 0 {
		e.sweep()
	}
	if e.objects[g] == nil {
		e.objects[g] = map[string]expectation{}
	}
	e.objects[g][name] = x
}

// cached is an object as the cache shows it; present is false when the
// cache does not show it.
type cached struct {
	present         bool
	resourceVersion string
}

// behind tells whether the cache's copy of an object is older than what
// the controller wrote; an expectation the copy meets, or one too old to
// wait for, is forgotten.
func (e *expectations) behind(g group, name string, c cached) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.objects[g][name]
	if !ok {
		return false
	}
	if !met(x, c) && e.now().Sub(x.at) < expectationTimeout {
		return true
	}
	delete(e.objects[g], name)
	if len(e.objects[g]) == 0 {
		delete(e.objects, g)
	}
	return false
}

// met tells whether a cached copy is at least as new as what was written.
func met(x expectation, c cached) bool {
	switch {
	case x.unknown:
		return false
	case x.gone:
		return !c.present
	case !c.present:
		return false
	}
	cmp, err := resourceversion.CompareResourceVersion(c.resourceVersion, x.resourceVersion)
	return err == nil && cmp >= 0
}

// pending lists the names of a group's expected objects, for a list read
// to check that it shows each of them.
func (e *expectations) pending(g group) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.objects[g]))
	for name := range e.objects[g] {
		out = append(out, name)
	}
	return out
}

// sweep forgets the expectations too old to wait for, of objects no
// reconcile read again (a deleted Rollout's); e.mu is held.
func (e *expectations) sweep() {
	for g, objs := range e.objects {
		for name, x := range objs {
			if e.now().Sub(x.at) >= expectationTimeout {
				delete(objs, name)
			}
		}
		if len(objs) == 0 {
			delete(e.objects, g)
		}
	}
}
