package world

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// ErrorRateAnnotation on a pod template sets the share of its pods'
// requests the exporter answers with 500.
const ErrorRateAnnotation = "demo.vigil.dev/error-rate"

// RequestsPerSecond is each Ready pod's simulated traffic.
const RequestsPerSecond = 50

// Serve runs the OCI registry (with the referrers API) on registryAddr and
// the traffic exporter on exporterAddr until ctx ends.
func Serve(ctx context.Context, cfg *rest.Config, registryAddr, exporterAddr string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	e := &exporter{cs: cs, pods: map[types.UID]*podTraffic{}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	servers := []*http.Server{
		{Addr: registryAddr, Handler: registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))},
		{Addr: exporterAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})},
	}
	errs := make(chan error, len(servers)+1)
	for _, s := range servers {
		go func() { errs <- s.ListenAndServe() }()
	}
	go func() { errs <- e.run(ctx) }()
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	for _, s := range servers {
		_ = s.Close()
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// exporter plays the HTTP traffic of every Ready pod Vigil runs: each gets
// RequestsPerSecond, of which the share its template's error-rate
// annotation names are 500s. Counters are per pod, labelled with the
// namespace, app, revision (pod-template hash) and code.
type exporter struct {
	cs   kubernetes.Interface
	mu   sync.Mutex
	pods map[types.UID]*podTraffic
}

type podTraffic struct {
	namespace, app, revision, pod string
	errorRate                     float64
	ok, errors                    float64
	last                          time.Time
}

var requestsDesc = prometheus.NewDesc("demo_http_requests_total",
	"Requests the demo exporter played for a pod, by status code.",
	[]string{"namespace", "app", "revision", "pod", "code"}, nil)

func (e *exporter) Describe(ch chan<- *prometheus.Desc) { ch <- requestsDesc }

func (e *exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for _, p := range e.pods {
		p.advance(now)
		for code, v := range map[string]float64{"200": p.ok, "500": p.errors} {
			ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, v, p.namespace, p.app, p.revision, p.pod, code)
		}
	}
}

func (p *podTraffic) advance(now time.Time) {
	n := now.Sub(p.last).Seconds() * RequestsPerSecond
	p.errors += n * p.errorRate
	p.ok += n * (1 - p.errorRate)
	p.last = now
}

// run lists Vigil's pods every half second: a pod that turned Ready starts
// counting, one that is gone or not Ready stops (and its series with it).
func (e *exporter) run(ctx context.Context) error {
	for {
		pods, err := e.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: vigilv1.LabelPodTemplateHash})
		if err == nil {
			e.update(pods.Items)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (e *exporter) update(pods []corev1.Pod) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	seen := map[types.UID]bool{}
	for i := range pods {
		pod := &pods[i]
		if !ready(pod) || pod.DeletionTimestamp != nil {
			continue
		}
		seen[pod.UID] = true
		if p, ok := e.pods[pod.UID]; ok {
			p.advance(now)
			continue
		}
		rate, _ := strconv.ParseFloat(pod.Annotations[ErrorRateAnnotation], 64)
		e.pods[pod.UID] = &podTraffic{
			namespace: pod.Namespace, app: pod.Labels["app"], pod: pod.Name,
			revision: pod.Labels[vigilv1.LabelPodTemplateHash], errorRate: min(max(rate, 0), 1), last: now,
		}
	}
	for uid := range e.pods {
		if !seen[uid] {
			delete(e.pods, uid)
		}
	}
}

func ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
