// Package secret is the one way Vigil's controllers read a Secret (and the
// ConfigMaps that hold trust material the same way): one at a time, by
// name, uncached (the controller never lists or watches them), with errors
// that name the object and key and never a value.
//
// A Secret or key that does not exist is a Failure (the user's to fix); a
// read the API server did not answer is Unknown (skeleton.APIOutcome).
package secret

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	"github.com/vigil-dev/vigil/outcome"
)

// Data reads the Secret ns/name through api (an uncached reader).
func Data(ctx context.Context, api client.Reader, ns, name string) (map[string][]byte, error) {
	s := &corev1.Secret{}
	if err := read(ctx, api, "Secret", ns, name, s, vigilv1.ReasonSecretNotFound, vigilv1.ReasonSecretUnreadable); err != nil {
		return nil, err
	}
	return s.Data, nil
}

// ConfigMapKey reads one key of the ConfigMap ns/name, from data or
// binaryData; an empty value is missing.
func ConfigMapKey(ctx context.Context, api client.Reader, ns, name, key string) ([]byte, error) {
	cm := &corev1.ConfigMap{}
	if err := read(ctx, api, "ConfigMap", ns, name, cm, vigilv1.ReasonConfigMapNotFound, vigilv1.ReasonConfigMapUnreadable); err != nil {
		return nil, err
	}
	if s := cm.Data[key]; s != "" {
		return []byte(s), nil
	}
	if b := cm.BinaryData[key]; len(b) > 0 {
		return b, nil
	}
	return nil, outcome.Failf(vigilv1.ReasonConfigMapKeyMissing, "ConfigMap %s has no key %q", name, key)
}

// read gets one object: NotFound is a Failure; any other error is what
// skeleton.APIOutcome says (a 403 is a Failure, a timeout Unknown).
func read(ctx context.Context, api client.Reader, kind, ns, name string, obj client.Object, notFound, unreadable string) error {
	err := api.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj)
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return outcome.Failf(notFound, "%s %s does not exist", kind, name)
	}
	return &outcome.Error{Result: skeleton.APIOutcome(err), Reason: unreadable, Err: fmt.Errorf("reading %s %s: %w", kind, name, err)}
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
