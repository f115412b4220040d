"""Running code we do not trust: the learner's. One package confines it, however it is run.

    confine.py      confinement(): Isolated (bubblewrap namespaces) or LimitsOnly, chosen in one place;
                    the Confined handle (poll, wait, kill, verdict) of whatever it starts
    bubblewrap.py   the isolated sandbox's options: what a process may read and write, a private /tmp
    fork_server.py  a confined process that has imported torch and forks a fresh one per job
    job.py          one job from the trusted side: its pipes, token, deadline and verdict; the fork servers
    limits.py       what a job may use, and how a confined process holds itself to it
    processes.py    a process tree's facts: its processor time and memory together, ending all of it
    verdict.py      how a run ended, as a type, with one table of messages
    wire.py         what crosses: JSON lines, tensors as data, never pickle

Who starts what: the lab worker (minitx.labs.worker) judges checks, demos and tries, and forks each
job's process from a fork server; a training run with the learner's code is started confined by the
app's launcher (minitx.labs.training_run). Threat model and limits: docs/sandbox.md.
"""
