package v1alpha1_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/hack/testenv"
)

// k8s is a client of a real kube-apiserver with Vigil's CRDs installed. It
// asks for strict field validation, as kubectl does, so a field the schema
// does not know is an error rather than silently pruned.
var k8s client.Client

func TestMain(m *testing.M) {
	testenv.Main(m, func(cfg *rest.Config) error {
		c, err := client.New(cfg, client.Options{})
		k8s = client.WithFieldValidation(c, metav1.FieldValidationStrict)
		return err
	})
}
