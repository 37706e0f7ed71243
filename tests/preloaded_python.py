"""A `python` that imports torch, transformers and datasets once: for tests that run many short scripts.

Each `python script.py ...` a test starts spends about 2 CPU seconds importing the same libraries before it does
its few milliseconds of toy-sized work. `PreloadedPython` starts one server that imports them, and writes a tiny
client executable (`.executable`) that takes the place of `python` on a command line (`PY=...` for shell scripts):
the client hands its arguments, working folder, environment and stdin/stdout/stderr to the server, which forks a
child that runs the script as `python` would (`script.py`, `-m module`, `-c code`, `-` for stdin; anything else is
run by the real interpreter), with `sys.executable` pointing at the client, so the script's own Python subprocesses
start the same way. The child's exit status comes back as the client's; SIGTERM, SIGINT and SIGHUP sent to the
client reach the child, and a child whose client died (killed by `timeout`) kills itself. The server waits for its
children, so their CPU time counts as the test's. What the script does is unchanged; only start-up is shared.
"""

from __future__ import annotations

import ast
import gc
import os
import runpy
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PRELOAD = ["numpy", "PIL.Image", "PIL.ImageDraw", "PIL.ImageFont", "scipy.io", "torch", "torch.profiler", "safetensors.torch",
           "transformers", "transformers.hf_argparser", "datasets", "accelerate", "multiprocessing.synchronize",
           "image_tokenizer", "image_tokenizer.cli", "image_tokenizer.pretokenize", "image_tokenizer.evaluation",
           "image_tokenizer.visualize"]
PRELOAD_ATTRIBUTES = [("transformers", name) for name in ("Trainer", "TrainingArguments", "AutoModelForCausalLM",
                                                            "LlamaForCausalLM", "GPT2LMHeadModel", "GenerationConfig")]

_FINISHED = threading.Event()
_REAL_PYTHON = sys.executable

CLIENT = '''#!{python} -S
import os, signal, socket, struct, sys
connection = socket.socket(socket.AF_UNIX)
connection.connect({address!r})
message = repr((sys.argv[1:], os.getcwd(), {{**os.environ, "PRELOADED_PYTHON": __file__}})).encode()
socket.send_fds(connection, [struct.pack("!Q", len(message))], [0, 1, 2])
connection.sendall(message)
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(number, lambda number, frame: connection.send(bytes([number])))
status = b""
try:
    while chunk := connection.recv(64):
        status += chunk
except ConnectionResetError:
    pass
sys.exit(int(status) if status else 137)  # no status: the child was killed
'''


RAY_SESSIONS = Path(tempfile.gettempdir()) / "ray"


def _stop_ray_sessions_since(known: set[Path]) -> None:
    """Stop what is left of the local Rays a forked child started: their log and autoscaler monitors outlive a
    child that ran ray.init and ray.shutdown (measured: two processes per session stay), unlike a plain python's."""
    for session in set(RAY_SESSIONS.glob("session_2*")) - known:
        subprocess.run(["pkill", "-KILL", "-f", str(session)], check=False)  # nothing of theirs to save


class PreloadedPython:
    """The server process and its client executable; `close()` stops the server once its running children end."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="pypre-"))
        self.ray_sessions = set(RAY_SESSIONS.glob("session_2*"))
        address = str(self.folder / "socket")
        self.server = subprocess.Popen([sys.executable, __file__, address], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, text=True)
        if self.server.stdout.readline().strip() != "ready":
            raise RuntimeError("the preloaded python server did not start")
        self.executable = self.folder / "python"
        self.executable.write_text(CLIENT.format(python=sys.executable, address=address))
        self.executable.chmod(0o755)

    def close(self) -> None:
        self.server.terminate()  # it waits for its running children, so their CPU time is counted
        self.server.wait()
        _stop_ray_sessions_since(self.ray_sessions)
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


def _receive(connection: socket.socket) -> tuple[list[str], str, dict[str, str], list[int]]:
    header, fds, _, _ = socket.recv_fds(connection, 8, 3)
    size, = struct.unpack("!Q", header)
    data = b""
    while len(data) < size:
        data += connection.recv(size - len(data))
    argv, cwd, env = ast.literal_eval(data.decode())  # the client's repr of (argv, cwd, environment)
    return argv, cwd, env, fds


def _watch(connection: socket.socket) -> None:
    """Forward the client's signals to this child; if the client is gone, die with it."""
    while data := connection.recv(16):
        for number in data:
            os.kill(os.getpid(), number)
    if not _FINISHED.is_set():
        os.kill(os.getpid(), signal.SIGKILL)


def _run(argv: list[str]) -> None:
    """Run argv as `python ARGV` would, in this process."""
    if argv and argv[0] == "-m" and len(argv) > 1:
        sys.argv = [argv[1], *argv[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv and argv[0] in ("-c", "-"):
        code = argv[1] if argv[0] == "-c" else sys.stdin.read()
        sys.argv = ["-c", *argv[2:]] if argv[0] == "-c" else argv
        sys.path.insert(0, "")
        exec(compile(code, "<string>" if argv[0] == "-c" else "<stdin>", "exec"), {"__name__": "__main__"})  # noqa: S102 (python -c)
    elif argv and not argv[0].startswith("-"):
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    else:  # options this server does not imitate: the real interpreter
        sys.exit(subprocess.run([_REAL_PYTHON, *argv], check=False).returncode)


def _child(connection: socket.socket, listener: socket.socket) -> int:
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    argv, cwd, env, fds = _receive(connection)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.executable = env["PRELOADED_PYTHON"]  # a script's own `sys.executable ...` commands come here too
    # The client's streams for the rest of this process (line-buffered, as on a terminal).
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    status = [1]

    def report() -> None:  # registered first, so it runs after the script's own exit handlers
        sys.stdout.flush()
        sys.stderr.flush()
        _FINISHED.set()
        connection.sendall(str(status[0]).encode())
        os._exit(status[0])  # the script's exit handlers have run; tearing down the preloaded modules is waste

    import atexit

    atexit.register(report)
    threading.Thread(target=_watch, args=(connection,), daemon=True).start()
    try:
        _run(argv)
        status[0] = 0
    except SystemExit as stop:
        code = stop.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        status[0] = 0 if code is None else code if isinstance(code, int) else 1
    except KeyboardInterrupt:
        status[0] = 130
    except BaseException:  # noqa: BLE001 (what python prints for an uncaught exception, then status 1)
        import traceback

        traceback.print_exc()
    return status[0]


def serve(address: str) -> int:
    import importlib

    sys.path.pop(0)  # this file's folder (tests/): not on a script's path
    for name in PRELOAD:
        importlib.import_module(name)
    for module, name in PRELOAD_ATTRIBUTES:
        getattr(sys.modules[module], name)
    sys.modules["PIL.Image"].init()  # every image format plugin
    gc.freeze()  # the children's garbage collector leaves the preloaded objects alone: fewer copy-on-write pages
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(address)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, _reap)  # waited for, so that their CPU time counts as this process's children's
    signal.signal(signal.SIGTERM, _stop)
    print("ready", flush=True)
    try:
        while True:
            connection, _ = listener.accept()
            if os.fork() == 0:
                return _child(connection, listener)
            connection.close()
    except _Stop:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        while True:  # the children still running finish first
            try:
                os.wait()
            except ChildProcessError:
                return 0


class _Stop(Exception):
    """SIGTERM to the server: stop accepting, wait for the children."""


def _stop(number: int, frame: object) -> None:
    raise _Stop


def _reap(number: int, frame: object) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
