package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// WebhookConfiguration is the name config/default gives Vigil's Mutating-
// and ValidatingWebhookConfiguration (its namePrefix and the file's name).
const WebhookConfiguration = "vigil-approvals"

// InstallWebhooks applies the webhook configurations of manifests
// (config/webhook/manifests.yaml) for a manager that runs outside the
// cluster and serves them at base (https://localhost:PORT): each webhook
// calls base plus its path instead of the in-cluster Service. The caBundle
// is left to the manager's certificate rotator, as in a real install.
func InstallWebhooks(ctx context.Context, c client.Client, manifests, base string) error {
	raw, err := os.ReadFile(manifests)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading %s: %w", manifests, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		obj.SetName(WebhookConfiguration)
		hooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
		for i := range hooks {
			h := hooks[i].(map[string]any)
			path, _, _ := unstructured.NestedString(h, "clientConfig", "service", "path")
			h["clientConfig"] = map[string]any{"url": base + path}
		}
		if err := unstructured.SetNestedSlice(obj.Object, hooks, "webhooks"); err != nil {
			return err
		}
		if err := c.Patch(ctx, obj, client.Apply, client.FieldOwner("vigil-local-install"), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// WaitForCABundle waits until the manager's rotator has put a CA into
// every webhook of Vigil's configurations.
func WaitForCABundle(ctx context.Context, c client.Client, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: WebhookConfiguration}, m); err != nil {
			return false, nil
		}
		if err := c.Get(ctx, client.ObjectKey{Name: WebhookConfiguration}, v); err != nil {
			return false, nil
		}
		for _, h := range m.Webhooks {
			if len(h.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		for _, h := range v.Webhooks {
			if len(h.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

// WaitForAdmission waits until the API server calls Vigil's webhook with
// the CA the rotator injected: a dry-run Approval naming a Rollout that
// does not exist is refused by it.
func WaitForAdmission(ctx context.Context, c client.Client, timeout time.Duration) error {
	if err := WaitForCABundle(ctx, c, timeout); err != nil {
		return fmt.Errorf("the rotator injected no CA into the webhook configurations: %w", err)
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		probe := &vigilv1.Approval{ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "probe-"},
			Spec: vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: "no-such-rollout"}, Revision: "x", Step: 0, Decision: vigilv1.ApprovalApprove}}
		last = c.Create(ctx, probe, client.DryRunAll)
		return last != nil && strings.Contains(last.Error(), "does not exist in namespace"), nil
	})
	if err != nil {
		return fmt.Errorf("the API server does not admit Approvals through Vigil's webhook (last answer: %v): %w", last, err)
	}
	return nil
}
