// Package server is Aura's gRPC surface: the ExecutionService and
// HookService handlers, the mapping of core errors to gRPC status codes (in
// errors.go, and only there), listeners, health and reflection. Handlers
// are thin: decode, call the core, map the error.
package server
