// Package v1alpha1 holds the API types of Vigil (group vigil.dev).
//
// +kubebuilder:object:generate=true
// +groupName=vigil.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Vigil kind.
	GroupVersion = schema.GroupVersion{Group: "vigil.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Vigil kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Vigil kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
