package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/demo/world"
)

// ns is where the rollback Rollouts live; scaleNS holds the many.
const (
	ns      = "bench"
	scaleNS = "bench-scale"
)

type bench struct {
	aborts, failures, rollouts, idle int

	w     *world.World
	c     client.Client
	cache cache.Cache
	pid   int
	// waits are the predicates the watches test at each event, each with
	// the channel told the receipt time of the first event that meets it.
	mu    sync.Mutex
	sets  map[string]*appsv1.ReplicaSet
	waits []*wait
}

type wait struct {
	met  func(b *bench, obj client.Object, at time.Time) bool
	done chan time.Time
}

func (b *bench) run(ctx context.Context, o world.Options) error {
	w, err := world.Up(ctx, o)
	if err != nil {
		return err
	}
	b.w, b.pid = w, w.Procs.PID("vigil-controller")
	if b.c, err = fastClient(o.Kubeconfig); err != nil {
		return err
	}
	fmt.Printf("bench: vigil-controller runs as pid %d with %v\n", b.pid, o.ControllerArgs)
	if err := b.watch(ctx, o.Kubeconfig); err != nil {
		return err
	}
	for _, n := range []string{ns, scaleNS, idleNS} {
		if err := b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); client.IgnoreAlreadyExists(err) != nil {
			return err
		}
	}
	var report []string
	if b.aborts > 0 {
		r, err := b.reactions(ctx, "abort", b.aborts, b.abort)
		if err != nil {
			return err
		}
		report = append(report, r)
	}
	if b.failures > 0 {
		if err := b.failingTemplate(ctx); err != nil {
			return err
		}
		r, err := b.reactions(ctx, "failed-analysis", b.failures, b.failAnalysis)
		if err != nil {
			return err
		}
		report = append(report, r)
	}
	if b.rollouts > 0 {
		r, err := b.throughput(ctx, b.rollouts)
		if err != nil {
			return err
		}
		report = append(report, r...)
	}
	if b.idle > 0 {
		r, err := b.idleRSS(ctx, b.idle)
		if err != nil {
			return err
		}
		report = append(report, r)
	}
	fmt.Println("\nbench: results")
	for _, line := range report {
		fmt.Println("  " + line)
	}
	return nil
}

// watch starts informers on the rollback namespace's ReplicaSets and
// AnalysisRuns; each event is tested against the registered waits at
// receipt.
func (b *bench) watch(ctx context.Context, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = vigilv1.AddToScheme(scheme)
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{ns: {}, scaleNS: {}, idleNS: {}}})
	if err != nil {
		return err
	}
	b.sets = map[string]*appsv1.ReplicaSet{}
	for _, obj := range []client.Object{&appsv1.ReplicaSet{}, &vigilv1.AnalysisRun{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		seen := func(o any) {
			if obj, ok := o.(client.Object); ok {
				b.seen(obj, time.Now())
			}
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: seen, UpdateFunc: func(_, o any) { seen(o) },
		}); err != nil {
			return err
		}
	}
	// The Rollouts are counted from this cache: a LIST of thousands every
	// half second would load the API server the benchmark measures.
	if _, err := c.GetInformer(ctx, &vigilv1.Rollout{}); err != nil {
		return err
	}
	b.cache = c
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("the bench's watches did not sync")
	}
	return nil
}

func (b *bench) seen(obj client.Object, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rs, ok := obj.(*appsv1.ReplicaSet); ok {
		b.sets[rs.Name] = rs
	}
	b.waits = testWaits(b, b.waits, obj, at)
}

// testWaits tells each wait obj meets and returns those still waiting;
// b.mu is held.
func testWaits(b *bench, waits []*wait, obj client.Object, at time.Time) []*wait {
	out := waits[:0]
	for _, w := range waits {
		if w.met(b, obj, at) {
			w.done <- at
			continue
		}
		out = append(out, w)
	}
	return out
}

