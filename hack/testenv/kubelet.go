package testenv

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Kubelet stands in for the kubelet and the ReplicaSet controller, which
// envtest does not run: whenever a ReplicaSet in ns that ready accepts (nil
// accepts all) wants a different number of pods, it writes a status saying
// that many pods exist and are ready and available. No pods are created.
// It stops when the test ends.
func Kubelet(t testing.TB, cfg *rest.Config, ns string, ready func(*appsv1.ReplicaSet) bool) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := cs.AppsV1().ReplicaSets(ns).Watch(ctx, metav1.ListOptions{})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			for ev := range w.ResultChan() {
				rs, ok := ev.Object.(*appsv1.ReplicaSet)
				if !ok || ev.Type == watch.Deleted || ready != nil && !ready(rs) {
					continue
				}
				n := ptr.Deref(rs.Spec.Replicas, 1)
				if rs.Status.ObservedGeneration == rs.Generation && rs.Status.Replicas == n && rs.Status.AvailableReplicas == n {
					continue
				}
				rs.Status = appsv1.ReplicaSetStatus{Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: n, AvailableReplicas: n, ObservedGeneration: rs.Generation}
				// A conflict means a newer version is on its way to this watch.
				_, _ = cs.AppsV1().ReplicaSets(ns).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
			}
			w.Stop()
		}
	}()
}
