# A small service for cli/tests/ports.rs, run inside the environment: answers every HTTP
# request with what it received (path, selected headers, body length) and echoes WebSocket
# messages on /ws. Standard library only.
import base64, hashlib, http.server, socketserver, sys

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        lines = [
            "port=%d" % self.server.server_address[1],
            "method=%s" % self.command,
            "path=%s" % self.path,
            "body=%d" % len(body),
        ]
        for h in ["Authorization", "Cookie", "X-Cove-Csrf", "X-Forwarded-For",
                  "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix"]:
            lines.append("%s=%s" % (h.lower(), self.headers.get(h, "")))
        out = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        # one cookie of its own, one that would shadow Cove's session (the proxy drops it)
        self.send_header("Set-Cookie", "app=1; Path=/")
        self.send_header("Set-Cookie", "cove_session=planted; Path=/")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        self.answer()

    do_POST = answer
    do_PUT = answer

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(self.rfile.read(2), "big")
            elif n == 127:
                n = int.from_bytes(self.rfile.read(8), "big")
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                self.wfile.flush()
                return
            if opcode in (1, 2):
                size = bytes([len(data)]) if len(data) < 126 else b"\x7e" + len(data).to_bytes(2, "big")
                self.wfile.write(bytes([0x80 | opcode]) + size + data)
                self.wfile.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
