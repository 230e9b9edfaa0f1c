#!/usr/bin/env python3
"""A plain-HTTP proxy on loopback in front of the stack's TLS registry (or any registry with the
stack's CA, e.g. its pull-through cache) that misbehaves on purpose in one way and logs every
request, with the user name of any Basic credentials it carried. Everything else is forwarded.

usage: registry_proxy.py MODE PORT_FILE LOG_FILE   (reads TCDIST_REGISTRY, TCDIST_REGISTRY_CA)
  flaky           the first manifest request gets a 503, and the first response of every blob
                  is cut off after 64 KiB (retries and Range resumption)
  tags-malformed  tag lists: 200 and a document whose "tags" is not a list
  tags-huge       tag lists: 200 and an endless body without a length (1 MiB chunks, up to
                  256 MiB)
  pass            nothing: forwards and logs
  tamper          every blob's bytes are served with one byte changed
  stale           a manifest by tag is served as it was the first time it was asked for
  basic-auth      a request without credentials gets a 401 asking for Basic ones
"""
import base64
import http.client
import http.server
import os
import ssl
import sys
import threading

UPSTREAM = os.environ["TCDIST_REGISTRY"]
CONTEXT = ssl.create_default_context(cafile=os.environ["TCDIST_REGISTRY_CA"])
mode, port_file, log_file = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
seen = set()
replays = {}


def first_time(key):
    with lock:
        if key in seen:
            return False
        seen.add(key)
        return True


def log(line):
    with lock, open(log_file, "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self):
        self.forward()

    def do_GET(self):
        self.forward()

    def user(self):
        kind, _, value = self.headers.get("Authorization", "").partition(" ")
        if kind.lower() != "basic":
            return kind or "none"
        return base64.b64decode(value).decode(errors="replace").partition(":")[0]

    def forward(self):
        log(f"{self.command} {self.path} range={self.headers.get('Range')} auth={self.user()}")
        if mode == "basic-auth" and "Authorization" not in self.headers:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode.startswith("tags-") and "/tags/list" in self.path.split("?")[0]:
            self.hostile_tags()
            return
        flaky = mode == "flaky"
        if flaky and "/manifests/" in self.path and first_time(("manifest", self.path)):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            log("injected 503")
            return
        by_tag = "/manifests/" in self.path and ":" not in self.path.rsplit("/", 1)[-1]
        key = (self.command, self.path)
        with lock:
            replayed = replays.get(key) if mode == "stale" and by_tag else None
        if replayed is None:
            upstream = http.client.HTTPSConnection(UPSTREAM, context=CONTEXT)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, headers=headers)
            response = upstream.getresponse()
            replayed = (response.status, response.getheaders(), response.read())
            if mode == "stale" and by_tag and response.status == 200:
                with lock:
                    replays.setdefault(key, replayed)
        status, response_headers, body = replayed
        if mode == "tamper" and "/blobs/" in self.path and body:
            body = bytearray(body)
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        cut = flaky and "/blobs/" in self.path and len(body) > (128 << 10) and first_time(("blob", self.path))
        self.send_response(status)
        for k, v in response_headers:
            if k.lower() not in ("connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "GET":
            if cut:
                self.wfile.write(body[: 64 << 10])
                self.wfile.flush()
                log(f"cut {self.path} after 65536 of {len(body)} bytes")
                self.close_connection = True
                return
            self.wfile.write(body)

    def hostile_tags(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if mode == "tags-malformed":
            body = b'{"name": "hostile", "tags": "latest"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b" " * (1 << 20)
        try:
            self.wfile.write(b'{"name": "hostile", "tags": [')
            for _ in range(256):
                self.wfile.write(chunk)
        except OSError:
            log("the client stopped reading the tag list")

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
