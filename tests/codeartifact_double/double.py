#!/usr/bin/env python3
"""CodeArtifact test double (test-only; Python 3 stdlib).

Control plane, with the REST shapes of the real service (restJson1, SigV4
service `codeartifact`):

  POST /v1/authorization-token?domain=D&domain-owner=O[&duration=S]   (empty body)
       -> {"authorizationToken": "...", "expiration": <epoch seconds>}
  GET  /v1/repository/endpoint?domain=D&domain-owner=O&repository=R&format=npm|pypi
       -> {"repositoryEndpoint": "http://HOST:PORT/D-O/<format>/R/"}

Both require a well-formed `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/
REGION/codeartifact/aws4_request, SignedHeaders=..., Signature=<64 hex>` header
and `x-amz-date` (the signature itself is not checked). A domain given with
`--deny-domain` answers 403 + `x-amzn-errortype: AccessDeniedException`.

A minimal STS (awsQuery, `POST /sts/` with `Action=AssumeRole`) answers
AccessDenied XML for roles given with `--deny-role` and a fake session
otherwise; the tests use moto for the happy path and this for the denial.

Data plane (under `/D-O/npm/R/` and `/D-O/pypi/R/`): an npm packument and
tarball for `@acme/hello`, a PyPI simple index and wheel for `acme-hello`,
built at startup. Accepts only tokens this double issued and that have not
expired (`Bearer TOKEN` or basic `aws:TOKEN`), 401 otherwise. Links inside
packuments and simple pages are absolute, like the real service's.

Test hooks: `GET /__double/stats` (request counters, last credentials seen),
`GET /__double/tokens` (every token issued),
`POST /__double/expire-tokens` (expire every issued token now), and
`<repository>/__stream/blob`: 256 KiB, then a pause until
`POST /__double/release`, then 256 KiB more (proves streaming).

Prints the bound port on stdout when ready.
"""

import argparse
import base64
import hashlib
import io
import json
import re
import secrets
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[A-Za-z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)

NPM_NAME = "@acme/hello"
NPM_VERSION = "1.0.0"
NPM_GREETING = "hello from @acme/hello"
PY_NAME = "acme-hello"
PY_VERSION = "1.0.0"
PY_GREETING = "hello from acme-hello"
STREAM_CHUNK = 256 * 1024


