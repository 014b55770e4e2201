// Package trustpolicy loads TrustPolicies into provenance policies and
// keeps each TrustPolicy's status: whether its keys and trusted roots load,
// and the hash that identifies it with its trust material. The Rollout
// controller watches that hash: a new one verifies running revisions again.
package trustpolicy

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/secret"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
	"github.com/vigil-dev/vigil/provenance"
)

// Load builds the provenance policy of tp, reading its keys, trusted roots
// and source credentials through api (uncached: Secrets are read one by
// one, never listed or watched). Its error is an outcome: a Failure, whose
// reason says what makes the policy unusable as written (a missing Secret,
// ConfigMap or key, a key that does not load), or Unknown (a read that
// went unanswered).
func Load(ctx context.Context, api client.Reader, tp *vigilv1.TrustPolicy) (*provenance.Policy, error) {
	p := &provenance.Policy{RequireDigest: tp.Spec.RequireDigest}
	for _, a := range tp.Spec.Authorities {
		out := provenance.Authority{Name: a.Name}
		switch {
		case a.Key != nil:
			b, err := secret.Key(ctx, api, tp.Namespace, a.Key.SecretRef.Name, a.Key.SecretRef.Key)
			if err != nil {
				return nil, within(err, "authority %s", a.Name)
			}
			out.PublicKey = b
		case a.Keyless != nil:
			k := a.Keyless
			root, err := configMapOrSecretKey(ctx, api, tp.Namespace, k.TrustedRoot)
			if err != nil {
				return nil, within(err, "authority %s: trusted root", a.Name)
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
				data, err := secret.Data(ctx, api, tp.Namespace, s.SecretRef.Name)
				if err != nil {
					return nil, within(err, "source %s", s.URL)
				}
				if src.Auth, err = gitops.Auth(s.URL, data); err != nil {
					return nil, outcome.Failf(vigilv1.ReasonSourceCredentialsInvalid, "source %s: %v", s.URL, err)
				}
			}
			req.Sources = append(req.Sources, src)
		}
		p.Provenance = req
	}
	if err := p.Validate(); err != nil {
		return nil, outcome.Failf(vigilv1.ReasonPolicyInvalid, "%v", err)
	}
	return p, nil
}

// within says where in the policy err happened, keeping its outcome.
func within(err error, format string, args ...any) error {
	o := outcome.Of(err, vigilv1.ReasonSecretUnreadable)
	return &outcome.Error{Result: o.Result, Reason: o.Reason, Err: fmt.Errorf(format+": %w", append(args, err)...)}
}

func configMapOrSecretKey(ctx context.Context, api client.Reader, ns string, ref vigilv1.ConfigMapOrSecretKeyReference) ([]byte, error) {
	switch {
	case ref.Secret != nil:
		return secret.Key(ctx, api, ns, ref.Secret.Name, ref.Secret.Key)
	case ref.ConfigMap != nil:
		return secret.ConfigMapKey(ctx, api, ns, ref.ConfigMap.Name, ref.ConfigMap.Key)
	}
	return nil, outcome.Failf(vigilv1.ReasonPolicyInvalid, "neither a ConfigMap nor a Secret is named")
}
