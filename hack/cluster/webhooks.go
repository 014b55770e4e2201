package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
