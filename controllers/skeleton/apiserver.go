package skeleton

import (
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/vigil-dev/vigil/outcome"
)

// APIOutcome is the outcome of a read or write of the API server that
// returned err. A status the server answered is what outcome.HTTPStatus
// says, but for the answers that mean "not now" or "read again": a
// conflict, a gone or missing object, and unauthorized (a new token can fix
// it) are Unknown. So a Failure is a request the server refuses for good as
// it is: an invalid object, a forbidden request, a body over the server's
// limits. An error without a status is classified by outcome.Classify.
// (A caller to whom a missing object means something checks NotFound first.)
func APIOutcome(err error) outcome.Result {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return outcome.Classify(err)
	}
	switch code := int(status.Status().Code); code {
	case http.StatusUnauthorized, http.StatusNotFound, http.StatusConflict, http.StatusGone:
		return outcome.Unknown
	default:
		return outcome.HTTPStatus(code)
	}
}
