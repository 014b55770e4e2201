// Package traffic turns a canary weight into traffic: by the ratio of canary
// to stable pods (the default), or by the backendRefs weights of a Gateway API
// HTTPRoute. Its functions are pure; the Rollout controller reads the objects
// and writes what they return.
package traffic
