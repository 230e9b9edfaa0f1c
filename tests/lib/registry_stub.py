#!/usr/bin/env python3
"""A stand-in "registry" on plain-HTTP loopback that misbehaves in one way and logs every request
as `METHOD PATH AUTHORIZATION` (`-` when there is none). Used to check where the client sends
credentials and how it reads what it is sent.

usage: registry_stub.py MODE PORT_FILE LOG_FILE
  basic        every request: 401 with a Basic challenge
  not-found    every request: 404
  bearer-self  401 with a Bearer challenge whose realm is this server (plain HTTP, loopback);
               /token answers a token, which the registry then refuses too
  bearer-far   401 with a Bearer challenge whose realm is http://registry.invalid/token
  huge         manifests: 200 and an endless body without a length (1 MiB chunks, up to 256 MiB)
"""
import http.server
import sys
import threading

mode, port_file, log_file = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()


def log(line):
    with lock, open(log_file, "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self):
        self.answer()

    def do_GET(self):
        self.answer()

    def answer(self):
        log(f"{self.command} {self.path} {self.headers.get('Authorization') or '-'}")
        port = self.server.server_address[1]
        if mode == "basic":
            self.reply(401, {"WWW-Authenticate": 'Basic realm="stub"'})
        elif mode == "not-found":
            self.reply(404)
        elif mode == "bearer-self" and self.path.startswith("/token"):
            self.reply(200, body=b'{"token":"stub-token"}')
        elif mode in ("bearer-self", "bearer-far"):
            realm = f"http://127.0.0.1:{port}/token" if mode == "bearer-self" else "http://registry.invalid/token"
            challenge = f'Bearer realm="{realm}",service="stub",scope="repository:x:pull"'
            self.reply(401, {"WWW-Authenticate": challenge})
        elif mode == "huge" and "/manifests/" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command == "GET":
                chunk = b" " * (1 << 20)
                try:
                    for _ in range(256):
                        self.wfile.write(chunk)
                except OSError:
                    log("client hung up")
        else:
            self.reply(404)

    def reply(self, status, headers=None, body=b""):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
