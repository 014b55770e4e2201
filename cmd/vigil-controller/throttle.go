package main

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// throttleNotice is how long a request may wait for the client's rate
// limiter before it counts as throttled (client-go's own threshold).
const throttleNotice = 50 * time.Millisecond

var clientThrottled = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "vigil_client_throttled_total",
	Help: "Requests to the API server that waited more than 50ms for the client's own rate limiter (--kube-api-qps, --kube-api-burst).",
})

func init() {
	metrics.Registry.MustRegister(clientThrottled)
}

// throttled is the client's token bucket, which logs once, and counts
// every time, that it made a request wait: the sign that --kube-api-qps
// and --kube-api-burst are too low for the load.
type throttled struct {
	flowcontrol.RateLimiter
	log    logr.Logger
	qps    float32
	burst  int
	once   sync.Once
	notice time.Duration
}

func newThrottled(qps float32, burst int, log logr.Logger) *throttled {
	return &throttled{RateLimiter: flowcontrol.NewTokenBucketRateLimiter(qps, burst), log: log, qps: qps, burst: burst,
		notice: throttleNotice}
}

// Wait waits for a token, as client-go's request path does.
func (t *throttled) Wait(ctx context.Context) error {
	start := time.Now()
	err := t.RateLimiter.Wait(ctx)
	if waited := time.Since(start); waited > t.notice {
		clientThrottled.Inc()
		t.once.Do(func() {
			t.log.Info("Client-side throttling delays requests to the API server; if this goes on, raise --kube-api-qps and --kube-api-burst (vigil_client_throttled_total counts each delayed request)",
				"waited", waited.Round(time.Millisecond), "qps", t.qps, "burst", t.burst)
		})
	}
	return err
}
