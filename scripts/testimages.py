#!/usr/bin/env python3
"""Build ferry's test images deterministically and push them to a registry.

Stdlib only. Everything is reproducible: tar entries are sorted, mtimes fixed, owners
numeric, gzip headers carry mtime 0, pseudo-random data comes from fixed seeds, so the
same host busybox-static binary gives the same digests on every run and every machine.
Layer blobs are cached under target/testimages/ (keyed by a recipe hash), so a rerun
only recomputes the small configs and manifests.

  python3 scripts/testimages.py build [--out FILE] [--no-cache]
  python3 scripts/testimages.py push --registry HOST:PORT [--user U --password-file F]
          [--ca CA.pem | --tls] [--only REPO[,REPO...]] [--out FILE]

`push` talks to the registry HTTP API directly: HEAD blob (skip existing), POST upload +
PUT ?digest=, PUT manifest with its Content-Type (HEAD first, skip if the tag already
points at the same digest). It answers Basic and Bearer (token, scope pull,push)
challenges. With --ca (or --tls) it uses https and trusts only that CA.

The images (repository: tags):
  ferry/busybox     docker, oci, latest (= docker)
  private/busybox   same manifests as ferry/busybox (for auth tests)
  ferry/multilayer  docker, oci   whiteout, opaque dir, USER app, WorkingDir, Env
  ferry/large       docker, oci   busybox + 4 x 128 MiB incompressible layers (gzip -1)
  ferry/many        docker, oci   busybox + 40 small layers
  ferry/multiarch   docker (Docker list), oci (OCI index), oci-nested (index -> index)
  ferry/duplayer    docker, oci   the same layer twice
  ferry/zstd        oci           busybox layer compressed with zstd
  ferry/update      1, 2 (oci)    busybox + a 4 MiB base layer + an app layer; 2 changes only
                                  the app layer (what a weekly update looks like: deltas)
  ferry/service     docker, oci   busybox httpd on 8080: EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK

The output (images.json) maps "repo:tag" to the facts tests need; see facts_*().
"""

import argparse
import base64
import hashlib
import http.client
import io
import json
import os
import random
import re
import shutil
import ssl
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "target", "testimages")
BLOBS = os.path.join(CACHE, "blobs", "sha256")
LAYER_META = os.path.join(CACHE, "layers")

# Bump when a recipe changes so cached layers are rebuilt.
GENERATOR_VERSION = "ferry-testimages-1"

MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_BIN = "/bin/busybox"

MIB = 1024 * 1024
LARGE_LAYER_SIZE = 128 * MIB
LARGE_LAYERS = 4
MANY_LAYERS = 40

# media types
D_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
D_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
D_CONFIG = "application/vnd.docker.container.image.v1+json"
D_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
O_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
O_INDEX = "application/vnd.oci.image.index.v1+json"
O_CONFIG = "application/vnd.oci.image.config.v1+json"
O_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
O_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
INTOTO = "application/vnd.in-toto+json"
ALL_MANIFEST_TYPES = [D_MANIFEST, D_LIST, O_MANIFEST, O_INDEX]


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def sha256_bytes(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def blob_path(digest):
    return os.path.join(BLOBS, digest.split(":", 1)[1])


def store_blob(data):
    """Stores small bytes (configs, manifests) in the blob cache; returns (digest, size)."""
    d = sha256_bytes(data)
    p = blob_path(d)
    if not (os.path.exists(p) and os.path.getsize(p) == len(data)):
        os.makedirs(BLOBS, exist_ok=True)
        tmp = "%s.tmp%d" % (p, os.getpid())
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    return d, len(data)


# --------------------------------------------------------------------------------------
# Deterministic tar + gzip


class Entry:
    """One tar entry. kind: 'dir', 'file', 'symlink'."""

    def __init__(self, path, kind, mode, data=b"", link="", uid=0, gid=0):
        self.path, self.kind, self.mode = path.strip("/"), kind, mode
        self.data, self.link, self.uid, self.gid = data, link, uid, gid


def D(path, mode=0o755, uid=0, gid=0):
    return Entry(path, "dir", mode, uid=uid, gid=gid)


def F(path, data, mode=0o644, uid=0, gid=0):
    if isinstance(data, str):
        data = data.encode()
    return Entry(path, "file", mode, data=data, uid=uid, gid=gid)


def L(path, target):
    return Entry(path, "symlink", 0o777, link=target)


class HashingSink:
    """Counts and hashes what is written, passes it on to `out` (may be None)."""

    def __init__(self, out=None):
        self.out, self.h, self.n = out, hashlib.sha256(), 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.out is not None:
            self.out.write(b)
        return len(b)

    def tell(self):
        return self.n

    def flush(self):
        pass


class GzipWriter:
    """Deterministic gzip member: mtime 0, no name, OS 255 (unknown), raw deflate body."""

    def __init__(self, out, level):
        self.out = out
        self.c = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
        self.crc, self.size = 0, 0
        xfl = 2 if level == 9 else (4 if level == 1 else 0)
        out.write(b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + bytes([xfl, 255]))

    def write(self, b):
        self.crc = zlib.crc32(b, self.crc)
        self.size += len(b)
        self.out.write(self.c.compress(b))
        return len(b)

    def close(self):
        self.out.write(self.c.flush())
        self.out.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))