// await registers met and returns the channel told when an event meets it.
func (b *bench) await(met func(*bench, client.Object, time.Time) bool) chan time.Time {
	w := &wait{met: met, done: make(chan time.Time, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waits = append(b.waits, w)
	return w.done
}

// rolledBack is met once revision stable's ReplicaSet wants replicas pods
// and canary's none; b.mu is held.
func rolledBack(rollout, stable, canary string, replicas int32) func(*bench, client.Object, time.Time) bool {
	return func(b *bench, _ client.Object, _ time.Time) bool {
		var s, c *appsv1.ReplicaSet
		for _, rs := range b.sets {
			if rs.Labels[vigilv1.LabelRollout] != rollout {
				continue
			}
			switch rs.Labels[vigilv1.LabelPodTemplateHash] {
			case stable:
				s = rs
			case canary:
				c = rs
			}
		}
		return s != nil && c != nil && ptr.Deref(s.Spec.Replicas, 1) == replicas && ptr.Deref(c.Spec.Replicas, 1) == 0
	}
}

// rollout is a Rollout of replicas pods that the benchmark releases.
func rollout(namespace, name string, replicas int32, steps ...vigilv1.CanaryStep) *vigilv1.Rollout {
	labels := map[string]string{"app": name}
	return &vigilv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: vigilv1.RolloutSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"bench.vigil.dev/release": "0"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "bench.invalid/app:1"}}},
			},
			Strategy: vigilv1.RolloutStrategy{Canary: vigilv1.CanaryStrategy{
				Steps:          steps,
				MaxSurge:       ptr.To(intstr.FromString("25%")),
				MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			}},
			Rollback: &vigilv1.RollbackPolicy{OnFailed: vigilv1.RollbackActionRollback},
		},
	}
}

// release sets a new revision of ro by its release annotation.
func (b *bench) release(ctx context.Context, ro *vigilv1.Rollout, n int) error {
	orig := ro.DeepCopy()
	ro.Spec.Template.Annotations = map[string]string{"bench.vigil.dev/release": strconv.Itoa(n)}
	return b.c.Patch(ctx, ro, client.MergeFrom(orig))
}

// until polls the Rollout every 50 ms until done says so, up to within.
func (b *bench) until(ctx context.Context, ro *vigilv1.Rollout, within time.Duration, what string, done func(*vigilv1.Rollout) bool) error {
	deadline := time.Now().Add(within)
	for {
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
			return err
		}
		if done(ro) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Rollout %s did not get %s within %s: %s: %s", ro.Name, what, within, ro.Status.Phase, ro.Status.Message)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// failingTemplate is an analysis whose every measurement fails, from the
// world's real Prometheus.
func (b *bench) failingTemplate(ctx context.Context) error {
	t := &vigilv1.AnalysisTemplate{}
	doc := fmt.Sprintf(`
metadata: {name: always-fails, namespace: %s}
spec:
  metrics:
    - name: always-fails
      interval: 1s
      count: 1
      failureCondition: result >= 1
      failureLimit: 0
      provider:
        prometheus: {address: %q, query: "vector(1)", timeout: 2s}
`, ns, b.w.PrometheusURL)
	if err := yaml.UnmarshalStrict([]byte(doc), t); err != nil {
		return err
	}
	return client.IgnoreAlreadyExists(b.c.Create(ctx, t))
}

// fastClient is the benchmark's own client, whose rate limit never makes
// the controller wait for its input.
func fastClient(kubeconfig string) (client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = vigilv1.AddToScheme(scheme)
	return client.New(cfg, client.Options{Scheme: scheme})
}

// conflictsLogged counts the optimistic-lock conflicts in the controller's
// log so far.
func (b *bench) conflictsLogged() (int, error) {
	raw, err := os.ReadFile(b.w.Procs.Log("vigil-controller"))
	if err != nil {
		return 0, err
	}
	return strings.Count(string(raw), "Operation cannot be fulfilled"), nil
}
