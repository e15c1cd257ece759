package main

// howItMeasures is the section's closing text: how each figure is taken.
const howItMeasures = `How the figures are taken:

- Every system runs the same no-op task, on a server the harness starts on loopback in a temporary directory: aurad built from this commit, Debian's redis-server, Debian's PostgreSQL (its default configuration: fsync and synchronous_commit on; as nobody when run as root). The clients, and Asynq's and River's workers, run in the harness's process; aurad runs its tasks itself. All of it shares the machine's cores.
- End to end: N tasks submitted by 16 producer goroutines while the workers run, timed from the first submission to the last task finished as the system reports it: Aura's after_task_run hook event (published once recorded), River's JobCompleted event (after its completer has written the row), Asynq's active list empty in Redis after every handler has run (the completion is written). Aura's producers each hold a SubmitStream (pipelined, one acknowledgement a task); Asynq's call Enqueue; River's call InsertMany with 100 jobs, or Insert with one.
- Acknowledged submissions: N divided by the time until the producers' last acknowledgement, in the same run.
- Idle latency: one task at a time, each submitted after the last finished and a 5 ms pause: the harness's clock just before the submission to the handler's start on the same machine's clock (River's Work and Asynq's handler read time.Now; aurad stamps the first step's started_at when its engine starts the step, after the task's RUNNING record is durable, and the harness reads it back). Aura's sample includes the gRPC hop both ways.
- One caller: N submissions one after another, each waiting for its acknowledgement (Aura's unary Submit, Asynq's Enqueue, River's Insert); the tasks run meanwhile.
- Memory: the proportional set size (PSS) of the server's processes: aurad and its CPU worker processes; redis-server; the PostgreSQL postmaster and all its backends (PSS counts shared buffers once, where RSS would count them per process). The clients and the Asynq and River workers in the harness's process are not counted. Idle: just started, once two readings 250 ms apart agree within 1 %; peak: the largest reading, every 100 ms, during the end-to-end run.
`
