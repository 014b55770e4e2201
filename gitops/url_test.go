package gitops_test

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/gitops"
)

func TestNormalizeURL(t *testing.T) {
	g := NewWithT(t)
	for in, want := range map[string]string{
		"https://github.com/acme/shop.git":      "github.com/acme/shop",
		"https://GitHub.com/acme/shop/":         "github.com/acme/shop",
		"git@github.com:acme/shop.git":          "github.com/acme/shop",
		"ssh://git@github.com:22/acme/shop.git": "github.com/acme/shop",
		"git://127.0.0.1:9000/app.git":          "127.0.0.1:9000/app",
		"http://user:pw@127.0.0.1:8080/app":     "127.0.0.1:8080/app",
		"":                                      "",
		"not a url":                             "",
	} {
		g.Expect(gitops.NormalizeURL(in)).To(Equal(want), in)
	}
}
