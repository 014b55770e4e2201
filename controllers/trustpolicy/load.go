// Package trustpolicy loads TrustPolicies into provenance policies and
// keeps each TrustPolicy's status: whether its keys and trusted roots load,
// and the hash that identifies it with its trust material. The Rollout
// controller watches that hash: a new one verifies running revisions again.
package trustpolicy

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/provenance"
)

// ErrNotReady wraps what makes a TrustPolicy unusable as written: a
// missing Secret, ConfigMap or key, a key or trusted root that does not
// load. Other errors are transient reads.
var ErrNotReady = errors.New("trust policy not ready")

// Load builds the provenance policy of tp, reading its keys, trusted roots
// and source credentials through api (uncached: Secrets are read one by
// one, never listed or watched).
func Load(ctx context.Context, api client.Reader, tp *vigilv1.TrustPolicy) (*provenance.Policy, error) {
	p := &provenance.Policy{RequireDigest: tp.Spec.RequireDigest}
	for _, a := range tp.Spec.Authorities {
		out := provenance.Authority{Name: a.Name}
		switch {
		case a.Key != nil:
			b, err := secretKey(ctx, api, tp.Namespace, a.Key.SecretRef)
			if err != nil {
				return nil, fmt.Errorf("authority %s: %w", a.Name, err)
			}
			out.PublicKey = b
		case a.Keyless != nil:
			k := a.Keyless
			root, err := configMapOrSecretKey(ctx, api, tp.Namespace, k.TrustedRoot)
			if err != nil {
				return nil, fmt.Errorf("authority %s: trusted root: %w", a.Name, err)
			}
			out.Keyless = &provenance.Keyless{Issuer: k.Issuer, Subject: k.Subject, SubjectRegExp: k.SubjectRegExp, TrustedRoot: root}
		}
		p.Authorities = append(p.Authorities, out)
	}
	if pr := tp.Spec.Provenance; pr != nil {
		req := &provenance.Requirement{BuilderIDs: pr.BuilderIDs}
		for _, s := range pr.SourceRepositories {
			src := provenance.Source{URL: s.URL, ProtectedRefs: s.ProtectedRefs}
			if s.SecretRef != nil {
				data, err := secretData(ctx, api, tp.Namespace, s.SecretRef.Name)
				if err != nil {
					return nil, fmt.Errorf("source %s: %w", s.URL, err)
				}
				if src.Auth, err = gitops.Auth(s.URL, data); err != nil {
					return nil, fmt.Errorf("%w: source %s: %v", ErrNotReady, s.URL, err)
				}
			}
			req.Sources = append(req.Sources, src)
		}
		p.Provenance = req
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return p, nil
}

func secretData(ctx context.Context, api client.Reader, ns, name string) (map[string][]byte, error) {
	s := &corev1.Secret{}
	if err := api.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: Secret %s does not exist", ErrNotReady, name)
		}
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return s.Data, nil
}

func secretKey(ctx context.Context, api client.Reader, ns string, ref vigilv1.SecretKeyReference) ([]byte, error) {
	data, err := secretData(ctx, api, ns, ref.Name)
	if err != nil {
		return nil, err
	}
	b, ok := data[ref.Key]
	if !ok || len(b) == 0 {
		return nil, fmt.Errorf("%w: Secret %s has no key %q", ErrNotReady, ref.Name, ref.Key)
	}
	return b, nil
}

func configMapOrSecretKey(ctx context.Context, api client.Reader, ns string, ref vigilv1.ConfigMapOrSecretKeyReference) ([]byte, error) {
	if ref.Secret != nil {
		return secretKey(ctx, api, ns, *ref.Secret)
	}
	if ref.ConfigMap == nil {
		return nil, fmt.Errorf("%w: neither a ConfigMap nor a Secret is named", ErrNotReady)
	}
	cm := &corev1.ConfigMap{}
	if err := api.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.ConfigMap.Name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: ConfigMap %s does not exist", ErrNotReady, ref.ConfigMap.Name)
		}
		return nil, fmt.Errorf("reading ConfigMap %s: %w", ref.ConfigMap.Name, err)
	}
	if s, ok := cm.Data[ref.ConfigMap.Key]; ok && s != "" {
		return []byte(s), nil
	}
	if b, ok := cm.BinaryData[ref.ConfigMap.Key]; ok && len(b) > 0 {
		return b, nil
	}
	return nil, fmt.Errorf("%w: ConfigMap %s has no key %q", ErrNotReady, ref.ConfigMap.Name, ref.ConfigMap.Key)
}
