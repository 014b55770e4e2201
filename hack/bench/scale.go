package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// scaleSteps are the throughput Rollouts' steps: setWeight 50, then a
// pause of a second.
func scaleSteps() []vigilv1.CanaryStep {
	return []vigilv1.CanaryStep{{SetWeight: ptr.To[int32](50)}, {Pause: &vigilv1.PauseStep{Duration: ptr.To(vigilv1.Duration("1s"))}}}
}

// phase is one measured stretch of the controller's work.
type phase struct {
	name     string
	took     time.Duration
	cpu      float64
	rss      int64
	requests map[string]float64
}

func (p phase) String() string {
	var total, writes float64
	for method, n := range p.requests {
		if strings.Contains(method, "{") {
			continue // a counter of Vigil's, not a request
		}
		total += n
		if method != "GET" && method != "LIST" && method != "WATCH" {
			writes += n
		}
	}
	var by []string
	for _, m := range slices.Sorted(maps.Keys(p.requests)) {
		if !strings.Contains(m, "{") {
			by = append(by, fmt.Sprintf("%s %.0f", m, p.requests[m]))
		}
	}
	return fmt.Sprintf("%s: %s, %.1f CPU-s, RSS %d MiB, %.0f requests (%.0f writes; %s)", p.name, p.took.Round(time.Second), p.cpu, p.rss>>20, total, writes, strings.Join(by, ", "))
}

// measure runs work and reports what the controller spent on it.
func (b *bench) measure(ctx context.Context, name string, work func() error) (phase, error) {
	u0, err := b.usage()
	if err != nil {
		return phase{}, err
	}
	r0, err := b.requests(ctx)
	if err != nil {
		return phase{}, err
	}
	start := time.Now()
	if err := work(); err != nil {
		return phase{}, err
	}
	p := phase{name: name, took: time.Since(start)}
	u1, err := b.usage()
	if err != nil {
		return phase{}, err
	}
	r1, err := b.requests(ctx)
	if err != nil {
		return phase{}, err
	}
	p.cpu, p.rss, p.requests = u1.cpu-u0.cpu, u1.rss, map[string]float64{}
	for m, n := range r1 {
		p.requests[m] = n - r0[m]
	}
	return p, nil
}

// throughput creates n Rollouts until all are Ready, then releases a new
// revision of each until all are promoted.
func (b *bench) throughput(ctx context.Context, n int) ([]string, error) {
	created, err := b.measure(ctx, fmt.Sprintf("%d Rollouts created → all Ready", n), func() error {
		if err := b.each(ctx, n, func(ro *vigilv1.Rollout) error { return b.c.Create(ctx, ro) }); err != nil {
			return err
		}
		return b.allPromoted(ctx, scaleNS, n, "0", 5*time.Minute)
	})
	if err != nil {
		return nil, err
	}
	fmt.Println("bench: " + created.String())
	promoted, err := b.measure(ctx, fmt.Sprintf("%d new revisions → all promoted", n), func() error {
		if err := b.each(ctx, n, func(ro *vigilv1.Rollout) error {
			if err := b.c.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
				return err
			}
			return b.release(ctx, ro, 1)
		}); err != nil {
			return err
		}
		return b.allPromoted(ctx, scaleNS, n, "1", 5*time.Minute)
	})
	if err != nil {
		return nil, err
	}
	fmt.Println("bench: " + promoted.String())
	var total float64
	for m, v := range promoted.requests {
		if strings.Contains(m, "{") {
			if v > 0 {
				fmt.Printf("bench:   %s +%.0f\n", m, v)
			}
			continue
		}
		total += v
	}
	return []string{created.String(), promoted.String(),
		fmt.Sprintf("requests per promotion (2 steps): %.1f", total/float64(n))}, nil
}

// each runs do on the n throughput Rollouts, 8 at a time.
func (b *bench) each(ctx context.Context, n int, do func(*vigilv1.Rollout) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error { return do(rollout(scaleNS, fmt.Sprintf("app-%05d", i), 1, scaleSteps()...)) })
	}
	return g.Wait()
}

// allPromoted waits until n Rollouts of the namespace run release and are
// promoted and Ready, printing progress every 10 seconds.
func (b *bench) allPromoted(ctx context.Context, namespace string, n int, release string, within time.Duration) error {
	deadline, last := time.Now().Add(within), time.Now()
	for {
		var list vigilv1.RolloutList
		if err := b.cache.List(ctx, &list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
		ready := 0
		for _, ro := range list.Items {
			if ro.Spec.Template.Annotations["bench.vigil.dev/release"] == release && ro.Status.CanaryRevision == "" &&
				ro.Status.Phase == vigilv1.RolloutPhasePromoted && ro.Status.ObservedGeneration == ro.Generation && readyTrue(&ro) {
				ready++
			}
		}
		if ready == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d Rollouts promoted within %s", ready, n, within)
		}
		if time.Since(last) > 10*time.Second {
			fmt.Printf("bench: %d of %d promoted\n", ready, n)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func readyTrue(ro *vigilv1.Rollout) bool {
	for _, c := range ro.Status.Conditions.Conditions {
		if c.Type == vigilv1.ConditionReady {
			return c.Status == "True"
		}
	}
	return false
}

// idleNS holds the idle Rollouts.
const idleNS = "bench-idle"

// idleRSS creates n idle Rollouts (replicas 0: Vigil caches Rollouts and
// ReplicaSets, not pods, so pods would load the cluster and not the
// controller) and reports the controller's RSS once every one is
// promoted.
func (b *bench) idleRSS(ctx context.Context, n int) (string, error) {
	start := time.Now()
	var made atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			ro := rollout(idleNS, fmt.Sprintf("idle-%05d", i), 0, scaleSteps()...)
			if err := b.c.Create(gctx, ro); client.IgnoreAlreadyExists(err) != nil {
				return err
			}
			if m := made.Add(1); m%1000 == 0 {
				fmt.Printf("bench: %d idle Rollouts created\n", m)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	if err := b.allPromoted(ctx, idleNS, n, "0", 15*time.Minute); err != nil {
		return "", err
	}
	u, err := b.usage()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d idle Rollouts (replicas 0) created and promoted in %s: controller RSS %d MiB", n, time.Since(start).Round(time.Second), u.rss>>20), nil
}
