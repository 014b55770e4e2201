package testenv

import (
	"testing"
	"time"

	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/onsi/gomega"

	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Conflict makes one status patch of one object fail with a real
// optimistic-lock conflict from the API server, and records what the
// controller told (Events through Recorder, and every vigil_ metric) from
// the start of the reconcile whose patch failed to the start of the next
// one. A controller under test gets its clients and recorder through
// Client, Reader and Recorder.
//
// When the object's status patch comes, Conflict first changes the object
// (an annotation, through the real client), so the patch, which carries
// the resourceVersion the reconcile read, is refused with 409 Conflict.
type Conflict struct {
	key client.ObjectKey

	mu       sync.Mutex
	state    int // 0 armed, 1 conflicted, 2 the next reconcile began
	err      error
	events   map[client.ObjectKey][]string
	start    Told
	afterOne Told
}

// Told is what had been told at one instant: the reasons of the Events
// recorded about the object, and every vigil_ metric series' value.
type Told struct {
	Events  []string
	Metrics map[string]float64
}

// NewConflict arms a conflict for the next status patch of key.
func NewConflict(key client.ObjectKey) *Conflict {
	return &Conflict{key: key, events: map[client.ObjectKey][]string{}}
}

// Client wraps the manager's client.
func (c *Conflict) Client(next client.Client) client.Client {
	return &conflictClient{Client: next, reader: conflictReader{Reader: next, c: c}}
}

// Reader wraps an uncached reader (the manager's APIReader).
func (c *Conflict) Reader(next client.Reader) client.Reader {
	return &conflictReader{Reader: next, c: c}
}

// Recorder wraps the manager's event recorder.
func (c *Conflict) Recorder(next events.EventRecorder) events.EventRecorder {
	return &countingRecorder{next: next, c: c}
}

// Happened reports whether the conflict was injected and the reconcile
// after it began; err is what the patch returned.
func (c *Conflict) Happened() (done bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == 2, c.err
}

// Around is what was told at the start of the reconcile whose patch
// failed, and at the start of the one after it.
func (c *Conflict) Around() (start, next Told) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start, c.afterOne
}

// Events are the reasons of the Events recorded about the object so far.
func (c *Conflict) Events() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.events[c.key]...)
}

// read is called at every read of the object: the start of a reconcile.
func (c *Conflict) read(key client.ObjectKey) {
	if key != c.key {
		return
	}
	told := c.told()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case 0:
		c.start = told
	case 1:
		c.afterOne, c.state = told, 2
	}
}

// Expect waits up to within for the conflict and the reconcile after it,
// and fails t unless nothing was told around it (see Check). It returns
// what had been told when the reconcile whose patch failed began.
func (c *Conflict) Expect(t testing.TB, kind string, within time.Duration) Told {
	t.Helper()
	gomega.NewWithT(t).Eventually(c.Happened).WithTimeout(within).WithPolling(20 * time.Millisecond).Should(gomega.BeTrue())
	if err := c.Check(kind); err != nil {
		t.Fatal(err)
	}
	start, _ := c.Around()
	return start
}

// Told is what has been told so far.
func (c *Conflict) Told() Told { return c.told() }

// Check fails unless nothing was told between the start of the reconcile
// whose status patch conflicted and the start of the next one: no Event
// about the object and no vigil_ metric moved, but the one that counts the
// failed patch, vigil_status_patch_failures_total{kind,reason="Conflict"},
// by exactly one.
func (c *Conflict) Check(kind string) error {
	if done, err := c.Happened(); !done || err != nil {
		return fmt.Errorf("the conflict did not happen (done %v): %v", done, err)
	}
	start, next := c.Around()
	var problems []string
	if !slices.Equal(start.Events, next.Events) {
		problems = append(problems, fmt.Sprintf("Events were recorded: %v, then %v", start.Events, next.Events))
	}
	failures := "vigil_status_patch_failures_total{kind=" + kind + ",reason=Conflict,}"
	for k, v := range next.Metrics {
		want := start.Metrics[k]
		if k == failures {
			want++
		}
		if v != want {
			problems = append(problems, fmt.Sprintf("%s is %v, want %v", k, v, want))
		}
	}
	for k := range start.Metrics {
		if _, ok := next.Metrics[k]; !ok {
			problems = append(problems, k+" went away")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("the reconcile whose status patch failed told something:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

func (c *Conflict) told() Told {
	m, err := vigilMetrics()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && c.err == nil {
		c.err = err
	}
	return Told{Events: append([]string(nil), c.events[c.key]...), Metrics: m}
}

// patchStatus runs the status patch of obj, first making it conflict once.
func (c *Conflict) patchStatus(ctx context.Context, cl client.Client, obj client.Object, patch func() error) error {
	c.mu.Lock()
	armed := c.state == 0 && client.ObjectKeyFromObject(obj) == c.key
	c.mu.Unlock()
	if !armed {
		return patch()
	}
	bump := obj.DeepCopyObject().(client.Object)
	raw := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"vigil.dev/test-conflict":"bumped"}}}`))
	if err := cl.Patch(ctx, bump, raw); err != nil {
		return fmt.Errorf("changing %s to make its status patch conflict: %w", c.key, err)
	}
	err := patch()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = 1
	if !apierrors.IsConflict(err) {
		c.err = fmt.Errorf("the status patch after a change should conflict, got %v", err)
	}
	return err
}

// vigilMetrics reads every vigil_ series of the registry: counters and
// gauges by value, histograms by sample count.
func vigilMetrics() (map[string]float64, error) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, f := range families {
		name := f.GetName()
		if len(name) < 6 || name[:6] != "vigil_" {
			continue
		}
		for _, m := range f.GetMetric() {
			out[series(name, m)] = value(m)
		}
	}
	return out, nil
}

func series(name string, m *dto.Metric) string {
	s := name + "{"
	for _, l := range m.GetLabel() {
		s += l.GetName() + "=" + l.GetValue() + ","
	}
	return s + "}"
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

type conflictClient struct {
	client.Client
	reader conflictReader
}

func (w *conflictClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return w.reader.Get(ctx, key, obj, opts...)
}

func (w *conflictClient) Status() client.SubResourceWriter {
	return &conflictStatus{SubResourceWriter: w.Client.Status(), w: w}
}

type conflictStatus struct {
	client.SubResourceWriter
	w *conflictClient
}

func (s *conflictStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	return s.w.reader.c.patchStatus(ctx, s.w.Client, obj, func() error { return s.SubResourceWriter.Patch(ctx, obj, patch, opts...) })
}

type conflictReader struct {
	client.Reader
	c *Conflict
}

func (w *conflictReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	w.c.read(key)
	return w.Reader.Get(ctx, key, obj, opts...)
}

type countingRecorder struct {
	next events.EventRecorder
	c    *Conflict
}

func (r *countingRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if o, ok := regarding.(client.Object); ok {
		r.c.mu.Lock()
		k := client.ObjectKeyFromObject(o)
		r.c.events[k] = append(r.c.events[k], reason)
		r.c.mu.Unlock()
	}
	r.next.Eventf(regarding, related, eventtype, reason, action, note, args...)
}
