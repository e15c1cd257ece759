#!/usr/bin/python3
"""A Python client for aurad: submit a task, follow it, wait for another,
and read the hook log with a disconnect and a resume in between.

It runs on stubs generated from proto/ (`make python-stubs` writes them to
bin/python) with Debian's python3-grpcio and python3-grpc-tools:

    make run                                   # in one terminal
    make python-stubs                          # once
    /usr/bin/python3 examples/clients/python/aura_example.py --name you

The stubs are generated without the server's validation rules, so they need
nothing but grpcio and protobuf at run time (see proto/tools/clientdesc).
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_STUBS = os.path.join(HERE, "..", "..", "..", "bin", "python")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default=os.environ.get("AURA_ADDR", "127.0.0.1:7070"),
                   help="aurad's address, host:port or unix:///path (env AURA_ADDR)")
    p.add_argument("--stubs", default=os.environ.get("AURA_PYTHON_STUBS", DEFAULT_STUBS),
                   help="directory of the generated aura/v1 stubs (make python-stubs)")
    p.add_argument("--name", default="world", help="the name demo/hello greets")
    p.add_argument("--timeout", type=float, default=60, help="seconds to give each call")
    args = p.parse_args()

    if not os.path.isfile(os.path.join(args.stubs, "aura", "v1", "execution_pb2.py")):
        sys.exit(f"no generated stubs in {args.stubs}: run `make python-stubs` first")
    sys.path.insert(0, args.stubs)
    try:
        import grpc
    except ImportError:
        sys.exit(f"{sys.executable} has no grpc module: install Debian's python3-grpcio "
                 "and run this with /usr/bin/python3")

    try:
        return run(args, grpc)
    except grpc.RpcError as e:
        sys.exit(f"aurad said {e.code().name}: {e.details()}")


def run(args, grpc):
    from aura.v1 import execution_pb2 as ex
    from aura.v1 import execution_pb2_grpc, hooks_pb2, hooks_pb2_grpc
    from google.protobuf import json_format

    channel = grpc.insecure_channel(args.addr)  # plaintext: aurad on loopback or a unix socket
    execution = execution_pb2_grpc.ExecutionServiceStub(channel)
    hooks = hooks_pb2_grpc.HookServiceStub(channel)

    def status_name(s):
        return ex.TaskStatus.Name(s).replace("TASK_STATUS_", "")

    # Submit: returns once the task is durably recorded.
    req = ex.SubmitRequest(task="demo/hello")
    req.inputs.update({"name": args.name})
    hello = execution.Submit(req, timeout=args.timeout).task_id
    print("submitted", hello)

    # Follow: the task's events from its first; the stream ends after
    # task.finished.
    final = None
    for ev in execution.Stream(ex.StreamRequest(task_id=hello), timeout=args.timeout):
        print(" ".join(filter(None, ["event", ev.type, ev.step])))
        if ev.type == "task.finished":
            final = ev.task
    print("status", status_name(final.status))
    print("result", json.dumps(json_format.MessageToDict(final.result), sort_keys=True))

    # Wait: the same stream, keeping only the last event's snapshot.
    fail = execution.Submit(ex.SubmitRequest(task="demo/fail"), timeout=args.timeout).task_id
    done = wait(execution, ex, fail, args.timeout)
    print("waited", fail, status_name(done.status), f"({done.error.kind} in step {done.error.step}: {done.error.message})")

    # Hooks: replay the stored log from its start until hello's
    # after_task_run, then drop the stream as a crashed plugin would.
    seen = None
    for ev in subscribe(grpc, hooks, hooks_pb2, after=0, timeout=args.timeout):
        if ev.task.id == hello:
            seen = ev.sequence
            print("hook", ev.hook, ev.task.id, status_name(ev.task.status))
            break
    # Resume after the last sequence handled: nothing is missed and
    # nothing comes twice, here the failed task's after_task_run.
    for ev in subscribe(grpc, hooks, hooks_pb2, after=seen, timeout=args.timeout):
        if ev.sequence <= seen:
            sys.exit(f"resumed after {seen} but got {ev.sequence} again")
        if ev.task.id == fail:
            print(f"resumed after {seen}: hook", ev.hook, ev.task.id, status_name(ev.task.status))
            break

    channel.close()
    return 0 if final.status == ex.TASK_STATUS_SUCCEEDED else 1


def wait(execution, ex, task_id, timeout):
    """Blocks until the task has ended and returns it."""
    for ev in execution.Stream(ex.StreamRequest(task_id=task_id), timeout=timeout):
        if ev.type == "task.finished":
            return ev.task
    # The stream ended early (a daemon restarting): ask for the task.
    return execution.GetTask(ex.GetTaskRequest(task_id=task_id), timeout=timeout)


def subscribe(grpc, hooks, hooks_pb2, after, timeout):
    """Yields after_task_run events of plan demo after sequence `after`,
    reconnecting from the last one yielded when the daemon goes away."""
    backoff = 0.1
    while True:
        req = hooks_pb2.SubscribeRequest(hooks=["after_task_run"], plan="demo", after_sequence=after)
        call = hooks.Subscribe(req, timeout=timeout)
        try:
            for ev in call:
                backoff = 0.1
                after = ev.sequence
                yield ev
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            time.sleep(backoff)
            backoff = min(backoff * 2, 5)
        finally:
            call.cancel()


if __name__ == "__main__":
    sys.exit(main())
