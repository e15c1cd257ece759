// Package deploy holds what it takes to run aurad in production: a
// hardened systemd unit (systemd/), a container image (Dockerfile), a
// Kubernetes kustomize base (kubernetes/) and example Prometheus alerts
// (prometheus/). Its only Go code is the test that keeps them honest: the
// files parse and every aurad flag they use exists.
package deploy
