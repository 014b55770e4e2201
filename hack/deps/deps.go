//go:build deps

// Package deps pins the libraries later issues build on (DESIGN.md,
// "Dependencies") so that go.mod and go.sum hold one set known to compile
// together. `make verify` builds it with -tags deps; once a package of Vigil
// imports a library for real, its line here can go. Every library DESIGN.md
// names is imported for real now.
package deps
