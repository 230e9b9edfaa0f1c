"""Holds COUNT idle connections to a unix socket (nothing sent) until stdin closes, as a job
flooding the build-host agent would. Prints `open N` once all are connected, then at the end
`refused R closed C idle I`: connections the server answered with a refusal, closed without
an answer, and still open."""
import resource
import socket
import sys

path, count = sys.argv[1], int(sys.argv[2])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
conns = []
for _ in range(count):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    conns.append(conn)
print(f"open {len(conns)}", flush=True)
sys.stdin.read()
refused = closed = idle = 0
for conn in conns:
    conn.setblocking(False)
    try:
        data = conn.recv(4096)
    except BlockingIOError:
        idle += 1
        continue
    if b"connections open" in data:
        refused += 1
    else:
        closed += 1
print(f"refused {refused} closed {closed} idle {idle}", flush=True)
