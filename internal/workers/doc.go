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
// The encoding was chosen by measurement: BenchmarkValueCodec, encode plus
// decode of the same tree (go1.26, 2 shared cores, -benchtime=1s -count=3):
//
//	payload                        binary                         structpb (Marshal, Unmarshal, AsMap)
//	noop (nil params)              17-19 ns, 0 allocs, 1 B        510-660 ns, 4 allocs, 0 B
//	exec-like params (11 leaves)   2.4-3.4 µs, 31 allocs, 125 B   18-52 µs, 140 allocs, 186 B
//
// structpb is also lossy here: it turns every number into a float64, so
// int64 values above 2^53 would not survive. The binary format won on both
// counts. Through the whole pool (BenchmarkCPUPoolRoundTrip and
// BenchmarkCPUPoolThroughput, 2 workers) a no-op job takes 7-10 µs at p50,
// 50-120 µs at p99, and 2 workers run 73,000-100,000 no-op jobs/s, with no
// allocation in the parent per job.
//
// # Supervision
//
// Each worker slot has one goroutine that starts the child (clean
// environment, only the protocol descriptors, its own process group and,
// with CPUConfig.Processes, its own containment group, killed by the kernel
// if aurad dies), reads its results and reaps it. A job past its timeout or
// whose context ends gets SIGTERM sent to the worker's whole group, its
// actions' processes included, then SIGKILL after CPUConfig.KillGrace, and
// the slot starts a replacement. Whatever the worker's actions started is
// killed when the worker is reaped, however it died. A
// worker that dies on its own (panic, os.Exit, signal, OOM kill) fails its job
// with *CrashError and is replaced after an exponential, capped backoff that
// resets once a worker has stayed up for CPUConfig.HealthyAfter. Workers are
// recycled between jobs after CPUConfig.MaxJobs jobs or when their resident
// memory exceeds CPUConfig.MaxRSS. CPUConfig.RLimitAS and RLimitCPU bound
// each worker's address space and each job's CPU time with rlimits.
package workers
