//go:build deps

// Package deps pins the libraries later issues build on (DESIGN.md,
// "Dependencies") so that go.mod and go.sum hold one set known to compile
// together. `make verify` builds it with -tags deps; once a package of Vigil
// imports a library for real, its line here can go.
package deps

import (
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/in-toto/attestation/go/predicates/provenance/v1"
	_ "github.com/sigstore/sigstore-go/pkg/verify"
)
