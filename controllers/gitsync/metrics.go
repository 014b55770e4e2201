package gitsync

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// outcomeUnchanged labels a fetch that found the commit it had already
// fetched; the other outcomes of fetches and syncs are outcome.Result's (a
// timeout or an unreachable server is Unknown, not a Failure).
const outcomeUnchanged = "Unchanged"

var (
	fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_gitsync_fetches_total",
		Help: "Fetches of a GitSync's ref, by outcome (Success, Unchanged, Failure, Unknown) and reason.",
	}, []string{"outcome", "reason"})
	fetchLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_gitsync_fetch_duration_seconds",
		Help:    "Time to resolve, fetch, verify and render a ref, by outcome.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
	}, []string{"outcome"})
	syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_gitsync_syncs_total",
		Help: "Sync steps run with gitops-engine, by outcome (Success, Failure, Unknown while waves wait).",
	}, []string{"outcome"})
	syncLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "vigil_gitsync_sync_duration_seconds",
		Help:    "Time of one sync step (reading live state, applying, pruning).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
	})
	drifts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_gitsync_drift_events_total",
		Help: "Times drift from Git was found, by action (Reported, Reverted).",
	}, []string{"action"})
	deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_gitsync_webhook_deliveries_total",
		Help: "Push webhook deliveries, by result (Accepted, Duplicate, BadSignature, Unmatched, Ignored, Invalid, TooLarge, RateLimited).",
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(fetches, fetchLatency, syncs, syncLatency, drifts, deliveries)
	for _, r := range []string{"Accepted", "Duplicate", "BadSignature", "Unmatched", "Ignored", "Invalid", "TooLarge", "RateLimited"} {
		deliveries.WithLabelValues(r)
	}
	for _, a := range []string{"Reported", "Reverted"} {
		drifts.WithLabelValues(a)
	}
}