def write_tar(entries, sink):
    entries = sorted(entries, key=lambda e: e.path.encode())
    seen = set()
    tf = tarfile.TarFile(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT)
    for e in entries:
        if e.path in seen:
            raise ValueError("duplicate tar entry " + e.path)
        seen.add(e.path)
        ti = tarfile.TarInfo(e.path)
        ti.mtime, ti.mode, ti.uid, ti.gid = MTIME, e.mode, e.uid, e.gid
        ti.uname = ti.gname = ""
        if e.kind == "dir":
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
        elif e.kind == "symlink":
            ti.type, ti.linkname = tarfile.SYMTYPE, e.link
            tf.addfile(ti)
        else:
            ti.type, ti.size = tarfile.REGTYPE, len(e.data)
            tf.addfile(ti, io.BytesIO(e.data))
    tf.close()


def recipe_key(*parts):
    h = hashlib.sha256()
    for p in (GENERATOR_VERSION,) + parts:
        h.update(repr(p).encode() + b"\0")
    return h.hexdigest()


class Layer:
    def __init__(self, name, digest, diff_id, size, compression):
        self.name, self.digest, self.diff_id = name, digest, diff_id
        self.size, self.compression = size, compression


def build_layer(name, key, entries_fn, compression="gzip", level=6, no_cache=False):
    """Returns a cached Layer or builds it. entries_fn() -> list of Entry."""
    meta_p = os.path.join(LAYER_META, name + ".json")
    if not no_cache and os.path.exists(meta_p):
        with open(meta_p) as f:
            m = json.load(f)
        p = blob_path(m["digest"])
        if m.get("key") == key and os.path.exists(p) and os.path.getsize(p) == m["size"]:
            return Layer(name, m["digest"], m["diff_id"], m["size"], m["compression"])
    t0 = time.time()
    os.makedirs(BLOBS, exist_ok=True)
    os.makedirs(LAYER_META, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=BLOBS, prefix=".layer-")
    os.close(fd)
    try:
        entries = entries_fn()
        if compression == "gzip":
            with open(tmp, "wb") as f:
                comp_sink = HashingSink(f)
                gz = GzipWriter(comp_sink, level)
                raw = HashingSink(gz)
                write_tar(entries, raw)
                gz.close()
            digest, size = "sha256:" + comp_sink.h.hexdigest(), comp_sink.n
        elif compression == "zstd":
            fd2, rawtmp = tempfile.mkstemp(dir=BLOBS, prefix=".raw-")
            os.close(fd2)
            try:
                with open(rawtmp, "wb") as f:
                    raw = HashingSink(f)
                    write_tar(entries, raw)
                # from a file, so the frame header carries the content size
                # --single-thread: the same frames whatever the CPU count
                subprocess.run(["zstd", "-q", "-f", "-%d" % level, "--single-thread",
                                "--no-progress", "-o", tmp, rawtmp], check=True)
            finally:
                os.unlink(rawtmp)
            h = hashlib.sha256()
            with open(tmp, "rb") as f:
                for chunk in iter(lambda: f.read(MIB), b""):
                    h.update(chunk)
            digest, size = "sha256:" + h.hexdigest(), os.path.getsize(tmp)
        else:
            raise ValueError(compression)
        diff_id = "sha256:" + raw.h.hexdigest()
        os.replace(tmp, blob_path(digest))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(meta_p + ".tmp", "w") as f:
        json.dump({"key": key, "digest": digest, "diff_id": diff_id, "size": size,
                   "compression": compression}, f, indent=1)
    os.replace(meta_p + ".tmp", meta_p)
    log("built layer %-22s %s %10d bytes in %.1fs" % (name, digest[:19], size, time.time() - t0))
    return Layer(name, digest, diff_id, size, compression)


