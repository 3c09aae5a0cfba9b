#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/src/lib.rs) into testdata/fuzz/<target>/.

    testdata/fuzz/seeds.py

Deterministic: rerunning it rewrites the same bytes. Seeds are small (libFuzzer mutates
small inputs faster) and cover each format the parsers know, so the fuzzer starts from
inputs that get deep. Inputs that once crashed a target are kept beside the seeds as
`crash-<sha1>` files (scripts/fuzz copies them there); this script never touches those.
"""

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
MTIME = 1_700_000_000


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def trim(tar_bytes):
    """Drops the record padding after the end-of-archive blocks (the reader stops there)."""
    end = len(tar_bytes)
    while end >= 512 and tar_bytes[end - 512:end] == bytes(512):
        end -= 512
    return tar_bytes[:end] + bytes(1024)


def make_tar(entries, fmt=tarfile.USTAR_FORMAT, pax=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax or {}) as t:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.mtime = e.get("mtime", MTIME)
            info.mode = e.get("mode", 0o644)
            info.type = e.get("type", tarfile.REGTYPE)
            info.linkname = e.get("link", "")
            info.uid = e.get("uid", 0)
            info.gid = e.get("gid", 0)
            info.devmajor = e.get("major", 0)
            info.devminor = e.get("minor", 0)
            info.pax_headers = e.get("pax", {})
            data = e.get("data", b"")
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return trim(buf.getvalue())


def sha(b):
    return hashlib.sha256(b).hexdigest()


def tar_seeds():
    write("tar", "ustar-file", make_tar([{"name": "etc/hostname", "data": b"ferry\n"}]))
    write("tar", "dir-symlink-hardlink", make_tar([
        {"name": "bin/", "type": tarfile.DIRTYPE, "mode": 0o755},
        {"name": "bin/busybox", "data": b"\x7fELF", "mode": 0o755},
        {"name": "bin/sh", "type": tarfile.SYMTYPE, "link": "busybox"},
        {"name": "bin/ls", "type": tarfile.LNKTYPE, "link": "bin/busybox"},
    ]))
    write("tar", "devices-fifo-whiteout", make_tar([
        {"name": "dev/null", "type": tarfile.CHRTYPE, "major": 1, "minor": 3},
        {"name": "dev/sda", "type": tarfile.BLKTYPE, "major": 8, "minor": 0},
        {"name": "run/fifo", "type": tarfile.FIFOTYPE},
        {"name": "etc/.wh.motd", "data": b""},
        {"name": "var/.wh..wh..opq", "data": b""},
    ]))
    write("tar", "ustar-prefix", make_tar([{"name": "p/" * 60 + "file", "data": b"x"}]))
    write("tar", "gnu-long-names", make_tar([
        {"name": "d" * 150 + "/file", "data": b"long"},
        {"name": "l" * 120, "type": tarfile.SYMTYPE, "link": "t" * 130},
    ], fmt=tarfile.GNU_FORMAT))
    write("tar", "gnu-base256", make_tar([
        {"name": "big-ids", "uid": 8 ** 8, "gid": 8 ** 9, "data": b"ids"},
    ], fmt=tarfile.GNU_FORMAT))
    write("tar", "pax-records", make_tar([
        {"name": "short", "data": b"hi", "mode": 0o4755, "pax": {
            "path": "pax/name", "mtime": "1700000000.5", "atime": "1700000001.25",
            "SCHILY.xattr.user.k": "v", "SCHILY.xattr.security.capability": "\x01\x00",
        }},
        {"name": "link", "type": tarfile.SYMTYPE, "link": "x", "pax": {"linkpath": "y" * 200}},
    ], fmt=tarfile.PAX_FORMAT, pax={"comment": "global"}))


def docker_save_archive():
    layer = make_tar([{"name": "hello.txt", "data": b"hello\n"}])
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer)]},
    }).encode()
    manifest = json.dumps([{
        "Config": sha(config) + ".json", "RepoTags": ["ferry/seed:1"],
        "Layers": [sha(layer) + "/layer.tar"],
    }]).encode()
    return make_tar([
        {"name": sha(layer) + "/layer.tar", "data": layer},
        {"name": sha(config) + ".json", "data": config},
        {"name": "manifest.json", "data": manifest},
    ])


def oci_archive():
    layer = make_tar([{"name": "hello.txt", "data": b"hello\n"}])
    layer_gz = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer)]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + sha(layer_gz), "size": len(layer_gz)}],
    }).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "sha256:" + sha(manifest), "size": len(manifest),
                       "annotations": {"io.containerd.image.name": "docker.io/ferry/seed:1",
                                       "org.opencontainers.image.ref.name": "1"}}],
    }).encode()
    return make_tar([
        {"name": "oci-layout", "data": b'{"imageLayoutVersion":"1.0.0"}'},
        {"name": "index.json", "data": index},
        {"name": "blobs/sha256/" + sha(manifest), "data": manifest},
        {"name": "blobs/sha256/" + sha(config), "data": config},
        {"name": "blobs/sha256/" + sha(layer_gz), "data": layer_gz},
    ])


def archive_seeds():
    plain = docker_save_archive()
    write("archive", "docker-save.tar", plain)
    write("archive", "docker-save.tar.gz", gzip.compress(plain, mtime=0))
    write("archive", "docker-save.tar.xz", lzma.compress(plain))
    write("archive", "docker-save.tar.bz2", bz2.compress(plain))
    if shutil.which("zstd"):
        zst = subprocess.run(["zstd", "-q", "-c", "-19"], input=plain, stdout=subprocess.PIPE,
                             check=True).stdout
        write("archive", "docker-save.tar.zst", zst)
    write("archive", "oci-layout.tar", oci_archive())


def docs(*parts):
    return b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts)


def archive_json_seeds():
    manifest_oci = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "@3", "size": 0},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "@4", "size": 0}],
    }).replace('"size": 0}', '"size": #3}', 1).replace('"size": 0}', '"size": #4}', 1)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": ["@4"]},
    })
    layer = "layer:etc/hostname\nbin/sh\n"
    index_one = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "@2", "size": 0,
                       "annotations": {"io.containerd.image.name": "docker.io/ferry/seed:1",
                                       "org.opencontainers.image.ref.name": "1"}}],
    }).replace('"size": 0', '"size": #2')
    docker_list = json.dumps([{"Config": "blobs/sha256/$3", "RepoTags": ["ferry/seed:1"],
                               "Layers": ["blobs/sha256/$4"]}])
    write("archive_json", "oci-and-docker", docs(index_one, docker_list, manifest_oci, config,
                                                  layer))
    write("archive_json", "oci-only", docs(index_one, "", manifest_oci, config, layer))
    write("archive_json", "docker-only", docs("", docker_list, "", config, layer))
    # A multi-platform index (nested), with an attestation manifest beside the image.
    nested = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@3",
             "size": "#3", "platform": {"architecture": "arm64", "os": "linux",
                                        "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@3",
             "size": "#3", "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@6",
             "size": "#6", "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                             "vnd.docker.reference.digest": "@3"}},
        ],
    }).replace('"#3"', "#3").replace('"#6"', "#6")
    top = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       "digest": "@2", "size": "#2",
                       "annotations": {"io.containerd.image.name": "reg.lan:5000/multi:1"}}],
    }).replace('"#2"', "#2")
    manifest3 = manifest_oci.replace("@4", "@5").replace("#4", "#5").replace("@3", "@4") \
        .replace("#3", "#4")
    config4 = config.replace("@4", "@5")
    attestation = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.in-toto+json", "digest": "@7", "size": "#7"},
        "layers": [],
    }).replace('"#7"', "#7")
    write("archive_json", "nested-index-attestation",
          docs(top, "", nested, manifest3, config4, layer, attestation, '{"_type":"x"}'))
    docker_schema2 = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "@3", "size": "#3"},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": "@4", "size": "#4"}],
    }).replace('"#3"', "#3").replace('"#4"', "#4")
    index_docker = index_one.replace("application/vnd.oci.image.manifest.v1+json",
                                     "application/vnd.docker.distribution.manifest.v2+json")
    write("archive_json", "docker-media-types",
          docs(index_docker, docker_list, docker_schema2, config, layer))


def reference_seeds():
    for i, r in enumerate([
        "busybox", "busybox:1.36", "library/busybox:latest", "docker.io/library/busybox",
        "index.docker.io/user/app:v1", "ghcr.io/o/app:v1.2.3-rc_1",
        "127.0.0.1:5000/ferry/busybox:oci", "localhost/app",
        "[::1]:5000/a/b/c:t", "Registry.Lan/x",
        "reg.lan:5000/ns/app@sha256:" + "a" * 64,
        "app:tag@sha512:" + "0" * 128,
        "a__b--c.d/e", "linux/arm64/v8", "linux/amd64", "windows/amd64",
    ]):
        write("reference", f"ref-{i:02}", r)


def challenge_seeds():
    for i, c in enumerate([
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"',
        'Basic realm="Registry Realm"',
        'bearer realm=https://r.lan/t, service="a \\"q\\" b", error="insufficient_scope"',
        'Basic realm="x", Bearer realm="https://t.lan/token",service="s"',
        'Negotiate abc\nBearer realm="https://t.lan/token"',
    ]):
        write("challenge", f"challenge-{i}", c)


def docker_config_seeds():
    for i, c in enumerate([
        {"auths": {"reg.lan:5000": {"auth": "YW5uOnMzY3I6ZXQ="}}},
        {"auths": {"https://index.docker.io/v1/": {"username": "bob", "password": "pw-secret-1"}}},
        {"auths": {"https://ghcr.io": {"auth": "dTpwYXNzd29yZDEyMw=="},
                   "http://127.0.0.1:5000": {"auth": "dXNlcjpzM2NyM3RwYXNz"}}},
        {"auths": {}, "credHelpers": {"gcr.io": "gcloud"}, "credsStore": "desktop"},
        {"auths": {"docker.io": {"identitytoken": "x"}}, "HttpHeaders": {"User-Agent": "x"}},
    ]):
        write("docker_config", f"config-{i}.json", json.dumps(c))


def dockerfile_seeds():
    """Dockerfile NUL .dockerignore NUL context paths (see `dockerfile` in fuzz/src/lib.rs)."""
    build = os.path.join(os.path.dirname(HERE), "build")
    paths = "Dockerfile\n.dockerignore\nctx/f\nctx/secret-1\nctx/secret-but-kept\n" \
        "ctx/other/keep.txt\nctx/other/drop.txt\nbuild.log\na/b/c.go\n"
    with open(os.path.join(build, "copy-rules", ".dockerignore")) as f:
        copy_rules_ignore = f.read()
    for case in sorted(os.listdir(build)):
        d = os.path.join(build, case)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.startswith("Dockerfile"):
                with open(os.path.join(d, name)) as f:
                    text = f.read()
                ignore = copy_rules_ignore if case == "copy-rules" else ""
                write("dockerfile", f"{case}-{name}", "\0".join([text, ignore, paths]))
    for name, text, ignore in [
        ("escape-backtick", "# escape=`\nFROM base\nRUN echo a `\n  b\nCOPY C:\\dir\\ `\n  /d/\n"
         "ENV P=C:\\x Q=`$HOME\n", ""),
        ("continuations-comments",
         "FROM a \\\n  AS b\nRUN one \\\n# comment inside\n\n  two \\\\\nENV A=1 \\\n B=2\n", ""),
        ("heredocs", "# syntax=docker/dockerfile:1\nFROM a\nRUN <<EOF\nset -e\necho $HOME\nEOF\n"
         "RUN 3<<-'END' cat <&3 && cat <<X\n\tquoted $x\n\tEND\nbody\nX\n"
         "COPY <<one.txt <<\"two.txt\" /dst/\n${A:-x}\none.txt\n$B\ntwo.txt\n", ""),
        ("expansion", "ARG BASE=img\nARG TAG\nFROM ${BASE:-x}:${TAG:-latest} AS s1\n"
         "ENV A=${BASE:+alt} B=${UNSET-d} C=${A+a} D=${BASE#i} E=${BASE%%g*} F=${BASE/m/M} G=\"$A $B\" H='$C'\n"
         "WORKDIR /w/${D}\nUSER ${E:-0}:${F}\nEXPOSE ${P:-80}/tcp 443\nLABEL \"k $A\"=\"v ${B}\" x=${Y:?msg}\n", ""),
        ("json-forms", "FROM a\nRUN [\"sh\", \"-c\", \"echo \\\"hi\\\" \\u00e9\"]\nCMD [\"a\"]\n"
         "ENTRYPOINT [ ]\nSHELL [\"/bin/bash\", \"-c\"]\nVOLUME [\"/v\", \"/w\"]\n"
         "COPY [\"a b\", \"c*\", \"/d/\"]\nHEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]\n"
         "RUN [\"broken\"\n", ""),
        ("onbuild-flags", "FROM a AS base\nONBUILD COPY --chown=1:2 --chmod=755 x /y\n"
         "ONBUILD RUN --network=none echo $X\nONBUILD ENV K V\nFROM --platform=linux/arm64 base\n"
         "COPY --from=base --link /y /z\nADD --chmod=0644 http://h/f /g\nSTOPSIGNAL SIGTERM\n"
         "HEALTHCHECK NONE\nMAINTAINER me\n", ""),
        ("dockerignore", "FROM a\nCOPY . /src\nCOPY ctx/*.txt [a-c]?/ /t/\n",
         "\ufeff# c\n*.log\n**/*.go\n./ctx/other/\n!ctx/other/keep.txt\n/Dockerfile\n.dockerignore\n"
         "a/**/c\n[^x]*\n!\\!weird\n"),
        ("crlf-bom", "\ufeffFROM a\r\nRUN x \\\r\n  y\r\n", ""),
    ]:
        write("dockerfile", name, "\0".join([text, ignore, paths]))


if __name__ == "__main__":
    tar_seeds()
    archive_seeds()
    archive_json_seeds()
    reference_seeds()
    challenge_seeds()
    docker_config_seeds()
    dockerfile_seeds()
