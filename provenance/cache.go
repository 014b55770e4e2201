package provenance

import (
	"container/list"
	"sync"

	"github.com/vigil-dev/vigil/outcome"
)

// CacheKey names a verdict: the image digest, the policy and its trust
// material, and the Git revision it was checked against. A change to any
// of them asks again.
type CacheKey struct {
	Digest, Policy, Trust, Revision string
}

func (k CacheKey) String() string {
	return k.Digest + "|" + k.Policy + "|" + k.Trust + "|" + k.Revision
}

// Cache holds passes only, at most size of them; the least recently used
// goes first. A failure or an Unknown is never cached, so it is asked
// again.
type Cache struct {
	mu    sync.Mutex
	max   int
	order *list.List
	items map[CacheKey]*list.Element
}

type cached struct {
	key     CacheKey
	verdict Verdict
}

// NewCache makes a cache of at most max passes (at least 1).
func NewCache(size int) *Cache {
	return &Cache{max: max(1, size), order: list.New(), items: map[CacheKey]*list.Element{}}
}

// Get returns the pass cached under key.
func (c *Cache) Get(key CacheKey) (Verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return Verdict{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cached).verdict, true
}

// Put caches a pass; anything else is ignored.
func (c *Cache) Put(key CacheKey, v Verdict) {
	if v.Result != outcome.Success {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*cached).verdict = v
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&cached{key: key, verdict: v})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cached).key)
	}
}

// Len is the number of cached passes.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