def build_blob_layer(name, data):
    """A non-tar 'layer' (in-toto statement): digest == diff_id."""
    d, n = store_blob(data)
    return Layer(name, d, d, n, "none")


# --------------------------------------------------------------------------------------
# Layer recipes


def busybox_info():
    with open(BUSYBOX_BIN, "rb") as f:
        data = f.read()
    out = subprocess.run([BUSYBOX_BIN, "--list"], check=True, stdout=subprocess.PIPE).stdout
    applets = sorted({a for a in out.decode().split() if a and a != "busybox" and "/" not in a})
    return data, applets


PASSWD_BASE = ("root:x:0:0:root:/root:/bin/sh\n"
               "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP_BASE = "root:x:0:\nnobody:x:65534:\n"


def busybox_entries(bb_data, applets):
    def fn():
        es = [D("bin"), D("dev"), D("etc"), D("home"), D("proc"), D("root", 0o700),
              D("sys"), D("tmp", 0o1777), D("var"),
              F("bin/busybox", bb_data, 0o755),
              F("etc/passwd", PASSWD_BASE), F("etc/group", GROUP_BASE)]
        es += [L("bin/" + a, "busybox") for a in applets]
        return es
    return fn


def multilayer2_entries():
    return [
        D("app", uid=1000, gid=1000),
        F("app/keep.txt", "keep\n", uid=1000, gid=1000),
        F("app/delete-me.txt", "delete me\n", uid=1000, gid=1000),
        D("data"), D("data/old"),
        F("data/old/a", "a\n"), F("data/old/b", "b\n"),
        D("etc"),
        F("etc/passwd", PASSWD_BASE + "app:x:1000:1000:app:/home/app:/bin/sh\n"),
        F("etc/group", GROUP_BASE + "app:x:1000:\nextra:x:1001:app\n"),
        D("home"), D("home/app", uid=1000, gid=1000),
    ]


def service_entries():
    return [
        D("srv"), D("srv/www", mode=0o750, uid=1000, gid=1000),
        F("srv/www/index.html", "served from the image\n", uid=1000, gid=1000),
    ]


def multilayer3_entries():
    return [
        D("app", uid=1000, gid=1000),
        F("app/.wh.delete-me.txt", b""),
        D("data"), D("data/old"),
        F("data/old/.wh..wh..opq", b""),
        F("data/old/c", "c\n"),
    ]


def large_entries(n):
    def fn():
        data = random.Random(1000 + n).randbytes(LARGE_LAYER_SIZE)
        return [D("data"), F("data/%d.bin" % n, data)]
    return fn


def many_entries(n):
    return lambda: [D("layers"), F("layers/%d" % n, "%d\n" % n)]


def dup_entries():
    return [D("dup"), F("dup/file", "duplicate\n")]


def update_base_entries():
    data = random.Random(4242).randbytes(4 * MIB)
    return [D("base"), F("base/runtime.bin", data)]


def update_app_entries(version):
    return lambda: [D("app"), F("app/version", "%d\n" % version)]


def platform_entries(plat):
    return lambda: [F("platform", plat + "\n")]


# --------------------------------------------------------------------------------------
# Configs, manifests, indexes


class Built:
    """A manifest or index ready to push."""

    def __init__(self, data, media_type, blobs=(), children=(), facts=None):
        self.data = data
        self.media_type = media_type
        self.digest, self.size = store_blob(data)
        self.blobs = list(blobs)          # [(digest, size)] referenced blobs
        self.children = list(children)   # [Built] manifests referenced by an index
        self.facts = facts or {}


def dumps(obj, flavour):
    if flavour == "docker":
        return json.dumps(obj, indent=3).encode()   # as `docker push` writes them
    return json.dumps(obj, separators=(",", ":")).encode()


def make_config(layers, arch="amd64", variant=None, os_="linux", cmd=None, env=None,
                user=None, workdir=None, history_names=None, labels=None, extra=None):
    cfg = {}
    if user:
        cfg["User"] = user
    cfg["Env"] = env or [PATH_ENV]
    if cmd:
        cfg["Cmd"] = cmd
    if workdir:
        cfg["WorkingDir"] = workdir
    if labels:
        cfg["Labels"] = labels
    cfg.update(extra or {})
    history = []
    for i, l in enumerate(layers):
        name = (history_names or {}).get(i) or l.name
        history.append({"created": CREATED, "created_by": "ferry testimages: layer " + name,
                        "comment": "ferry test image"})
    if cmd:
        history.append({"created": CREATED,
                        "created_by": "/bin/sh -c #(nop)  CMD " + json.dumps(cmd),
                        "empty_layer": True})
    conf = {"architecture": arch}
    if variant:
        conf["variant"] = variant
    conf.update({"config": cfg, "created": CREATED, "history": history, "os": os_,
                 "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]}})
    return json.dumps(conf, separators=(",", ":")).encode()


def layer_media_type(layer, flavour):
    if layer.compression == "zstd":
        return O_LAYER_ZSTD
    if layer.compression == "none":
        return INTOTO
    return D_LAYER if flavour == "docker" else O_LAYER


def descriptor(media_type, digest, size, flavour, platform=None, annotations=None):
    if flavour == "docker":
        d = {"mediaType": media_type, "size": size, "digest": digest}
    else:
        d = {"mediaType": media_type, "digest": digest, "size": size}
    if platform:
        d["platform"] = platform
    if annotations:
        d["annotations"] = annotations
    return d


def platform_string(p):
    s = p["os"] + "/" + p["architecture"]
    if p.get("variant"):
        s += "/" + p["variant"]
    return s


def make_manifest(flavour, config_bytes, layers, expect_stdout=None, platform=None,
                  layer_annotations=None, extra_facts=None):
    cdig, csize = store_blob(config_bytes)
    m = {"schemaVersion": 2,
         "mediaType": D_MANIFEST if flavour == "docker" else O_MANIFEST,
         "config": descriptor(D_CONFIG if flavour == "docker" else O_CONFIG, cdig, csize,
                              flavour),
         "layers": [descriptor(layer_media_type(l, flavour), l.digest, l.size, flavour,
                               annotations=(layer_annotations or {}).get(i))
                    for i, l in enumerate(layers)]}
    data = dumps(m, flavour)
    cfg = json.loads(config_bytes)
    uniq = {}
    for l in layers:
        uniq[l.digest] = l.size
    facts = {
        "manifest_media_type": m["mediaType"],
        "manifest_size": len(data),
        "config_digest": cdig,
        "config_media_type": m["config"]["mediaType"],
        "config_size": csize,
        "layer_digests": [l.digest for l in layers],
        "layer_media_types": [d["mediaType"] for d in m["layers"]],
        "layer_sizes": [l.size for l in layers],
        "diff_ids": [l.diff_id for l in layers],
        # bytes a client downloads besides the manifest: config + each distinct layer once
        "total_size": csize + sum(uniq.values()),
        "platform": platform or platform_string(cfg),
        "cmd": cfg["config"].get("Cmd"),
        "env": cfg["config"].get("Env"),
        "user": cfg["config"].get("User", ""),
        "workdir": cfg["config"].get("WorkingDir", ""),
    }
    if expect_stdout is not None:
        facts["expect_stdout"] = expect_stdout
    facts.update(extra_facts or {})
    blobs = [(cdig, csize)] + [(l.digest, l.size) for l in layers]
    b = Built(data, m["mediaType"], blobs=blobs, facts=facts)
    b.facts["manifest_digest"] = b.digest
    return b


def make_index(flavour, entries):
    """entries: [(Built, platform dict or None, annotations or None)]"""
    mt = D_LIST if flavour == "docker" else O_INDEX
    m = {"schemaVersion": 2, "mediaType": mt,
         "manifests": [descriptor(b.media_type, b.digest, b.size, flavour, platform=p,
                                  annotations=a) for b, p, a in entries]}
    data = dumps(m, flavour)
    b = Built(data, mt, children=[e[0] for e in entries])
    b.facts = {"manifest_digest": b.digest, "manifest_media_type": mt,
               "manifest_size": len(data)}
    return b


def platform_facts(b, plat):
    f = {"platform": platform_string(plat) if plat.get("os") != "unknown" else "unknown/unknown",
         "manifest_digest": b.digest, "manifest_media_type": b.media_type}
    for k in ("config_digest", "layer_digests", "diff_ids", "total_size", "expect_stdout"):
        if k in b.facts:
            f[k] = b.facts[k]
    return f


def sh(script):
    return ["/bin/sh", "-c", script]


def build_all(no_cache=False):
    """Returns {repo: {tag: Built}} (tags may share a Built)."""
    bb_data, applets = busybox_info()
    bb_sha = hashlib.sha256(bb_data).hexdigest()
    t0 = time.time()

    busybox = build_layer("busybox", recipe_key("busybox", bb_sha, applets),
                          busybox_entries(bb_data, applets), no_cache=no_cache)
    busybox_zstd = build_layer("busybox-zstd", recipe_key("busybox-zstd", bb_sha, applets, 3, "single-thread"),
                               busybox_entries(bb_data, applets), compression="zstd", level=3,
                               no_cache=no_cache)
    ml2 = build_layer("multilayer-2", recipe_key("multilayer-2"), multilayer2_entries,
                      no_cache=no_cache)
    ml3 = build_layer("multilayer-3", recipe_key("multilayer-3"), multilayer3_entries,
                      no_cache=no_cache)
    large = [build_layer("large-%d" % n, recipe_key("large", n, LARGE_LAYER_SIZE),
                         large_entries(n), level=1, no_cache=no_cache)
             for n in range(1, LARGE_LAYERS + 1)]
    many = [build_layer("many-%d" % n, recipe_key("many", n), many_entries(n), no_cache=no_cache)
            for n in range(1, MANY_LAYERS + 1)]
    dup = build_layer("dup", recipe_key("dup"), dup_entries, no_cache=no_cache)
    plats = {
        "amd64": {"architecture": "amd64", "os": "linux"},
        "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "arm": {"architecture": "arm", "os": "linux", "variant": "v7"},
    }
    plat_layers = {k: build_layer("platform-" + k, recipe_key("platform", platform_string(p)),
                                  platform_entries(platform_string(p)), no_cache=no_cache)
                   for k, p in plats.items()}

    repos = {}

    def both(repo, layers, cmd, expect, **kw):
        cfg = make_config(layers, cmd=cmd, **kw)
        repos[repo] = {fl: make_manifest(fl, cfg, layers, expect) for fl in ("docker", "oci")}

    # ferry/busybox (+ latest, + private/busybox copy)
    both("ferry/busybox", [busybox], sh("echo hello from ferry busybox"),
         "hello from ferry busybox")
    repos["ferry/busybox"]["latest"] = repos["ferry/busybox"]["docker"]
    repos["private/busybox"] = dict(repos["ferry/busybox"])

    # ferry/multilayer
    both("ferry/multilayer", [busybox, ml2, ml3],
         sh('echo "multilayer user=$(id -un) groups=$(id -G | tr \' \' ,) cwd=$(pwd)'
            ' greeting=$GREETING files=$(ls -A /app | xargs | tr \' \' ,)'
            ' old=$(ls -A /data/old | xargs | tr \' \' ,)"'),
         "multilayer user=app groups=1000,1001 cwd=/app greeting=hello files=keep.txt old=c",
         env=[PATH_ENV, "GREETING=hello"], user="app", workdir="/app")

    # ferry/large
    both("ferry/large", [busybox] + large,
         sh('echo "large files=$(ls /data | xargs | tr \' \' ,)"'),
         "large files=" + ",".join("%d.bin" % n for n in range(1, LARGE_LAYERS + 1)))

    # ferry/many
    both("ferry/many", [busybox] + many,
         sh('set -- /layers/*; echo "many layers=$#"'), "many layers=%d" % MANY_LAYERS)

    # ferry/duplayer
    both("ferry/duplayer", [busybox, dup, dup],
         sh('echo "duplayer $(cat /dup/file)"'), "duplayer duplicate")

    # ferry/service: what a service image declares, for ferry run's services tests
    svc = build_layer("service", recipe_key("service"), service_entries, no_cache=no_cache)
    second = 1000 * 1000 * 1000
    both("ferry/service", [busybox, svc], ["httpd", "-f", "-p", "8080", "-h", "/srv/www"],
         None, extra={
             "ExposedPorts": {"8080/tcp": {}},
             "Volumes": {"/srv/www": {}},
             "StopSignal": "SIGINT",
             "Healthcheck": {
                 "Test": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1"],
                 "Interval": 1 * second, "Timeout": 5 * second, "Retries": 2,
             },
         })

    # ferry/zstd (oci only)
    zcfg = make_config([busybox_zstd], cmd=sh("echo hello from ferry zstd"))
    repos["ferry/zstd"] = {"oci": make_manifest("oci", zcfg, [busybox_zstd],
                                                "hello from ferry zstd")}

    # ferry/update: 1 and 2 share everything but the top layer
    ubase = build_layer("update-base", recipe_key("update-base", 4 * MIB), update_base_entries,
                        level=1, no_cache=no_cache)
    repos["ferry/update"] = {}
    for v in (1, 2):
        app = build_layer("update-app-%d" % v, recipe_key("update-app", v),
                          update_app_entries(v), no_cache=no_cache)
        layers = [busybox, ubase, app]
        cfg = make_config(layers, cmd=sh('echo "update version=$(cat /app/version)"'))
        repos["ferry/update"][str(v)] = make_manifest("oci", cfg, layers,
                                                      "update version=%d" % v)

    # ferry/multiarch
    ma = {}
    for fl in ("docker", "oci"):
        cmd = sh('echo "multiarch $(cat /platform)"')
        plat_manifests = []
        for k, p in plats.items():
            layers = ([busybox] if k == "amd64" else []) + [plat_layers[k]]
            cfg = make_config(layers, arch=p["architecture"], variant=p.get("variant"),
                              cmd=cmd)
            expect = "multiarch linux/amd64" if k == "amd64" else None
            plat_manifests.append((make_manifest(fl, cfg, layers, expect), p))
        amd64 = plat_manifests[0][0]
        statement = {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "pkg:docker/ferry/multiarch@%s?platform=linux%%2Famd64" % fl,
                         "digest": {"sha256": amd64.digest.split(":", 1)[1]}}],
            "predicate": {"builder": {"id": "ferry-testimages"},
                          "buildType": "https://ferry.invalid/testimages",
                          "metadata": {"buildStartedOn": CREATED, "reproducible": True}},
        }
        intoto = build_blob_layer("intoto-" + fl,
                                  json.dumps(statement, separators=(",", ":")).encode())
        acfg = json.dumps({"architecture": "unknown", "os": "unknown", "config": {},
                           "rootfs": {"type": "layers", "diff_ids": [intoto.diff_id]}},
                          separators=(",", ":")).encode()
        att = make_manifest(fl, acfg, [intoto], platform="unknown/unknown",
                            layer_annotations={0: {"in-toto.io/predicate-type":
                                                   "https://slsa.dev/provenance/v0.2"}})
        att_annotations = {"vnd.docker.reference.digest": amd64.digest,
                           "vnd.docker.reference.type": "attestation-manifest"}
        entries = [(b, p, None) for b, p in plat_manifests]
        entries.append((att, {"architecture": "unknown", "os": "unknown"}, att_annotations))
        idx = make_index(fl, entries)
        idx.facts["platforms"] = [platform_facts(b, p) for b, p in plat_manifests]
        af = platform_facts(att, {"architecture": "unknown", "os": "unknown"})
        af["attestation_for"] = amd64.digest
        idx.facts["platforms"].append(af)
        idx.facts["default_platform"] = "linux/amd64"
        idx.facts["expect_stdout"] = "multiarch linux/amd64"
        ma[fl] = idx
        if fl == "oci":
            inner = make_index("oci", [(b, p, None) for b, p in plat_manifests])
            top = make_index("oci", [(inner, None, None)])
            top.facts["nested_index_digest"] = inner.digest
            top.facts["platforms"] = [dict(platform_facts(b, p), via_index=inner.digest)
                                      for b, p in plat_manifests]
            top.facts["default_platform"] = "linux/amd64"
            top.facts["expect_stdout"] = "multiarch linux/amd64"
            ma["oci-nested"] = top
    repos["ferry/multiarch"] = ma

    log("test images ready in %.1fs (cache %s)" % (time.time() - t0, os.path.relpath(CACHE, ROOT)))
    return repos


def facts_json(repos):
    out = {}
    for repo in sorted(repos):
        for tag in sorted(repos[repo]):
            b = repos[repo][tag]
            f = {"repository": repo, "tag": tag}
            f.update(b.facts)
            out["%s:%s" % (repo, tag)] = f
    return out


def write_facts(repos, out_path):
    data = json.dumps(facts_json(repos), indent=2, sort_keys=True) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = "%s.tmp%d" % (out_path, os.getpid())
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, out_path)


