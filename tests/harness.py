"""The tests' one way to run `pytest bench` in a process of its own: forked from a process that has imported the suite.

A `pytest bench` session in a fresh interpreter spends about 3.4 s of the 2-core VM importing torch,
torchvision, pytest and the suite before its first case, and the tests run some seventy of them. Here
a zygote process imports them once, and reads the reference runs every session's answer reads; each
session is a fork of it that then runs as `python -m pytest` would (its own process, in the tests'
process group as a subprocess is; its arguments, working folder, environment and standard streams;
its exit status or signal), and ends as the interpreter does (threads joined, atexit handlers run,
streams flushed) without the second Python spends tearing torch's modules down. What a fork could not reproduce goes to a real
subprocess: a setting read as the interpreter and torch's libraries start (PYTHON*, a locale, the
loader's, the C library's, the thread pools', TMPDIR), a preexec_fn, streams other than
capture_output's, another checkout's working folder, a command that is not `python -m pytest bench`,
or a machine where no zygote could start.

`run` and `popen` take subprocess.run's and Popen's arguments, so a test says what it runs the same way
either way.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

__all__ = ["popen", "run"]

REPO = Path(__file__).resolve().parent.parent
# What the interpreter reads as it starts: a session whose environment changes any of these is not a fork.
# (the dynamic loader's, the C library's and the thread pools' that torch's libraries read as they load, too)
_AT_START = (
    "PYTHON",
    "LC_",
    "LANG",
    "LD_",
    "MALLOC_",
    "GLIBC_TUNABLES",
    "OMP_",
    "MKL_",
    "KMP_",
    "TMPDIR",
)
# What a session imports before its first case (bench/conftest.py's closure), imported once in the zygote;
# the reference runs its answer reads at the end are read there once too.
_PRELOAD = ("torch", "torchvision", "pytest", "pytest_benchmark.plugin", "bench.run.plugin")

_ZYGOTE = textwrap.dedent(
    """
    import importlib, json, os, select, signal, socket, struct, sys, traceback

    for name in sys.argv[2].split(","):
        importlib.import_module(name)
    # What every session's end-of-run answer reads (kept while the files stay as they are).
    importlib.import_module("bench.analysis.reference").load_reference()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sys.argv[1])
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (Ctrl-C ends the tests' process; its end ends this one)
    base_path = list(sys.path)
    sessions = {}  # pid -> the connection its status goes back on
    print("ready", flush=True)

    def receive(conn):
        head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        (size,) = struct.unpack("!I", head)
        data = b""
        while len(data) < size:
            part = conn.recv(size - len(data))
            if not part:
                raise EOFError("the request was cut short")
            data += part
        return json.loads(data), fds

    def run(request, fds):
        # The session: as `python -m pytest ARGS` started in its folder with its environment would be.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [base_path[0], *extra, *base_path[1:]]
        importlib.invalidate_caches()  # files written since the zygote started (a test's plugin)
        sys.argv = ["pytest", *request["args"]]  # (run_module puts the module's file first, as -m does)
        import runpy

        try:
            runpy.run_module("pytest", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        # The interpreter's exit, less the second it spends tearing down torch's modules: threads joined, atexit
        # handlers run, the streams flushed, the status as sys.exit gives it.
        import atexit, threading

        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        return code

    def session(conn):
        try:
            request, fds = receive(conn)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except Exception as exc:
            try:
                conn.sendall(json.dumps({"error": repr(exc)}).encode() + b"\\n")
            except OSError:
                pass
            conn.close()
            return
        if pid == 0:  # never back into this loop: the session ends the process, however it ends
            code = 70
            try:
                listener.close()
                conn.close()
                code = run(request, fds)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sessions[pid] = conn
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\\n")
        except OSError:
            pass

    with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as parent:
        while True:
            try:
                ready, _, _ = select.select([listener, parent, wake_read], [], [])
            except InterruptedError:
                continue
            if parent in ready and not parent.read(1):  # the tests' process has ended: so do its sessions
                for pid in sessions:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                os._exit(0)
            if wake_read in ready:
                os.read(wake_read, 4096)
            while sessions:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = sessions.pop(pid, None)
                if conn is not None:
                    code = os.waitstatus_to_exitcode(status)
                    try:
                        conn.sendall(json.dumps({"returncode": code}).encode() + b"\\n")
                    except OSError:
                        pass
                    conn.close()
            if listener in ready:
                conn, _ = listener.accept()
                session(conn)
    """
)


class _Zygote:
    """The process sessions are forked from: started on first use, ended with the tests' process."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="fmnist-zygote-")
        self.address = os.path.join(self.folder, "socket")
        # Its own errors go to a log of its own, not into whichever test first started it.
        with open(os.path.join(self.folder, "zygote.log"), "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE, self.address, ",".join(_PRELOAD)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        ready, _, _ = select.select([self.process.stdout], [], [], 300)
        if not ready or self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError("the test harness's zygote did not start")
        self.environment = dict(os.environ)
        atexit.register(self.close)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


_zygote: _Zygote | None = None
_failed = False  # a zygote could not start here: every session is a real subprocess
_lock = threading.Lock()


def _the_zygote() -> _Zygote | None:
    global _zygote, _failed
    with _lock:
        if _failed or not (hasattr(os, "fork") and hasattr(socket, "send_fds")):
            return None
        if _zygote is None or _zygote.process.poll() is not None:
            try:
                _zygote = _Zygote()
            except (OSError, RuntimeError):
                _failed = True
                return None
        return _zygote


class Session:
    """A forked `pytest bench` session, read and waited for as a Popen is."""

    def __init__(self, args: list[str], cwd, env: dict, fds: tuple[int, int, int]) -> None:
        self.args = args
        self.returncode: int | None = None
        self.stdout = self.stderr = None
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(_the_zygote().address)
        # Its arguments after `python -m pytest`, its folder and environment; its streams as descriptors.
        request = json.dumps({"args": args[3:], "cwd": str(cwd), "env": env}).encode()
        socket.send_fds(self._conn, [struct.pack("!I", len(request))], list(fds))
        self._conn.sendall(request)
        self._reply = self._conn.makefile("r")
        ready, _, _ = select.select([self._conn], [], [], 60)
        said = json.loads(self._reply.readline() or "{}") if ready else {}
        if "pid" not in said:
            self._conn.close()
            raise RuntimeError(f"the test harness's zygote did not start the session: {said}")
        self.pid = said["pid"]

    def poll(self) -> int | None:
        if self.returncode is None:
            ready, _, _ = select.select([self._conn], [], [], 0)
            if ready:
                self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            ready, _, _ = select.select([self._conn], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._finish()
        return self.returncode

    def _finish(self) -> None:
        line = self._reply.readline()
        self.returncode = json.loads(line)["returncode"] if line else -signal.SIGKILL
        self._reply.close()
        self._conn.close()

    def send_signal(self, sig: int) -> None:
        if (
            self.poll() is None
        ):  # (the zygote reaps it: once it has ended, its pid may be another's)
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _forkable(cmd, kwargs: dict) -> bool:
    """Whether this command can be a fork of the zygote and run as it would in a subprocess of its own."""
    if list(cmd[:4]) != [sys.executable, "-m", "pytest", "bench"]:
        return False
    given = {key for key, value in kwargs.items() if value is not None}
    if given - {"cwd", "env", "stdout", "stderr", "capture_output", "text", "timeout"}:
        return False  # (a preexec_fn, a start_new_session: what the fork does not do)
    if kwargs.get("stdout") not in (None, subprocess.PIPE) or kwargs.get("stderr") not in (
        None,
        subprocess.PIPE,
        subprocess.STDOUT,
    ):
        return False
    if Path(kwargs.get("cwd") or os.getcwd()).resolve() != REPO:
        return False  # another checkout: its own modules, not the zygote's
    zygote = _the_zygote()
    if zygote is None:
        return False
    env = kwargs.get("env") or os.environ
    base = zygote.environment
    return all(
        env.get(key) == base.get(key)
        for key in set(env) | set(base)
        if key.startswith(_AT_START) and key != "PYTHONPATH"
    )


def popen(cmd, **kwargs):
    """subprocess.Popen(cmd, **kwargs), as a fork of the zygote where it can be one (stdout and stderr: PIPE,
    STDOUT or None; stdin is /dev/null)."""
    if not _forkable(cmd, kwargs) or kwargs.get("stderr") == subprocess.PIPE:
        return subprocess.Popen(cmd, **kwargs)
    env = dict(kwargs.get("env") or os.environ)
    read_end, write_end = os.pipe()
    out = write_end if kwargs.get("stdout") == subprocess.PIPE else 1
    err = out if kwargs.get("stderr") == subprocess.STDOUT else 2
    with open(os.devnull, "rb") as null:
        session = Session(
            list(cmd), kwargs.get("cwd") or os.getcwd(), env, (null.fileno(), out, err)
        )
    os.close(write_end)
    if kwargs.get("stdout") == subprocess.PIPE:
        session.stdout = open(read_end, "r" if kwargs.get("text") else "rb")  # noqa: SIM115
    else:
        os.close(read_end)
    return session


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, **kwargs) for the arguments the tests use (capture_output, text, timeout, cwd, env)."""
    if not _forkable(cmd, kwargs) or kwargs.get("stdout") or kwargs.get("stderr"):
        return subprocess.run(
            cmd, **kwargs
        )  # (streams other than capture_output's: as subprocess has them)
    timeout = kwargs.get("timeout")
    env = dict(kwargs.get("env") or os.environ)
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        open(os.devnull, "rb") as null,
    ):
        capture = kwargs.get("capture_output")
        fds = (null.fileno(), out.fileno() if capture else 1, err.fileno() if capture else 2)
        session = Session(list(cmd), kwargs.get("cwd") or os.getcwd(), env, fds)
        try:
            session.wait(timeout)
        except subprocess.TimeoutExpired:
            session.kill()
            session.wait()
            raise subprocess.TimeoutExpired(cmd, timeout) from None
        said = []
        for stream in (out, err):
            stream.seek(0)
            data = stream.read()
            said.append(data.decode() if kwargs.get("text") else data)
    return subprocess.CompletedProcess(
        cmd, session.returncode, *(said if capture else (None, None))
    )
