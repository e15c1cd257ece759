// Package workers runs step actions on Aura's two lanes: IOPool bounds how
// many io-lane actions run at once in aurad's own goroutines, and CPUPool
// runs cpu-lane actions in supervised, long-lived child processes
// (`aurad worker`, see WorkerMain) that can be killed hard, limited and
// replaced without taking the daemon down.
//
// # Protocol
//
// Parent and worker exchange length-prefixed frames (4-byte little-endian
// length, then a payload whose first byte is the message kind) over two pipes
// passed as file descriptors 3 (jobs, parent to worker) and 4 (results,
// worker to parent), so a stray print to the worker's stdout cannot corrupt
// the stream. Values (params and outputs) are JSON-like trees encoded with a
// compact tagged binary format (value.go) that keeps int64 as int64.
//
// The encoding was chosen by measurement (BenchmarkValueCodec, encode plus
// decode of the same tree, go1.26, 2 shared cores):
//
//	payload                      binary             structpb (proto.Marshal + AsMap)
//	noop (nil params)              ~10 ns, 0 allocs     ~300 ns,  5 allocs
//	exec-like params (11 leaves)  ~1.3 µs, 24 allocs   ~6.3 µs, 99 allocs
//
// structpb is also lossy for this use: every number becomes a float64, so an
// int64 above 2^53 cannot round-trip. The binary format won on both counts.
//
// # Supervision
//
// Each worker slot has one goroutine that starts the child (clean
// environment, only the protocol descriptors, its own process group, killed
// by the kernel if aurad dies), reads its results and reaps it. A job past its
// timeout or whose context ends gets the worker's process group SIGTERM, then
// SIGKILL after CPUConfig.KillGrace, and the slot starts a replacement. A
// worker that dies on its own (panic, os.Exit, signal, OOM kill) fails its job
// with *CrashError and is replaced after an exponential, capped backoff that
// resets once a worker has stayed up for CPUConfig.HealthyAfter. Workers are
// recycled between jobs after CPUConfig.MaxJobs jobs or when their resident
// memory exceeds CPUConfig.MaxRSS.
package workers