# --------------------------------------------------------------------------------------
# Registry client


class PushError(Exception):
    pass


def parse_challenge(h):
    scheme, _, rest = (h or "").strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class Registry:
    def __init__(self, host, scheme, ca=None, user=None, password=None, insecure=False):
        self.host, self.scheme = host, scheme
        self.user, self.password = user, password
        self.ctx = None
        if scheme == "https":
            if insecure:
                self.ctx = ssl._create_unverified_context()
            else:
                self.ctx = ssl.create_default_context(cafile=ca) if ca else \
                    ssl.create_default_context()
        self.conn = None
        self.auth = {}   # repo -> Authorization header value
        self.stats = {"blobs_uploaded": 0, "blobs_skipped": 0, "bytes_uploaded": 0,
                      "manifests_put": 0, "manifests_skipped": 0, "token_requests": 0}

    def connect(self):
        if self.conn is None:
            if self.scheme == "https":
                self.conn = http.client.HTTPSConnection(self.host, timeout=600, context=self.ctx)
            else:
                self.conn = http.client.HTTPConnection(self.host, timeout=600)
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def basic(self):
        if self.user is None:
            raise PushError("%s wants credentials: pass --user and --password-file" % self.host)
        raw = ("%s:%s" % (self.user, self.password)).encode()
        return "Basic " + base64.b64encode(raw).decode()

    def authenticate(self, challenge, repo):
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            self.auth[repo] = self.basic()
            return
        if scheme != "bearer" or "realm" not in params:
            raise PushError("unsupported auth challenge from %s: %r" % (self.host, challenge))
        scopes = ["repository:%s:pull,push" % repo] if repo else []
        if params.get("scope") and params["scope"] not in scopes and not repo:
            scopes.append(params["scope"])
        q = [("service", params.get("service", ""))] + [("scope", s) for s in scopes]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + \
            urllib.parse.urlencode(q)
        req = urllib.request.Request(url)
        if self.user is not None:
            req.add_header("Authorization", self.basic())
        self.stats["token_requests"] += 1
        try:
            with urllib.request.urlopen(req, timeout=60, context=self.ctx
                                        if url.startswith("https:") else None) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise PushError("token request to %s failed: %s %s" % (
                params["realm"], e.code, e.read()[:200]))
        token = body.get("token") or body.get("access_token")
        if not token:
            raise PushError("token server answered without a token")
        self.auth[repo] = "Bearer " + token

    def request(self, method, path, repo, headers=None, body=None, ok=(200,), auth=True):
        """body: bytes or a path to a file. Returns (response, data)."""
        for attempt in range(4):
            hdrs = dict(headers or {})
            if repo in self.auth:
                hdrs["Authorization"] = self.auth[repo]
            f = None
            try:
                if isinstance(body, str):
                    f = open(body, "rb")
                    hdrs["Content-Length"] = str(os.fstat(f.fileno()).st_size)
                    payload = f
                elif body is not None:
                    hdrs["Content-Length"] = str(len(body))
                    payload = body
                else:
                    payload = None
                    if method in ("PUT", "POST"):
                        hdrs["Content-Length"] = "0"
                conn = self.connect()
                conn.request(method, path, body=payload, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 3:
                    raise PushError("%s %s%s: %s" % (method, self.host, path, e))
                time.sleep(0.5 * (attempt + 1))
                continue
            finally:
                if f is not None:
                    f.close()
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            if resp.status == 401 and auth and attempt < 2:
                self.auth.pop(repo, None)
                self.authenticate(resp.getheader("WWW-Authenticate"), repo)
                continue
            if resp.status not in ok:
                raise PushError("%s %s%s: HTTP %d %s" % (
                    method, self.host, path, resp.status, data[:300].decode(errors="replace")))
            return resp, data
        raise PushError("%s %s%s: still unauthorized" % (method, self.host, path))

    def ping(self):
        resp, _ = self.request("GET", "/v2/", None, ok=(200, 401), auth=False)
        return resp.status

    def push_blob(self, repo, digest, size):
        resp, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), repo, ok=(200, 404))
        if resp.status == 200:
            self.stats["blobs_skipped"] += 1
            return False
        resp, _ = self.request("POST", "/v2/%s/blobs/uploads/" % repo, repo, ok=(202,))
        loc = urllib.parse.urlsplit(resp.getheader("Location"))
        path = loc.path + "?" + (loc.query + "&" if loc.query else "") + \
            urllib.parse.urlencode({"digest": digest})
        p = blob_path(digest)
        if os.path.getsize(p) != size:
            raise PushError("cached blob %s has the wrong size" % digest)
        resp, _ = self.request("PUT", path, repo, body=p,
                               headers={"Content-Type": "application/octet-stream"},
                               ok=(201,))
        got = resp.getheader("Docker-Content-Digest")
        if got and got != digest:
            raise PushError("registry stored %s as %s" % (digest, got))
        self.stats["blobs_uploaded"] += 1
        self.stats["bytes_uploaded"] += size
        return True

    def push_manifest(self, repo, ref, built):
        resp, _ = self.request("HEAD", "/v2/%s/manifests/%s" % (repo, ref), repo,
                               headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
                               ok=(200, 404))
        if resp.status == 200 and resp.getheader("Docker-Content-Digest") == built.digest:
            self.stats["manifests_skipped"] += 1
            return False
        resp, _ = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), repo,
                               body=built.data,
                               headers={"Content-Type": built.media_type}, ok=(201,))
        got = resp.getheader("Docker-Content-Digest")
        if got != built.digest:
            raise PushError("registry says %s:%s is %s, expected %s" % (
                repo, ref, got, built.digest))
        self.stats["manifests_put"] += 1
        return True


