// Package deploy holds what it takes to run aurad in production: a
// hardened systemd unit (systemd/), a container image (Dockerfile) with a
// Compose file that runs it (compose.yaml), a Kubernetes kustomize base
// (kubernetes/), a three-node cluster on etcd as a Compose file
// (compose-cluster.yaml) and a kustomize base (kubernetes-cluster/), and
// example Prometheus alerts (prometheus/). Its only Go
// code is the tests that keep them honest: the files parse, every aurad
// flag they use exists, and, where a Docker engine is present, the image
// builds and runs the example plans.
package deploy
