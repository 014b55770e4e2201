package approval

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

var admissions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "vigil_approval_admission_total",
	Help: "Approval admission requests by result (Admitted, Denied, Errored) and reason (Admitted, or why it was denied).",
}, []string{"result", "reason"})

func init() {
	metrics.Registry.MustRegister(admissions)
}

// count records a response under reason and returns it.
func count(resp admission.Response, reason string) admission.Response {
	result := "Denied"
	switch {
	case resp.Allowed:
		result = "Admitted"
	case resp.Result != nil && resp.Result.Code >= 500, reason == errored:
		result = "Errored"
	}
	admissions.WithLabelValues(result, reason).Inc()
	return resp
}
