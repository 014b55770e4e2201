// Package secret is the one way Vigil's controllers read a Secret: one at a
// time, by name, uncached (the controller never lists or watches Secrets),
// with errors that name the Secret and key and never a value.
//
// A Secret or key that does not exist is a Failure (the user's to fix); a
// read the API server did not answer is Unknown, as skeleton.WriteOutcome
// would say of a write.
package secret

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/outcome"
)

// Data reads the Secret ns/name through api (an uncached reader).
func Data(ctx context.Context, api client.Reader, ns, name string) (map[string][]byte, error) {
	s := &corev1.Secret{}
	err := api.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return s.Data, nil
	case apierrors.IsNotFound(err):
		return nil, outcome.Failf(vigilv1.ReasonSecretNotFound, "Secret %s does not exist", name)
	case errors.As(err, &status):
		return nil, &outcome.Error{Result: outcome.HTTPStatus(int(status.Status().Code)), Reason: vigilv1.ReasonSecretUnreadable,
			Err: fmt.Errorf("reading Secret %s: %w", name, err)}
	}
	return nil, &outcome.Error{Result: outcome.Classify(err), Reason: vigilv1.ReasonSecretUnreadable, Err: fmt.Errorf("reading Secret %s: %w", name, err)}
}

// Key reads one key of the Secret ns/name; an empty value is missing.
func Key(ctx context.Context, api client.Reader, ns, name, key string) ([]byte, error) {
	data, err := Data(ctx, api, ns, name)
	if err != nil {
		return nil, err
	}
	b, ok := data[key]
	if !ok || len(b) == 0 {
		return nil, outcome.Failf(vigilv1.ReasonSecretKeyMissing, "Secret %s has no key %q", name, key)
	}
	return b, nil
}
