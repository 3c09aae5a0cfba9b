#!/usr/bin/env python3
"""Docker-Hub-style token server for ferry's test registry (stdlib only).

Issues RS256 JWTs the way Docker Hub's auth service does, for CNCF distribution's
`auth: token` (realm = http://HOST:PORT/token). The JWT header carries the signing
certificate in `x5c` (that certificate is the registry's `rootcertbundle`); there is
no `kid`, because distribution would read it as a libtrust key id. Signatures are
made by the `openssl` command-line tool (RSASSA-PKCS1-v1_5 with SHA-256 = RS256).

Endpoints
  GET  /token?service=S&scope=T:NAME:ACTIONS[&scope=...]   Basic auth optional
  POST /token   (OAuth2 form: grant_type=password, username, password, scope, service)
  POST /control/ttl?seconds=N   expires_in / exp of later tokens (default 300)
  GET  /control/ttl             current ttl
  GET  /control/stats           JSON counts of token requests:
                                {"requests": N, "anonymous": N, "authenticated": N,
                                 "denied": N, "scopes": {"repository:x:pull": N, ...}}
                                (scopes counts every requested scope, denied ones too;
                                a request without scope counts as "(none)")
  POST /control/reset           zero the counts
  GET  /health                  "ok"

Policy
  anonymous: `pull` on every repository except those under `private/`
  USER with the right password: `pull,push` (and `*`) on every repository, plus
      `registry:catalog:*`
  a Basic auth header with a wrong user or password: 401
  Like Docker Hub, a token lists every requested resource with the granted subset of
  its actions (possibly empty); the registry then answers 401 insufficient_scope.

Note: distribution 2.8 allows 60 s of clock-skew leeway on exp/nbf, so a token is
refused by the registry only about a minute after its `exp`.

Requests are logged to stderr (never the password, never a token).
"""

import argparse
import base64
import binascii
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pem_to_der_b64(pem_text: str) -> str:
    """Standard (not url) base64 of the first certificate's DER, as x5c wants."""
    lines = []
    inside = False
    for line in pem_text.splitlines():
        if line.startswith("-----BEGIN CERTIFICATE-----"):
            inside = True
            continue
        if line.startswith("-----END CERTIFICATE-----"):
            break
        if inside:
            lines.append(line.strip())
    der = base64.b64decode("".join(lines))
    return base64.b64encode(der).decode("ascii")


class State:
    def __init__(self, args):
        self.args = args
        self.ttl = args.ttl
        self.lock = threading.Lock()
        self.reset()
        with open(args.cert) as f:
            self.x5c = [pem_to_der_b64(f.read())]
        with open(args.password_file) as f:
            self.password = f.read().strip("\r\n")

    def reset(self):
        self.stats = {
            "requests": 0,        # token requests (GET and POST /token)
            "anonymous": 0,
            "authenticated": 0,
            "denied": 0,          # 401 for bad credentials
            "scopes": {},         # scope string as requested -> count
        }

    def count(self, scopes, who):
        with self.lock:
            self.stats["requests"] += 1
            self.stats[who] += 1
            if not scopes:
                scopes = ["(none)"]
            for s in scopes:
                self.stats["scopes"][s] = self.stats["scopes"].get(s, 0) + 1

    def sign(self, signing_input: bytes) -> bytes:
        proc = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.args.key],
            input=signing_input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            check=False)
        if proc.returncode != 0:
            raise RuntimeError("openssl dgst -sign failed: "
                               + proc.stderr.decode(errors="replace"))
        return proc.stdout


def parse_scope(scope: str):
    """'repository:ferry/busybox:pull,push' -> ('repository', 'ferry/busybox', ['pull','push']).

    The name may itself contain ':' (e.g. 'repository:host:5000/x:pull'), so the type
    is before the first colon and the actions after the last one."""
    first = scope.find(":")
    last = scope.rfind(":")
    if first < 0 or last == first:
        return None
    rtype = scope[:first]
    # Docker sends e.g. 'repository(plugin):name:pull'; keep the bare type.
    if "(" in rtype:
        rtype = rtype[:rtype.index("(")]
    name = scope[first + 1:last]
    actions = [a for a in scope[last + 1:].split(",") if a]
    return rtype, name, actions


def grant(user, rtype, name, actions):
    if user is not None:
        if rtype == "repository":
            allowed = {"pull", "push", "delete", "*"}
        elif rtype == "registry" and name == "catalog":
            allowed = {"*"}
        else:
            allowed = set()
    else:
        if rtype == "repository" and not (name == "private" or name.startswith("private/")):
            allowed = {"pull"}
        else:
            allowed = set()
    return [a for a in actions if a in allowed]


