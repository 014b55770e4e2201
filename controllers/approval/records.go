package approval

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// RecordsPath checks every creation and update of a ReleaseRecord
// (validating): only the controller writes evidence.
const RecordsPath = "/releaserecords/guard"

// guardRecords lets only the controller create or change a ReleaseRecord.
// The CRD's rules keep written entries and finalised records unchanged
// even for the controller; deleting is left to RBAC, and a deletion shows
// in kubectl vigil evidence verify.
func (w *Admission) guardRecords(_ context.Context, req admission.Request) admission.Response {
	if req.UserInfo.Username == w.Controller {
		return admission.Allowed("")
	}
	return admission.Denied(fmt.Sprintf("only Vigil's controller (%s) writes ReleaseRecords; %s may not %s one",
		w.Controller, req.UserInfo.Username, verb(string(req.Operation))))
}

func verb(op string) string {
	switch op {
	case "CREATE":
		return "create"
	case "UPDATE":
		return "change"
	}
	return op
}