def npm_tarball():
    files = {
        "package/package.json": json.dumps(
            {"name": NPM_NAME, "version": NPM_VERSION, "main": "index.js", "license": "MIT"}
        ).encode(),
        "package/index.js": ("module.exports = %s;\n" % json.dumps(NPM_GREETING)).encode(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def b64_nopad(digest):
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def py_wheel():
    mod = "acme_hello"
    dist = "%s-%s.dist-info" % (mod, PY_VERSION)
    files = {
        mod + "/__init__.py": ("GREETING = %s\n" % json.dumps(PY_GREETING)).encode(),
        dist + "/METADATA": (
            "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: Cove test fixture\n"
            % (PY_NAME, PY_VERSION)
        ).encode(),
        dist + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: cove-double\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for name, data in files.items():
        record += "%s,sha256=%s,%d\n" % (name, b64_nopad(hashlib.sha256(data).digest()), len(data))
    record += dist + "/RECORD,,\n"
    files[dist + "/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, (2023, 11, 14, 0, 0, 0)), data)
    return "%s-%s-py3-none-any.whl" % (mod, PY_VERSION), buf.getvalue()


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.tokens = {}  # token -> expiration epoch
        self.stats = {
            "authorization_token": 0,
            "repository_endpoint": 0,
            "sts_assume_role": 0,
            "data_ok": 0,
            "data_unauthorized": 0,
            "denied": 0,
            "bad_signature": 0,
            "last_access_key_id": None,
            "last_security_token_present": False,
            "last_duration": None,
            "last_data_auth_scheme": None,
        }
        self.tgz = npm_tarball()
        self.wheel_name, self.wheel = py_wheel()
        self.base = None  # "http://host:port", set once bound
        self.release = threading.Event()

    def bump(self, key, **extra):
        with self.lock:
            self.stats[key] += 1
            self.stats.update(extra)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "codeartifact-double"

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.state.args.verbose:
            sys.stderr.write("double: " + (fmt % args) + "\n")

    # ---- helpers -------------------------------------------------------
    def send(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, status, obj, headers=None):
        self.send(status, json.dumps(obj), headers=headers)

    def aws_error(self, status, etype, message):
        self.json(status, {"message": message}, headers={"x-amzn-errortype": etype})

    def read_body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def check_sigv4(self, service):
        m = SIGV4.match(self.headers.get("authorization") or "")
        ok = (
            m is not None
            and m.group("service") == service
            and "host" in m.group("signed").split(";")
            and "x-amz-date" in m.group("signed").split(";")
            and self.headers.get("x-amz-date")
        )
        if not ok:
            self.server.state.bump("bad_signature")
            self.aws_error(
                403,
                "UnrecognizedClientException",
                "missing or malformed SigV4 Authorization header",
            )
            return None
        return m

    # ---- routing -------------------------------------------------------
    def do_GET(self):
        self.route()

    def do_HEAD(self):
        self.route()

    def do_POST(self):
        self.route()

    def route(self):
        st = self.server.state
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path
        if path == "/__double/stats":
            with st.lock:
                return self.json(200, dict(st.stats))
        if path == "/__double/tokens":
            # every token ever issued: tests search logs and artifacts for them
            with st.lock:
                return self.json(200, sorted(st.tokens))
        if path == "/__double/expire-tokens" and self.command == "POST":
            with st.lock:
                for t in st.tokens:
                    st.tokens[t] = 0
            return self.json(200, {"expired": len(st.tokens)})
        if path == "/__double/release" and self.command == "POST":
            st.release.set()
            return self.json(200, {"released": True})
        if path == "/v1/authorization-token" and self.command == "POST":
            return self.get_authorization_token(q)
        if path == "/v1/repository/endpoint" and self.command == "GET":
            return self.get_repository_endpoint(q)
        if path.rstrip("/") == "/sts" and self.command == "POST":
            return self.sts()
        m = re.match(r"^/([^/]+)/(npm|pypi)/([^/]+)/(.*)$", path)
        if m:
            return self.data_plane(m.group(1), m.group(2), m.group(3), m.group(4))
        self.aws_error(404, "ResourceNotFoundException", "no route for %s %s" % (self.command, path))

    # ---- control plane -------------------------------------------------
    def get_authorization_token(self, q):
        st = self.server.state
        self.read_body()
        m = self.check_sigv4("codeartifact")
        if m is None:
            return
        domain, owner = q.get("domain", ""), q.get("domain-owner", "")
        if not domain:
            return self.aws_error(400, "ValidationException", "domain is required")
        if domain in st.args.deny_domain:
            st.bump("denied")
            return self.aws_error(
                403,
                "AccessDeniedException",
                "User is not authorized to perform: codeartifact:GetAuthorizationToken",
            )
        duration = int(q["duration"]) if q.get("duration") else 43200
        if duration != 0 and not 900 <= duration <= 43200:
            return self.aws_error(400, "ValidationException", "duration must be 0 or 900..43200")
        lifetime = st.args.token_lifetime or (duration if duration else 3600)
        token = "eyJ2ZXIiOjF9." + secrets.token_urlsafe(48)
        expiration = int(time.time()) + lifetime
        with st.lock:
            st.tokens[token] = expiration
        st.bump(
            "authorization_token",
            last_access_key_id=m.group("akid"),
            last_security_token_present=bool(self.headers.get("x-amz-security-token")),
            last_duration=duration,
        )
        self.json(200, {"authorizationToken": token, "expiration": expiration})

    def get_repository_endpoint(self, q):
        st = self.server.state
        m = self.check_sigv4("codeartifact")
        if m is None:
            return
        domain, owner = q.get("domain", ""), q.get("domain-owner", "")
        repo, fmt = q.get("repository", ""), q.get("format", "")
        if domain in st.args.deny_domain:
            st.bump("denied")
            return self.aws_error(
                403,
                "AccessDeniedException",
                "User is not authorized to perform: codeartifact:GetRepositoryEndpoint",
            )
        if not domain or not repo or fmt not in ("npm", "pypi"):
            return self.aws_error(400, "ValidationException", "domain, repository and format npm|pypi required")
        st.bump("repository_endpoint", last_access_key_id=m.group("akid"))
        self.json(200, {"repositoryEndpoint": "%s/%s-%s/%s/%s/" % (st.base, domain, owner, fmt, repo)})

    def sts(self):
        st = self.server.state
        body = parse_qs(self.read_body().decode(), keep_blank_values=True)
        if self.check_sigv4("sts") is None:
            return
        action = body.get("Action", [""])[0]
        role = body.get("RoleArn", [""])[0]
        st.bump("sts_assume_role")
        ns = "https://sts.amazonaws.com/doc/2011-06-15/"
        if action != "AssumeRole":
            return self.send(400, "<ErrorResponse xmlns=\"%s\"><Error><Type>Sender</Type><Code>InvalidAction</Code>"
                             "<Message>only AssumeRole</Message></Error><RequestId>r</RequestId></ErrorResponse>" % ns,
                             ctype="text/xml")
        if role in st.args.deny_role:
            return self.send(
                403,
                "<ErrorResponse xmlns=\"%s\"><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                "<Message>not authorized to perform: sts:AssumeRole</Message></Error>"
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>" % ns,
                ctype="text/xml",
            )
        exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        session = body.get("RoleSessionName", ["s"])[0]
        self.send(
            200,
            "<AssumeRoleResponse xmlns=\"%s\"><AssumeRoleResult><Credentials>"
            "<AccessKeyId>ASIADOUBLE%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
            "<SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>"
            "<AssumedRoleUser><AssumedRoleId>AROADOUBLE:%s</AssumedRoleId><Arn>%s/%s</Arn></AssumedRoleUser>"
            "</AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>"
            % (ns, secrets.token_hex(5).upper(), secrets.token_urlsafe(30), secrets.token_urlsafe(60), exp,
               session, role.replace(":role/", ":assumed-role/").replace("arn:aws:iam", "arn:aws:sts"), session),
            ctype="text/xml",
        )

    # ---- data plane ----------------------------------------------------
    def stream_blob(self):
        """Half the body, then wait for POST /__double/release, then the rest:
        a client that sees the first half before releasing proves that
        whatever sits in between streams instead of buffering."""
        st = self.server.state
        chunk = b"x" * STREAM_CHUNK
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(2 * STREAM_CHUNK))
        self.end_headers()
        self.wfile.write(chunk)
        self.wfile.flush()
        st.release.wait(60)
        st.release.clear()
        self.wfile.write(chunk)
        self.wfile.flush()

    def token_ok(self):
        st = self.server.state
        auth = self.headers.get("authorization") or ""
        token, scheme = None, None
        if auth.startswith("Bearer "):
            token, scheme = auth[7:].strip(), "bearer"
        elif auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
                if user == "aws":
                    token, scheme = pw, "basic"
            except Exception:
                token = None
        with st.lock:
            exp = st.tokens.get(token) if token else None
        if exp is None or exp <= time.time():
            st.bump("data_unauthorized")
            self.send(401, '{"error":"unauthorized"}', headers={"www-authenticate": 'Basic realm="codeartifact"'})
            return False
        st.bump("data_ok", last_data_auth_scheme=scheme)
        return True

    def data_plane(self, do, fmt, repo, rest):
        st = self.server.state
        if not self.token_ok():
            return
        prefix = "%s/%s/%s/%s/" % (st.base, do, fmt, repo)
        rest = unquote(rest)
        if rest == "__stream/blob":
            return self.stream_blob()
        if fmt == "npm":
            tgz_path = "@acme/hello/-/hello-%s.tgz" % NPM_VERSION
            if rest == NPM_NAME:
                dist = {
                    "tarball": prefix + tgz_path,
                    "shasum": hashlib.sha1(st.tgz).hexdigest(),
                    "integrity": "sha512-" + base64.b64encode(hashlib.sha512(st.tgz).digest()).decode(),
                }
                doc = {
                    "name": NPM_NAME,
                    "dist-tags": {"latest": NPM_VERSION},
                    "versions": {NPM_VERSION: {"name": NPM_NAME, "version": NPM_VERSION, "main": "index.js",
                                               "dist": dist}},
                }
                return self.json(200, doc)
            if rest == tgz_path:
                return self.send(200, st.tgz, ctype="application/octet-stream")
        else:
            norm = re.sub(r"[-_.]+", "-", rest.strip("/").split("/")[-1]).lower() if rest.startswith("simple/") else None
            if rest.strip("/") == "simple":
                return self.send(200, '<!DOCTYPE html><html><body><a href="%ssimple/%s/">%s</a></body></html>'
                                 % (prefix, PY_NAME, PY_NAME), ctype="text/html")
            file_path = "simple/%s/%s/%s" % (PY_NAME, PY_VERSION, st.wheel_name)
            if rest == file_path:
                return self.send(200, st.wheel, ctype="application/octet-stream")
            if norm == PY_NAME and rest.count("/") <= 2:
                sha = hashlib.sha256(st.wheel).hexdigest()
                return self.send(
                    200,
                    '<!DOCTYPE html><html><head><title>Links for %s</title></head><body><h1>Links for %s</h1>'
                    '<a href="%s%s#sha256=%s">%s</a><br/></body></html>'
                    % (PY_NAME, PY_NAME, prefix, file_path, sha, st.wheel_name),
                    ctype="text/html",
                )
        self.send(404, '{"error":"not found"}')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0 = any free port)")
    p.add_argument("--advertise", default=None, help="host name used in repository endpoints (default: bind host)")
    p.add_argument("--token-lifetime", type=int, default=0, help="seconds; default: the requested duration")
    p.add_argument("--deny-domain", action="append", default=[])
    p.add_argument("--deny-role", action="append", default=[])
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    host, _, port = args.bind.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.state = State(args)
    bound = server.server_address[1]
    server.state.base = "http://%s:%d" % (args.advertise or host, bound)
    print(bound, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