class Handler(BaseHTTPRequestHandler):
    server_version = "ferry-token-server/1"
    protocol_version = "HTTP/1.1"

    # --- plumbing -------------------------------------------------------
    def log_message(self, fmt, *args):  # silence the default access log
        pass

    def log(self, status, note=""):
        parts = urlsplit(self.path)
        # the query carries service/scope/account, never a password
        sys.stderr.write("%s %s %s %s?%s %d %s\n" % (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            self.client_address[0], self.command, parts.path, parts.query, status, note))
        sys.stderr.flush()

    def reply(self, status, obj, headers=None, note=""):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log(status, note)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    # --- auth -----------------------------------------------------------
    def check_credentials(self, user, password):
        st = self.server.state
        ok_user = hmac.compare_digest(user.encode(), st.args.user.encode())
        ok_pw = hmac.compare_digest(password.encode(), st.password.encode())
        return ok_user and ok_pw

    def basic_user(self):
        """Returns (user or None, error or None)."""
        h = self.headers.get("Authorization")
        if not h:
            return None, None
        kind, _, value = h.partition(" ")
        if kind.lower() != "basic":
            return None, "unsupported authorization scheme"
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, "malformed basic credentials"
        user, sep, password = raw.partition(":")
        if not sep:
            return None, "malformed basic credentials"
        if not self.check_credentials(user, password):
            return None, "invalid username or password for %r" % user
        return user, None

    # --- token ----------------------------------------------------------
    def issue(self, user, scopes, service, oauth):
        st = self.server.state
        who = "authenticated" if user is not None else "anonymous"
        st.count(scopes, who)
        access = []
        for s in scopes:
            parsed = parse_scope(s)
            if parsed is None:
                continue
            rtype, name, actions = parsed
            granted = grant(user, rtype, name, actions)
            # Docker Hub lists every requested resource, with the granted subset
            # (possibly empty) of the actions.
            existing = [a for a in access if a["type"] == rtype and a["name"] == name]
            if existing:
                for a in granted:
                    if a not in existing[0]["actions"]:
                        existing[0]["actions"].append(a)
            else:
                access.append({"type": rtype, "name": name, "actions": granted})
        now = int(time.time())
        ttl = st.ttl
        claims = {
            "iss": st.args.issuer,
            "sub": user or "",
            "aud": service or st.args.service,
            "exp": now + ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"alg": "RS256", "typ": "JWT", "x5c": st.x5c}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        try:
            sig = st.sign(signing_input)
        except RuntimeError as e:
            self.reply(500, {"errors": [{"code": "UNKNOWN", "message": str(e)}]})
            return
        token = signing_input.decode() + "." + b64url(sig)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        body = {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}
        if oauth:
            body["scope"] = " ".join(scopes)
        note = "user=%s granted=%s" % (
            user or "-",
            ";".join("%s:%s:%s" % (a["type"], a["name"], ",".join(a["actions"])) for a in access))
        self.reply(200, body, note=note)

    def deny(self, msg, scopes=()):
        self.server.state.count(list(scopes), "denied")
        self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": msg}],
                         "details": msg},
                   headers={"WWW-Authenticate": 'Basic realm="ferry-token-server"'},
                   note="denied: " + msg)

    # --- verbs ----------------------------------------------------------
    def do_GET(self):
        parts = urlsplit(self.path)
        q = parse_qs(parts.query, keep_blank_values=True)
        st = self.server.state
        if parts.path == "/token":
            scopes = []
            for s in q.get("scope", []):
                scopes.extend(x for x in s.split(" ") if x)
            user, err = self.basic_user()
            if err:
                self.deny(err, scopes)
                return
            self.issue(user, scopes, (q.get("service") or [None])[0], oauth=False)
        elif parts.path == "/control/stats":
            with st.lock:
                self.reply(200, json.loads(json.dumps(st.stats)))
        elif parts.path == "/control/ttl":
            self.reply(200, {"seconds": st.ttl})
        elif parts.path in ("/", "/health"):
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": parts.path}]})

    do_HEAD = do_GET

    def do_POST(self):
        parts = urlsplit(self.path)
        q = parse_qs(parts.query, keep_blank_values=True)
        st = self.server.state
        body = self.read_body()
        if parts.path == "/token":
            form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
            grant_type = (form.get("grant_type") or [""])[0]
            scopes = []
            for s in form.get("scope", []):
                scopes.extend(x for x in s.split(" ") if x)
            service = (form.get("service") or [None])[0]
            if grant_type == "password":
                user = (form.get("username") or [""])[0]
                password = (form.get("password") or [""])[0]
                if not self.check_credentials(user, password):
                    self.deny("invalid username or password for %r" % user, scopes)
                    return
                self.issue(user, scopes, service, oauth=True)
            else:
                # refresh tokens are not supported: clients fall back to GET
                self.reply(400, {"error": "unsupported_grant_type",
                                 "error_description": "only grant_type=password"},
                           note="grant_type=%s" % grant_type)
        elif parts.path == "/control/ttl":
            try:
                seconds = int((q.get("seconds") or [""])[0])
                if seconds <= 0:
                    raise ValueError
            except ValueError:
                self.reply(400, {"error": "need ?seconds=N with N > 0"})
                return
            st.ttl = seconds
            self.reply(200, {"seconds": st.ttl})
        elif parts.path == "/control/reset":
            with st.lock:
                st.reset()
            self.reply(200, {"status": "reset"})
        else:
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": parts.path}]})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:5002")
    p.add_argument("--key", required=True, help="PEM RSA private key")
    p.add_argument("--cert", required=True, help="PEM certificate of that key (sent as x5c)")
    p.add_argument("--issuer", default="ferry-token-server")
    p.add_argument("--service", default="ferry-token-registry")
    p.add_argument("--user", default="ferry")
    p.add_argument("--password-file", required=True)
    p.add_argument("--ttl", type=int, default=300)
    args = p.parse_args()
    host, _, port = args.listen.rpartition(":")
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    sys.stderr.write("ferry token server on http://%s issuer=%s service=%s pid=%d\n"
                     % (args.listen, args.issuer, args.service, os.getpid()))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
