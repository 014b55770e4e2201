package v1alpha1_test

import (
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/hack/testenv"
)

// k8s is a client of a real kube-apiserver with Vigil's CRDs installed.
var k8s client.Client

func TestMain(m *testing.M) {
	testenv.Main(m, func(cfg *rest.Config) (err error) {
		k8s, err = client.New(cfg, client.Options{})
		return err
	})
}
