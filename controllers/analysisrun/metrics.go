package analysisrun

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/vigil-dev/vigil/analysis"
	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

const provider = "prometheus"

var (
	measurements = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_analysis_measurements_total",
		Help: "Analysis measurements, by provider and outcome (Successful, Failed, Inconclusive, Unknown).",
	}, []string{"provider", "outcome"})
	unknowns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_analysis_unknown_measurements_total",
		Help: "Measurements that produced no evidence, by reason (Timeout, HTTPError, TransportError, BadQuery, NoData, NaN, EvaluationError, ...).",
	}, []string{"provider", "reason"})
	queryLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_analysis_query_duration_seconds",
		Help:    "Time from sending a query to its answer or timeout, for queries actually sent (not shared).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	}, []string{"provider"})
	shared = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_analysis_queries_shared_total",
		Help: "Measurements answered by an identical query of the same interval window instead of a request of their own.",
	}, []string{"provider"})
	verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_analysis_verdicts_total",
		Help: "AnalysisRuns finished, by verdict (Successful, Failed, Inconclusive, Unknown).",
	}, []string{"verdict"})
)

func init() {
	metrics.Registry.MustRegister(measurements, unknowns, queryLatency, shared, verdicts)
	for _, o := range []analysis.Outcome{analysis.Successful, analysis.Failed, analysis.Inconclusive, analysis.Unknown} {
		measurements.WithLabelValues(provider, string(o))
	}
	for _, v := range []vigilv1.AnalysisVerdict{vigilv1.AnalysisSuccessful, vigilv1.AnalysisFailed, vigilv1.AnalysisInconclusive, vigilv1.AnalysisUnknown} {
		verdicts.WithLabelValues(string(v))
	}
}

// observe counts one measurement.
func observe(m analysis.Measurement) {
	measurements.WithLabelValues(provider, string(m.Outcome)).Inc()
	if m.Outcome == analysis.Unknown {
		unknowns.WithLabelValues(provider, string(m.Cause)).Inc()
	}
	switch {
	case m.Shared:
		shared.WithLabelValues(provider).Inc()
	case m.Cause != analysis.CauseInvalidQuery && m.Cause != analysis.CauseInvalidCondition && m.Cause != analysis.CauseInvalidProvider:
		queryLatency.WithLabelValues(provider).Observe(m.Finished.Sub(m.Started).Seconds())
	}
}