def push_tree(reg, repo, built, done):
    """Pushes blobs and child manifests of `built` (by digest); not the tag itself."""
    for c in built.children:
        if c.digest not in done:
            push_tree(reg, repo, c, done)
            reg.push_manifest(repo, c.digest, c)
            done.add(c.digest)
    for d, n in built.blobs:
        if d not in done:
            reg.push_blob(repo, d, n)
            done.add(d)


def cmd_push(args, repos):
    password = None
    if args.password_file:
        with open(args.password_file) as f:
            password = f.read().strip("\r\n")
    if (args.user is None) != (password is None):
        sys.exit("testimages: --user and --password-file go together")
    scheme = args.scheme or ("https" if (args.ca or args.tls) else "http")
    reg = Registry(args.registry, scheme, ca=args.ca, user=args.user, password=password,
                   insecure=args.insecure)
    only = None
    if args.only:
        only = [r.strip() for r in args.only.split(",") if r.strip()]
        unknown = [r for r in only if r not in repos]
        if unknown:
            sys.exit("testimages: unknown repositories: " + ", ".join(unknown))
    t0 = time.time()
    reg.ping()
    for repo in sorted(repos):
        if only is not None and repo not in only:
            continue
        t1 = time.time()
        before = dict(reg.stats)
        done = set()
        for tag in sorted(repos[repo]):
            b = repos[repo][tag]
            push_tree(reg, repo, b, done)
            reg.push_manifest(repo, tag, b)
        delta = {k: reg.stats[k] - before[k] for k in reg.stats}
        log("push %s/%s: %d blobs uploaded (%.1f MiB), %d present, %d manifests put, "
            "%d unchanged, %.1fs" % (
                args.registry, repo, delta["blobs_uploaded"], delta["bytes_uploaded"] / MIB,
                delta["blobs_skipped"], delta["manifests_put"], delta["manifests_skipped"],
                time.time() - t1))
    reg.close()
    log("push %s done in %.1fs: %s" % (args.registry, time.time() - t0, json.dumps(reg.stats)))


def main():
    p = argparse.ArgumentParser(description="Build and push ferry's deterministic test images.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("build", help="build (or reuse) the images, write images.json")
    pp = sub.add_parser("push", help="build, then push to a registry over its HTTP API")
    for sp in (pb, pp):
        sp.add_argument("--out", default=os.path.join(CACHE, "images.json"),
                        help="where to write images.json (default target/testimages/images.json)")
        sp.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    pp.add_argument("--registry", required=True, help="HOST:PORT")
    pp.add_argument("--user")
    pp.add_argument("--password-file")
    pp.add_argument("--ca", help="PEM CA to trust (implies https)")
    pp.add_argument("--tls", action="store_true", help="https with the system trust store")
    pp.add_argument("--insecure", action="store_true", help="https without verification")
    pp.add_argument("--scheme", choices=["http", "https"])
    pp.add_argument("--only", help="comma-separated repositories to push (default: all)")
    args = p.parse_args()

    repos = build_all(no_cache=args.no_cache)
    write_facts(repos, args.out)
    if args.cmd == "push":
        try:
            cmd_push(args, repos)
        except PushError as e:
            sys.exit("testimages: " + str(e))


if __name__ == "__main__":
    main()
